"""The evaluation report: the HTML itself, then the page in a real headless Chromium.

The browser test needs Debian's chromium (/usr/bin/chromium; `make browser` or .ci/run install it)
and playwright (the test extra). A missing one fails the test with the fix; TUNELAB_SKIP_BROWSER=1
skips it on purpose. Set TUNELAB_TEST_ARTIFACTS=<folder> to keep the screenshots.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from tunelab.report import REPORT_NAME, write_report
from tunelab.report.__main__ import main as report_main

RUNS = ("base", "tuned")
N_TEXT = 120  # more than a page (100 rows), so paging is exercised
FILTER_WORD = "banana"  # in the instruction of every 7th text example, nowhere else
SCRIPT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
LINK = '<a href="https://evil.example/steal">click</a> https://example.com/pic.png'
CHROMIUM = os.environ.get("TUNELAB_CHROMIUM", "/usr/bin/chromium")


# ---------------------------------------------------------------- fixtures: two realistic eval folders


def _plot(path: Path, values: dict[str, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.bar(list(values), list(values.values()))
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _provenance(models: dict, inputs: dict) -> dict:
    return {"stage": "evaluate", "command": ["evaluate/score.py", "--config", "demo_text"], "config_file": None,
            "started": "2026-11-22T01:49:32+0000", "seconds": 3.07, "git": {"commit": "ad7b6bf9b0c6f285b838c2", "dirty": True},
            "packages": {"tunelab": "0.1.0", "torch": "2.13.0+cpu", "bitsandbytes": None},
            "hardware": {"platform": "Linux-x86_64", "cpu_count": 2, "python": "3.11.7", "cuda": False},
            "models": models, "inputs": inputs, "templates": {}, "outputs": {}}


def _text_row(i: int, rng: np.random.Generator) -> dict:
    instruction = f"Task {i}: describe item {i}" + (f" and a {FILTER_WORD.upper()} split" if i % 7 == 0 else "")
    row = {"id": f"ex-{i:03d}", "instruction": instruction, "input": f"context {i}" if i % 2 else "",
           "reference": f"Reference answer {i}.\nSecond line {i}.",
           "base.prediction": f"base answer {i}", "tuned.prediction": f"tuned answer {i}",
           "base.rouge_l": round(float(rng.random()), 4), "tuned.rouge_l": round(float(rng.random()), 4),
           "base.bleu": round(float(rng.random() * 50), 2), "tuned.bleu": round(float(rng.random() * 50), 2)}
    row["outcome"] = "better" if row["tuned.rouge_l"] > row["base.rouge_l"] else "worse"
    if i == 3:
        row["tuned.prediction"] = SCRIPT
    if i == 4:
        row["base.prediction"] = LINK
    if i == 5:
        row["reference"] = "long " * 2000
    if i == 6:
        row["tuned.rouge_l"] = None  # scorer gave nothing: sorts last either way
    return row


@pytest.fixture(scope="module")
def text_eval(tmp_path_factory) -> Path:
    """A text eval comparing two runs: CIs, a runs table, comparisons, per-example scores of both runs, a plot."""
    out = tmp_path_factory.mktemp("eval_text")
    rng = np.random.default_rng(0)
    rows = [_text_row(i, rng) for i in range(N_TEXT)]
    ci = lambda v, lo, hi: {"value": v, "ci_low": lo, "ci_high": hi}  # noqa: E731
    scores = {
        "examples": N_TEXT, "empty_predictions": 0,
        "bleu_signature": "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0",
        "bootstrap": {"resamples": 1000, "level": 0.95},
        "runs": [{"name": "base", "bleu": ci(21.5, 19.0, 24.1), "rouge_l_f1": ci(0.412, 0.38, 0.44), "bertscore_f1": 0.81},
                 {"name": "tuned", "bleu": ci(23.25, 20.5, 26.0), "rouge_l_f1": ci(0.47, 0.44, 0.5), "bertscore_f1": 0.84}],
        "comparisons": [
            {"run": "tuned", "baseline": "base", "metric": "rouge_l_f1", "delta": 0.058, "ci_low": 0.021,
             "ci_high": 0.094, "excludes_zero": True},
            {"run": "tuned", "baseline": "base", "metric": "bleu", "delta": -0.75, "ci_low": -2.5, "ci_high": 1.25,
             "excludes_zero": False}],
    }
    (out / "scores.json").write_text(json.dumps(scores, indent=2))
    (out / "per_example.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "config.yaml").write_text(yaml.safe_dump({"task": "text", "predictions": ["base.jsonl", "tuned.jsonl"],
                                                     "bertscore_model": "tunelab:minilm"}))
    (out / "provenance.json").write_text(json.dumps(_provenance(
        {"bertscore": "tunelab:minilm", "base": "tiny-llama", "tuned": "runs/finetune/lora"},
        {"base": "runs/infer_base/predictions.jsonl sha256:" + "ab" * 32, "tuned": "runs/infer_tuned/predictions.jsonl"})))
    _plot(out / "rouge_l_by_run.png", {"base": 0.412, "tuned": 0.47}, "ROUGE-L F1")
    return out


@pytest.fixture(scope="module")
def classification_eval(tmp_path_factory) -> Path:
    """A single-label classifier eval from the real metric function: per-label table, confusion matrix, a plot."""
    from tunelab.metrics.classification import singlelabel_metrics

    out = tmp_path_factory.mktemp("eval_cls")
    labels = ("ham", "spam", "phish")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 30)
    probs = rng.dirichlet(np.ones(3), 30)
    probs[np.arange(30), y] += 0.5
    probs /= probs.sum(1, keepdims=True)
    scores = singlelabel_metrics(y, probs, labels)
    # shapes the evaluate stage adds around the metrics of an LLM's answers: a nested re-scoring, named plots,
    # the comparison with k-shot baselines
    scores["source"] = "llm_answers"
    scores["labels"] = list(labels)
    scores["refusals_excluded"] = {"examples": 27, **{k: scores[k] for k in ("per_label", "micro", "macro")}}
    scores["plots"] = {"per label F1": "per_label_f1.png", "support": "confusion-matrix.png"}
    scores["comparison"] = [
        {"system": "scored model", "model": "runs/student", "shots": None, "runs": 1, "mean": {"macro_f1": 0.71},
         "std": {"macro_f1": None}, "text": {"refusal_rate": "0.000", "macro_f1": "0.710"}},
        {"system": "2-shot baseline", "model": "base", "shots": 2, "runs": 2, "mean": {"macro_f1": 0.42},
         "std": {"macro_f1": 0.05}, "text": {"refusal_rate": "0.100 ± 0.020", "macro_f1": "0.420 ± 0.050"}}]
    (out / "scores.json").write_text(json.dumps(scores))
    rows = [{"id": f"msg:{i}", "text": f"message {i} <b>bold?</b>", "label": labels[y[i]],
             "predicted": labels[int(probs[i].argmax())],
             "probs": {lab: round(float(probs[i, j]), 6) for j, lab in enumerate(labels)}} for i in range(30)]
    (out / "per_example.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "config.yaml").write_text(yaml.safe_dump({"task": "classification", "model": "runs/classifier",
                                                     "data": "data/moderation_test.jsonl"}))
    (out / "provenance.json").write_text(json.dumps(_provenance({"classifier": "runs/classifier"},
                                                                {"data": "data/moderation_test.jsonl"})))
    _plot(out / "per_label_f1.png", {k: v["f1"] for k, v in scores["per_label"].items()}, "F1 per label")
    _plot(out / "confusion-matrix.png", {k: v["support"] for k, v in scores["per_label"].items()}, "support")
    return out


# ---------------------------------------------------------------- the HTML


class _Page(HTMLParser):
    """Tags with their attributes, per-table row counts, and the text of every <td>."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, int] = {}
        self._table: list[str] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table.append(a.get("id") or f"table{len(self.tables)}")
            self.tables.setdefault(self._table[-1], 0)
        elif tag == "tr" and self._table:
            self.tables[self._table[-1]] += 1
        elif tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table.pop()
        elif tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _examples(text: str) -> dict:
    """The examples data block the page draws its table from."""
    start = text.index('<script type="application/json" id="examples-data">')
    start = text.index(">", start) + 1
    return json.loads(text[start:text.index("</script>", start)])


