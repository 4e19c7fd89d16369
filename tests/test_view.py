"""The data page of generate and inference folders (`tunelab view`): the HTML, then the page in Chromium.

The browser test uses the evaluation report's Chromium fixture (tests/test_report.py): skipped the
same way with TUNELAB_SKIP_BROWSER=1, failing with the fix when Chromium or playwright is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import JSON_QA, NO_READING, CannedTeacher, numbered_answer
from test_report import _Page, _open, browser  # noqa: F401  (browser: the Chromium fixture)
from tunelab.cli import main as tunelab_main
from tunelab.errors import ConfigError
from tunelab.report import VIEW_NAME, folder_kind, write_page, write_view
from tunelab.report.view import render_view
from tunelab.report.__main__ import main as report_main
from tunelab.stages import generate
from tunelab.teachers import RequestCache, SamplingParams, TeacherRequest, factory, run_requests
from tunelab.teachers.cache import read_cached_requests, request_text

SCRIPT = "<script>window.__pwned = 1</script>"
KEPT = "Explain why the sky looks blue during the day."
OUTPUT = "Sunlight scatters off air molecules.\nBlue light scatters the most."
NOVELTY = "ROUGE-L > 0.7 vs an earlier task"


def _answer() -> str:
    """Two good tasks (one with markup in it), a near copy of the first, and a block without an output."""
    return numbered_answer(4, [
        (KEPT, "", OUTPUT),
        (f"Explain what {SCRIPT} does on a web page.", "", "It runs <b>code</b> & more."),
        ("Explain why the sky looks blue during the daytime.", "", "A near copy of the first."),
    ]) + "###\n7. Instruction: Summarise the plot of a long novel in three sentences.\n"


@pytest.fixture(scope="module")
def generate_run(tmp_path_factory) -> Path:
    """A generate run with a canned teacher: moderation sets, self-instruct records and rejects, QA rejects."""
    out = tmp_path_factory.mktemp("view") / "g"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(factory.BACKENDS, "canned", lambda cfg: CannedTeacher([_answer()]))
        generate.generate(["--config", "demo", "--output_dir", str(out), "--tasks", "moderation", "self_instruct",
                           "moderation_qa", *JSON_QA, "--teacher_backend", "canned", "--max_requests", "2",
                           "--max_posts", "3"])
    return out


def _block(text: str, block_id: str) -> dict:
    """A JSON data block of the page, by id."""
    start = text.index(f'<script type="application/json" id="{block_id}">')
    start = text.index(">", start) + 1
    return json.loads(text[start:text.index("</script>", start)])


def _rows(text: str, name: str) -> list[dict]:
    data = _block(text, f"{name}-data")
    names = [c["name"] for c in data["columns"]]
    return [dict(zip(names, r["t"])) for r in data["rows"]]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_every_record_and_reject_names_the_cache_line_of_its_prompt(generate_run):
    cache = {row["key"]: row for row in _jsonl(generate_run / "teacher_cache.jsonl")}
    kept = json.loads((generate_run / "self_instruct.alpaca.json").read_text())
    rejects = [r for name in ("self_instruct", "moderation_qa") for r in _jsonl(generate_run / f"{name}.rejects.jsonl")]
    assert kept and rejects
    for row in kept + rejects:
        line = cache[row["provenance"]["request_key"]]
        assert line["prompt"] or line["messages"]  # the request exactly as sent
    qa = [cache[r["provenance"]["request_key"]] for r in rejects if r["provenance"].get("post_id")]
    assert qa and all(line["prompt"] is None and line["messages"][0]["role"] for line in qa)


def test_generate_view_shows_records_rejects_and_prompts(generate_run):
    path = generate_run / VIEW_NAME
    assert path.exists()  # written by the run itself
    provenance = json.loads((generate_run / "provenance.json").read_text())
    assert provenance["outputs"]["view"] == str(path)
    text = path.read_text(encoding="utf-8")
    assert "<title>Generated data: g</title>" in text

    records = _rows(text, "data-self_instruct")
    first = next(r for r in records if r["instruction"] == KEPT)
    assert first["output"] == OUTPUT  # real newlines, drawn pre-wrap
    for name in ("data-moderation_train", "data-moderation_test"):
        assert _rows(text, name)
    # the instruction of every moderation record is the same: listed once, not in every row
    assert "Same in every row: instruction" in text

    rejects = _rows(text, "rejects")
    assert list(rejects[0])[:3] == ["from", "stage", "reason"]
    reasons = {(r["from"], r["stage"], r["reason"]) for r in rejects}
    assert ("self_instruct", "novelty", NOVELTY) in reasons and ("self_instruct", "parse", "no output") in reasons
    assert ("moderation_qa", "parse", NO_READING) in reasons
    assert '<select id="rejects-facet-reason" data-facet="2">' in text

    texts = _block(text, "texts-data")
    cache = {row["key"]: row for row in _jsonl(generate_run / "teacher_cache.jsonl")}
    for row in rejects:
        if row["from"] in ("self_instruct", "moderation_qa"):
            assert texts[row["prompt sent"]] == request_text(cache[row["prompt sent"]])
    si_prompt = next(texts[r["prompt sent"]] for r in rejects if r["from"] == "self_instruct")
    assert "Instruction:" in si_prompt and si_prompt == cache[next(iter(
        r["provenance"]["request_key"] for r in json.loads((generate_run / "self_instruct.alpaca.json").read_text())
    ))]["prompt"]
    qa_prompt = next(texts[r["prompt sent"]] for r in rejects if r["from"] == "moderation_qa")
    assert qa_prompt.startswith("[user]\n")  # chat messages, turn by turn

    page = _Page(text)
    assert "kept" in page.cells and "self_instruct" in text  # stats.json as a table


def test_markup_in_a_record_is_text_not_markup(generate_run):
    text = (generate_run / VIEW_NAME).read_text(encoding="utf-8")
    shown = {v for r in _rows(text, "data-self_instruct") for v in r.values()}
    assert any(SCRIPT in v for v in shown)  # the page gets the text as it is ...
    assert "<script>window" not in text and "<b>code" not in text  # ... never as markup
    page = _Page(text)
    blocks = [a for t, a in page.tags if t == "script" and a.get("type") == "application/json"]
    runnable = [a for t, a in page.tags if t == "script" and a.get("type") != "application/json"]
    assert text.count("</script") == len(blocks) + 1  # nothing in the data ends its block early
    assert len(runnable) == 1 and runnable[0].get("nonce")
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp


def test_a_cap_says_what_it_left_out(generate_run, tmp_path):
    text = render_view(generate_run, max_rows=1)  # not written: the other tests read the fixture's own page
    assert len(_rows(text, "rejects")) == 1 and "Holding the first 1 of" in text
    assert len(_rows(text, "data-moderation_train")) == 1


def _prediction(i: int, setting: str, answer: str) -> dict:
    return {"id": f"q{i}", "instruction": f"Question {i}?", "input": "", "reference": f"Answer {i}.",
            "prediction": answer, "empty": False, "finish_reason": "stop", "model": "tiny", "adapter": None,
            "setting": setting, "seed": 100 + i, "decoding": {"temperature": 0.7 if "0.7" in setting else 0.0}}


def test_sweep_puts_each_setting_in_a_column(tmp_path):
    out = tmp_path / "sweep"
    (out / "predictions").mkdir(parents=True)
    names = ["t0_k0_b1", "t0.7_k50_b1"]
    for name in names:
        rows = [_prediction(i, name, f"{name} says {i}\nsecond line") for i in range(3)]
        if name == names[1]:
            rows = rows[::-1][:2]  # another order, and one input not answered yet
        (out / "predictions" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "sweep.json").write_text(json.dumps({"examples": 3, "settings": [
        {"name": n, "file": f"predictions/{n}.jsonl", "decoding": {"temperature": 0.0}, "complete": True, "rows": 3}
        for n in names], "skipped": []}))
    assert folder_kind(out) == "inference"
    text = write_page(out).read_text(encoding="utf-8")
    assert "<title>Inference sweep: sweep</title>" in text
    data = _block(text, "predictions-data")
    assert [c["name"] for c in data["columns"]] == ["id", "instruction", "input", "reference", *names]
    rows = _rows(text, "predictions")
    assert [r["id"] for r in rows] == ["q0", "q1", "q2"]
    assert [rows[1][name] for name in names] == [f"{name} says 1\nsecond line" for name in names]  # lined up by id
    assert rows[0]["t0.7_k50_b1"] == ""  # not answered by that setting yet
    assert "settings-table" in text


def test_single_setting_shows_prompt_reference_and_prediction(tmp_path):
    rows = [_prediction(i, "t0_k0_b1", f"answer <i>{i}</i>") for i in range(4)]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = write_page(tmp_path).read_text(encoding="utf-8")
    names = [c["name"] for c in _block(text, "predictions-data")["columns"]]
    assert names[:4] == ["id", "instruction", "reference", "prediction"]
    # what every row shares (one model, an empty input) is said once above the table
    assert "model" not in names and "input" not in names and "Same in every row: input" in text
    assert "<i>" not in text


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_folder_without_run_outputs_is_a_one_line_error(tmp_path, capsys, make):
    folder = tmp_path / "nothing"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(ConfigError, match=str(folder)):
        write_page(folder)
    assert tunelab_main(["view", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(folder) in err and err.count("\n") == 1
    assert not (folder / VIEW_NAME).exists()


def test_commands_write_the_right_page_for_each_kind(generate_run, capsys):
    (generate_run / VIEW_NAME).unlink()
    assert tunelab_main(["view", str(generate_run)]) == 0
    assert capsys.readouterr().out.strip() == str(generate_run / VIEW_NAME)
    assert report_main([str(generate_run)]) == 0  # python -m tunelab.report: the same page
    assert capsys.readouterr().out.strip() == str(generate_run / VIEW_NAME)
    assert "No scores to show" not in (generate_run / VIEW_NAME).read_text(encoding="utf-8")


def test_old_cache_lines_without_prompts_still_load(tmp_path):
    cache_path = tmp_path / "teacher_cache.jsonl"
    old = {"key": "a" * 64, "model": "m", "response": {"text": "old answer", "finish_reason": "stop"}}
    cache_path.write_text(json.dumps(old) + "\n")
    with RequestCache(cache_path) as cache:
        assert cache.get("a" * 64).text == "old answer"
    assert request_text(read_cached_requests(cache_path)["a" * 64]) is None
    (tmp_path / "self_instruct.rejects.jsonl").write_text(json.dumps(
        {"stage": "parse", "reason": "no output", "raw": "x", "provenance": {"request_key": "a" * 64}}) + "\n")
    text = write_view(tmp_path).read_text(encoding="utf-8")
    assert _block(text, "texts-data") == {} and "have no prompt in teacher_cache.jsonl" in text


def test_image_requests_keep_paths_and_digests_never_bytes(tmp_path):
    from PIL import Image

    from tunelab.teachers.images import user_message

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "p.png")
    request = TeacherRequest(messages=[user_message("Is this allowed?", [str(tmp_path / "p.png")])])
    with RequestCache(tmp_path / "cache.jsonl") as cache:
        run_requests(CannedTeacher(["fine"]), [request], SamplingParams(), cache, template_version="v")
    line = (tmp_path / "cache.jsonl").read_text()
    row = json.loads(line)
    assert row["key"] == request.meta["request_key"]
    assert "base64" not in line and row["images"][str(tmp_path / "p.png")].startswith("sha256:")
    image = str(tmp_path / "p.png")
    assert request_text(row) == f"[user]\n[image: {image} {row['images'][image]}]\nIs this allowed?"


# ---------------------------------------------------------------- the page in Chromium


def test_generate_view_in_chromium(browser, generate_run):  # noqa: F811
    from playwright.sync_api import expect

    page, problems, requests = _open(browser, write_view(generate_run))
    rejects = [json.loads(line) for name in ("self_instruct.rejects.jsonl", "moderation_qa.rejects.jsonl",
                                             "moderation.dropped.jsonl")
               for line in (generate_run / name).read_text().splitlines() if line.strip()]
    body_rows = page.locator("#rejects-table tbody tr")
    try:
        expect(page.locator("#rejects-shown")).to_have_text(f"{len(rejects)} of {len(rejects)} match")
        expect(body_rows).to_have_count(min(len(rejects), 100))
        # filter by reason: only those rows, each showing it
        expected = sum(r["reason"] == NOVELTY for r in rejects)
        assert 0 < expected < len(rejects)
        page.select_option("#rejects-facet-reason", NOVELTY)
        expect(page.locator("#rejects-shown")).to_have_text(f"{expected} of {len(rejects)} match")
        expect(body_rows).to_have_count(expected)
        heads = page.eval_on_selector_all("#rejects-table thead th", "ths => ths.map(t => t.textContent)")
        cells = page.eval_on_selector_all(f"#rejects-table tbody tr td:nth-child({heads.index('reason') + 1})",
                                          "tds => tds.map(t => t.textContent)")
        assert cells == [NOVELTY] * expected
        # the prompt sent, folded until opened
        prompt = body_rows.first.locator("details")
        expect(prompt.locator(".cell")).not_to_be_visible()
        prompt.locator("summary").click()
        expect(prompt.locator(".cell")).to_be_visible()
        expect(prompt.locator(".cell")).to_contain_text("Instruction:")
        # the text filter narrows within the chosen reason; another reason, then all again
        page.fill("#rejects-filter", "daytime")
        expect(body_rows).to_have_count(sum(r["reason"] == NOVELTY and "daytime" in json.dumps(r) for r in rejects))
        page.fill("#rejects-filter", "")
        page.select_option("#rejects-facet-reason", "no output")
        expect(body_rows).to_have_count(sum(r["reason"] == "no output" for r in rejects))
        page.select_option("#rejects-facet-reason", "")
        expect(body_rows).to_have_count(min(len(rejects), 100))

        # kept records: markup in a record is text and never ran
        expect(page.locator("#data-self_instruct-table")).to_be_visible()
        expect(page.locator("#data-self_instruct-table").get_by_text("window.__pwned = 1", exact=False)).to_be_visible()
        assert page.evaluate("window.__pwned") is None
        expect(page.locator("#stats")).to_contain_text("kept")
    finally:
        page.close()
    assert not problems, problems
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