def test_text_report_tables(text_eval):
    path = write_report(text_eval)
    assert path == text_eval / REPORT_NAME
    text = path.read_text(encoding="utf-8")
    page = _Page(text)
    # every table counts its header row too
    assert page.tables["runs-table"] == 3 and page.tables["comparisons-table"] == 3
    cells = page.cells
    assert "21.5 [19, 24.1]" in cells  # a CI as value [low, high]
    assert "[0.021, 0.094]" in cells and "✱ yes" in cells
    assert cells.count("✱ yes") == 1  # the BLEU delta's CI holds 0
    assert "bootstrap.resamples" in cells  # a lone nested dict of scalars joins the scalars, flattened

    data = _examples(text)
    names = [c["name"] for c in data["columns"]]
    # input columns, then the reference, then the runs' answers side by side, then the rest, scores last
    assert names[:6] == ["id", "instruction", "input", "reference", "base.prediction", "tuned.prediction"]
    assert {c["name"] for c in data["columns"] if c["role"] == "score"} == {
        "base.rouge_l", "tuned.rouge_l", "base.bleu", "tuned.bleu"}
    assert all(c["num"] for c in data["columns"] if c["role"] == "score")
    for name in names:  # the header the page sorts by
        assert f'<button type="button" class="sort">{name}</button>' in text
    assert len(data["rows"]) == N_TEXT
    row0 = dict(zip(names, data["rows"][0]["t"]))
    assert row0["reference"] == "Reference answer 0.\nSecond line 0."  # newlines kept (shown pre-wrap)
    row6 = dict(zip(names, zip(data["rows"][6]["t"], data["rows"][6]["v"])))
    assert row6["tuned.rouge_l"] == ("—", None)  # a null score: shown as such, sorted last
    assert "tiny-llama" in text and "sha256 abababababab…" in text and "uncommitted changes" in text


def test_user_text_is_escaped(text_eval):
    text = write_report(text_eval).read_text(encoding="utf-8")
    page = _Page(text)
    shown = {t for row in _examples(text)["rows"] for t in row["t"]}
    assert SCRIPT in shown and LINK in shown  # the page gets the text as it is ...
    assert SCRIPT not in text
    assert "<script>window" not in text and "<b>" not in text  # ... never as markup
    assert text.count("</script") == 2  # nothing in the data ends its block early
    runnable = [a for t, a in page.tags if t == "script" and a.get("type") != "application/json"]
    assert len(runnable) == 1 and runnable[0].get("nonce")  # only the page's own, carrying the CSP nonce
    assert not any(t == "img" and a.get("src") == "x" for t, a in page.tags)
    assert not any(t == "a" and "evil" in a.get("href", "") for t, a in page.tags)


@pytest.mark.parametrize("which", ["text_eval", "classification_eval"])
def test_self_contained(which, request):
    folder = request.getfixturevalue(which)
    text = write_report(folder).read_text(encoding="utf-8")
    page = _Page(text)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip()
            if value:
                assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:60]!r}> leaves the page"
    assert not any(t in ("link", "iframe", "object", "embed") and a.get("rel") != "icon" for t, a in page.tags)
    assert "url(" not in text.split("</style>")[0] and "@import" not in text
    csp = next(a["content"] for t, a in page.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    images = [a["src"] for t, a in page.tags if t == "img"]
    pngs = sorted(folder.glob("*.png"))
    assert len(images) == len(pngs) > 0
    for src, png in zip(images, pngs):
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix) and base64.b64decode(src[len(prefix):]) == png.read_bytes()
    assert text.count("<figcaption>") == len(pngs)


def test_classification_report(classification_eval):
    text = write_report(classification_eval, title="Spam classifier <v2>").read_text(encoding="utf-8")
    page = _Page(text)
    assert "<title>Spam classifier &lt;v2&gt;</title>" in text
    assert page.tables["table-per_label"] == 4  # header + 3 labels
    assert "true \\ predicted" in text  # the confusion matrix, rows named by label
    assert page.tables["groups-table"] == 3  # micro and macro
    names = [c["name"] for c in _examples(text)["columns"]]
    assert names[:4] == ["id", "text", "label", "predicted"] and "probs.spam" in names
    assert 'class="role-score num" data-type="num"><button type="button" class="sort">probs.ham' in text
    assert "runs/classifier" in text
    assert '<details class="group" open><summary>refusals_excluded</summary>' in text
    assert page.tables["refusals_excluded.table-per_label"] == 4
    # the systems compared, one row each, every number as mean ± std
    assert page.tables["comparison-table"] == 3 and "2-shot baseline" in page.cells and "0.420 ± 0.050" in page.cells
    assert "<figcaption>Per label F1 <span" in text and "<figcaption>Support <span" in text


def test_cli_overwrites_and_caps(text_eval, tmp_path, capsys):
    (text_eval / REPORT_NAME).write_text("stale")
    assert report_main([str(text_eval), "--title", "Run A vs B", "--max-examples", "10"]) == 0
    assert capsys.readouterr().out.strip() == str(text_eval / REPORT_NAME)
    text = (text_eval / REPORT_NAME).read_text(encoding="utf-8")
    assert "Run A vs B" in text and "stale" not in text
    assert len(_examples(text)["rows"]) == 10 and f"first 10 of {N_TEXT} examples" in text
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "missing does not exist" in capsys.readouterr().err


def test_lenient_about_what_is_missing(tmp_path):
    (tmp_path / "predictions.jsonl").write_text('{"id": 1, "text": "a", "predicted": ["x"]}\nnot json\n[1, 2]\n')
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "no scores.json" in text and "predictions.jsonl:2: not JSON" in text
    assert len(_examples(text)["rows"]) == 2  # the readable ones


# ---------------------------------------------------------------- the page in Chromium


@pytest.fixture(scope="module")
def browser():
    problems = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problems.append("playwright is not installed (pip install -c constraints.txt -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install -y chromium; `make browser` and .ci/run do it)")
    if os.environ.get("TUNELAB_SKIP_BROWSER") == "1":
        pytest.skip("TUNELAB_SKIP_BROWSER=1" + (f": {'; '.join(problems)}" if problems else ""))
    if problems:
        pytest.fail("the report's browser test cannot run: " + "; ".join(problems)
                    + ". Set TUNELAB_SKIP_BROWSER=1 to skip it on purpose.", pytrace=False)
    with sync_playwright() as p:
        # Debian's Chromium, never a downloaded one; no background traffic to a closed network.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


def _open(browser, report: Path):
    """A page on the report, recording console errors, page errors and every request."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri(), wait_until="load")
    return page, problems, requests


def _keep(shot: Path) -> None:
    target = os.environ.get("TUNELAB_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(target) / shot.name)


def _column(page, name: str) -> list[float | None]:
    """data-v of a column in the drawn examples rows, top to bottom."""
    return page.evaluate("""(name) => {
        const t = document.getElementById('examples-table');
        const col = [...t.tHead.rows[0].cells].findIndex(th => th.textContent === name);
        return [...t.tBodies[0].rows].map(r => {
            const v = r.cells[col].getAttribute('data-v'); return v === null ? null : parseFloat(v); });
    }""", name)


def test_report_in_chromium(browser, text_eval, tmp_path):
    from playwright.sync_api import expect

    report = write_report(text_eval)
    rows = [json.loads(line) for line in (text_eval / "per_example.jsonl").read_text().splitlines()]
    page, problems, requests = _open(browser, report)
    body_rows = page.locator("#examples-table tbody tr")
    try:
        for table in ("summary-table", "runs-table", "comparisons-table", "examples-table"):
            expect(page.locator(f"#{table}")).to_be_visible()
        expect(page.locator("#shown")).to_have_text(f"{N_TEXT} of {N_TEXT} match")
        expect(body_rows).to_have_count(100)  # one page
        expect(page.locator("#page")).to_have_text(f"rows 1–100 of {N_TEXT}")
        page.click("#next")
        expect(body_rows).to_have_count(N_TEXT - 100)
        page.click("#prev")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 0 for w in widths)
        # the <script> in a prediction is text on the page and never ran
        expect(page.get_by_text("window.__pwned = 1", exact=False)).to_be_visible()
        assert page.evaluate("window.__pwned") is None
        assert page.locator("#examples-table a").count() == 0

        # filter: substring of any column, case-insensitive
        expected = sum(any(FILTER_WORD in str(v).lower() for v in r.values()) for r in rows)
        assert 0 < expected < 100
        page.fill("#filter", FILTER_WORD)
        expect(page.locator("#shown")).to_have_text(f"{expected} of {N_TEXT} match")
        expect(body_rows).to_have_count(expected)
        expect(body_rows.first).to_contain_text(FILTER_WORD.upper())
        page.fill("#filter", "")
        expect(page.locator("#shown")).to_have_text(f"{N_TEXT} of {N_TEXT} match")

        # sort by a numeric column: ascending, then descending; the missing score stays last
        present = sorted(r["tuned.rouge_l"] for r in rows if r["tuned.rouge_l"] is not None)
        header = page.locator("#examples-table thead button", has_text="tuned.rouge_l")
        header.click()
        assert _column(page, "tuned.rouge_l") == present[:100]  # the first page holds the smallest
        page.select_option("#page-size", "0")  # all rows
        expect(body_rows).to_have_count(N_TEXT)
        assert _column(page, "tuned.rouge_l") == present + [None]
        header.click()
        assert _column(page, "tuned.rouge_l") == present[::-1] + [None]
        assert page.get_attribute("#examples-table th[aria-sort]", "aria-sort") == "descending"

        # sorting and filtering together: the filtered rows, in sorted order
        page.fill("#filter", FILTER_WORD)
        expect(body_rows).to_have_count(expected)
        filtered = [v for v in _column(page, "tuned.rouge_l") if v is not None]
        assert filtered == sorted(filtered, reverse=True)
        page.fill("#filter", "")
        page.select_option("#page-size", "100")
        expect(body_rows).to_have_count(100)

        page.eval_on_selector("#examples .scroll", "e => { e.scrollLeft = 0; e.scrollTop = 0; }")
        shot = tmp_path / "report_text.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        _keep(shot)
    finally:
        page.close()
    assert not problems, problems
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_classification_report_in_chromium(browser, classification_eval, tmp_path):
    from playwright.sync_api import expect

    page, problems, requests = _open(browser, write_report(classification_eval))
    try:
        expect(page.locator("#table-per_label tbody tr")).to_have_count(3)
        expect(page.locator("table.matrix")).to_be_visible()
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 2 and all(w > 0 for w in widths)
        page.locator("#table-per_label thead button", has_text="f1").click()  # score tables sort too
        f1 = page.eval_on_selector_all("#table-per_label tbody tr td:nth-child(4)",
                                       "tds => tds.map(td => parseFloat(td.getAttribute('data-v')))")
        assert f1 == sorted(f1)
        labels = [json.loads(line) for line in (classification_eval / "per_example.jsonl").read_text().splitlines()]
        expected = sum("spam" in (r["label"], r["predicted"]) for r in labels)
        page.fill("#filter", "SPAM")
        expect(page.locator("#shown")).to_have_text(f"{expected} of 30 match")
        expect(page.locator("#examples-table tbody tr")).to_have_count(expected)
        shot = tmp_path / "report_classification.png"
        page.screenshot(path=str(shot), full_page=True)
        _keep(shot)
    finally:
        page.close()
    assert not problems, problems
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_every_evaluation_writes_its_report(tmp_path):
    from tunelab.stages import evaluate

    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prediction": "the cat sat", "reference": "the cat sat down"}\n'
                    '{"id": "b", "prediction": "<b>bold</b>", "reference": "a dog"}\n')
    evaluate.score(["--task", "text", "--predictions", str(path), "--output_dir", str(tmp_path / "s"),
                    "--bootstrap_resamples", "50"])
    html = (tmp_path / "s/report.html").read_text()
    assert "&lt;b&gt;bold" in html or "\\u003cb\\u003ebold" in html
