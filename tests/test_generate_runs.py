"""The generate stage end to end with teachers that answer: resume after kill -9, moderation QA, images, dry runs."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from fakes import JSON_QA, NO_READING, numbered_answer
from tunelab.errors import RecordError
from tunelab.paths import PROJECT_ROOT
from tunelab.stages import generate
from tunelab.teachers.mock_server import MockServer

JIGSAW = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
VOCAB = [f"{a}{b}" for a in ("bra", "cle", "dor", "fen", "gal", "hum", "jor", "kel", "lum", "mir")
         for b in ("ba", "co", "de", "fi", "go", "hu", "ja", "ke", "lo", "mu")]


def _rng(body) -> random.Random:
    return random.Random(hashlib.sha256(json.dumps(body.get("prompt") or body.get("messages")).encode()).hexdigest())


def teacher_answer(body: dict) -> str:
    """Self-instruct prompts get five valid numbered tasks; posts get a schema-valid QA answer."""
    rng = _rng(body)
    if "prompt" in body:
        tasks = [(f"Explain {' '.join(rng.sample(VOCAB, 7))}.", "", " ".join(rng.sample(VOCAB, 5)))
                 for _ in range(5)]
        return numbered_answer(4, tasks)
    flagged = rng.choice(JIGSAW)
    return "Here you go:\n```json\n" + json.dumps({
        "qa": [{"question": f"What does the post say about {w}?", "answer": f"It mentions {w}."}
               for w in rng.sample(VOCAB, 2)],
        "verdicts": [{"category": c, "violates": c == flagged, "rationale": f"Judged on wording ({c})."} for c in JIGSAW],
    }) + "\n```"


def http_argv(server, out, *extra):
    return ["--config", "demo", "--output_dir", str(out), "--teacher_backend", "openai", "--teacher", "served-model",
            "--teacher_base_url", server.base_url, "--teacher_max_retries", "8", *JSON_QA, *extra]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_kill_9_then_rerun_gives_the_uninterrupted_dataset(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    run_py = [sys.executable, str(PROJECT_ROOT / "generate/run.py")]
    with MockServer(latency_s=0.03, answer=teacher_answer) as server:
        argv = http_argv(server, "{out}", "--tasks", "self_instruct", "moderation_qa", "--requests_per_round", "8",
                         "--max_requests", "48", "--target_count", "1000", "--max_posts", "16",
                         "--teacher_max_in_flight", "4")
        command = lambda out: run_py + [a.replace("{out}", str(out)) for a in argv]  # noqa: E731
        subprocess.run(command(tmp_path / "uninterrupted"), env=env, check=True, capture_output=True, cwd=tmp_path)
        server.received.clear()

        killed = tmp_path / "killed"
        proc = subprocess.Popen(command(killed), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        cache = killed / "teacher_cache.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if cache.exists() and cache.read_text().count("\n") >= 20:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (killed / "provenance.json").exists()
        subprocess.run(command(killed), env=env, check=True, capture_output=True, cwd=tmp_path)

    for name in ("self_instruct.alpaca.json", "moderation_qa.alpaca.json"):
        assert (killed / name).read_text() == (tmp_path / "uninterrupted" / name).read_text(), name
    assert (killed / "moderation_qa.chat.jsonl").read_text() == (tmp_path / "uninterrupted/moderation_qa.chat.jsonl").read_text()
    rows = read_jsonl(cache)
    assert len(rows) == len({r["key"] for r in rows}) == 48 + 16  # nothing lost, nothing stored twice
    repeats = sum(server.received.values()) - len(server.received)
    assert repeats <= 4  # only what was in flight at the kill was asked again
    kept = json.loads((killed / "self_instruct.alpaca.json").read_text())
    assert len(kept) > 100 and kept[0]["provenance"]["teacher"] == "served-model"
    # The cost covers both sittings: the killed one's answers and tokens count too.
    clean = json.loads((tmp_path / "uninterrupted/stats.json").read_text())["teacher_sittings"]["total"]
    total = json.loads((killed / "stats.json").read_text())["teacher_sittings"]
    assert (total["total"]["sittings"], total["total"]["interrupted"]) == (2, 1)
    assert total["total"]["answers"] == clean["answers"] == 48 + 16
    assert total["total"]["completion_tokens"] == clean["completion_tokens"] > 0
    assert total["each"][0]["answers"] >= 20 and total["each"][1]["cached"] == total["each"][0]["answers"]
    assert json.loads((killed / "provenance.json").read_text())["notes"]["teacher_sittings"] == total["total"]


def test_moderation_qa_over_http_with_image_posts(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    posts = []
    for i in range(3):
        Image.new("RGB", (16, 12), (40 * i, 90, 200)).save(images / f"p{i}.png")
        posts.append({"id": f"post{i}", "text": f"caption {i}" if i else "", "image": f"p{i}.png"})
    (tmp_path / "posts.jsonl").write_text("\n".join(json.dumps(p) for p in posts))
    with MockServer(answer=teacher_answer) as server:
        stats = generate.generate(http_argv(server, tmp_path / "out", "--tasks", "moderation_qa", "--posts",
                                            str(tmp_path / "posts.jsonl"), "--posts_text_column", "text",
                                            "--posts_image_column", "image", "--images_root", str(images)))
    qa = stats["moderation_qa"]
    assert qa["kept_posts"] == 3 and qa["pairs"] == 9 and qa["rejected"] == 0
    chat = read_jsonl(tmp_path / "out/moderation_qa.chat.jsonl")
    user = chat[0]["messages"][0]["content"]
    assert user[0]["type"] == "image_url" and user[0]["image_url"]["url"] == "p0.png"  # relative to the images root
    verdicts = [r for r in json.loads((tmp_path / "out/moderation_qa.alpaca.json").read_text()) if r["id"].endswith(":verdict")]
    assert len(verdicts) == 3 and verdicts[0]["output"].split("\n")[0] in JIGSAW
    structured = read_jsonl(tmp_path / "out/moderation_qa.jsonl")
    assert [len(r["verdicts"]) for r in structured] == [6, 6, 6] and structured[0]["labels"]


def test_vision_teacher_in_process_on_generated_images(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rows = ["id,text,image"]
    for i, size in enumerate([(40, 30), (64, 64)]):
        Image.effect_noise(size, 60 + 20 * i).convert("RGB").save(images / f"meme{i}.png")
        rows.append(f"m{i},look at this {i},meme{i}.png")
    (tmp_path / "posts.csv").write_text("\n".join(rows) + "\n")
    argv = ["--config", "demo", "--output_dir", str(tmp_path / "out"), "--tasks", "moderation_qa", *JSON_QA,
            "--teacher", "tunelab:tiny-llava-next", "--teacher_backend", "llava_next", "--max_new_tokens", "12",
            "--posts", str(tmp_path / "posts.csv"), "--posts_text_column", "text", "--posts_image_column", "image",
            "--images_root", str(images)]
    stats = generate.generate(argv)["moderation_qa"]
    assert stats["sent"] == 2 and stats["rejected"] == 2  # a random model writes no JSON; each reject keeps its raw text
    rejects = read_jsonl(tmp_path / "out/moderation_qa.rejects.jsonl")
    assert all(r["raw"] and r["reason"] for r in rejects)
    cache = read_jsonl(tmp_path / "out/teacher_cache.jsonl")
    assert all(m["content"][0]["type"] == "image_url" for row in cache for m in row["messages"])
    again = generate.generate(argv + ["--overwrite"])["moderation_qa"]
    assert again["sent"] == 0 and again["cached"] == 2


def test_a_post_image_outside_the_root_names_the_line(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "posts.csv").write_text("id,text,image\nok,hello,\nbad,hi,../../etc/passwd\n")
    argv = ["--config", "demo", "--output_dir", str(tmp_path / "out"), "--tasks", "moderation_qa",
            "--posts", str(tmp_path / "posts.csv"), "--posts_text_column", "text", "--posts_image_column", "image",
            "--images_root", str(tmp_path / "images")]
    with pytest.raises(RecordError, match=r"posts.csv:3: image path .* escapes the images root"):
        generate.generate(argv)
    assert generate.main(argv) == 2
    assert "posts.csv:3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_dry_run_counts_requests_and_writes_nothing(tmp_path, tiny_llama):
    out = tmp_path / "out"
    report = generate.generate(["--config", "demo", "--output_dir", str(out), "--dry_run", "--max_requests", "10",
                                "--requests_per_round", "4", "--max_posts", "3", "--max_new_tokens", "100",
                                "--price_per_1k_prompt_tokens", "1", "--teacher_tokens_per_s", "100"])
    assert not out.exists()
    assert report["tasks"]["self_instruct"]["to_send"] == 10 and report["tasks"]["moderation_qa"]["to_send"] == 3
    assert report["token_count"].startswith("tokenizer of")
    total = report["total"]
    assert total["prompt_tokens"] > 13 * 100 and total["completion_tokens_at_most"] == 1300
    assert total["cost_at_most"] == pytest.approx(total["prompt_tokens"] / 1000)
    assert total["time_at_most"] == "0:00:13"


def test_teacher_answers_that_do_not_parse_are_kept_with_reasons(tmp_path):
    answers = iter(["not json at all", '{"qa": [], "verdicts": []}',
                    json.dumps({"qa": [{"question": "Who?", "answer": "Them."}],
                                "verdicts": [{"category": "toxic", "violates": True, "rationale": "r"}]})])
    with MockServer(answer=lambda body: next(answers)) as server:
        stats = generate.generate(http_argv(server, tmp_path / "out", "--tasks", "moderation_qa", "--max_posts", "3",
                                            "--teacher_max_in_flight", "1"))["moderation_qa"]
    assert stats["rejected"] == 3 and stats["kept_posts"] == 0
    rejects = read_jsonl(tmp_path / "out/moderation_qa.rejects.jsonl")
    reasons = sorted(r["reason"] for r in rejects)
    assert reasons[0] == NO_READING and reasons[1].startswith("no verdict for")
    assert reasons[2].startswith("schema: ")
    assert "not json at all" in [r["raw"] for r in rejects]


def test_near_duplicate_comments_are_dropped_before_the_split(tmp_path):
    base = "you are a complete idiot and everyone on this talk page knows it already"
    rows = ["id,comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate",
            f"a,{base},1,0,0,0,1,0", f"b,{base} really,1,0,0,0,1,0", f"e,{base.upper()} !!,1,0,0,0,1,0",
            "c,thanks for fixing the citation on the article,0,0,0,0,0,0"]
    rows += [f"n{i},clean comment number {i} about sources and edits {i * 7},0,0,0,0,0,0" for i in range(12)]
    (tmp_path / "corpus.csv").write_text("\n".join(rows) + "\n")
    stats = generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "out"), "--tasks", "moderation",
                               "--corpus", str(tmp_path / "corpus.csv"), "--test_per_label", "1", "--test_none", "2"])
    assert stats["moderation"]["near_duplicates_dropped"] == 1 and stats["moderation"]["duplicates_dropped"] == 1
    exact, near = read_jsonl(tmp_path / "out/moderation.dropped.jsonl")
    assert exact["id"] == "e" and exact["duplicate_of"] == "a" and exact["reason"] == "exact duplicate"
    assert near["id"] == "b" and near["duplicate_of"] == "a" and near["jaccard"] >= 0.8


@pytest.mark.parametrize("bad", [["--requests_per_round", "0"], ["--teacher_batch_size", "0"],
                                 ["--near_duplicate_threshold", "1.5"], ["--decontamination_ngram", "0"],
                                 ["--teacher_backend", "openai", "--teacher_base_url", "http://127.0.0.1:1/v1",
                                  "--teacher_api_key_env", "UNSET_TUNELAB_TEST_KEY"],
                                 ["--decontaminate_against", "no/such/eval.json"]])
def test_bad_settings_stop_before_the_output_folder_exists(tmp_path, capsys, bad):
    out = tmp_path / "out"
    assert generate.main(["--config", "demo", "--output_dir", str(out), *bad]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not out.exists()


def test_image_only_posts_are_not_duplicates_of_each_other(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (80 * i, 10, 10)).save(tmp_path / "img" / f"{i}.png")
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    (tmp_path / "posts.csv").write_text("id,text,image\n0,,0.png\n1,,1.png\n2,,2.png\n")
    argv = lambda server, posts: http_argv(server, tmp_path / f"out-{posts}", "--tasks", "moderation_qa", "--posts",  # noqa: E731
                                           str(tmp_path / posts), "--posts_text_column", "text",
                                           "--posts_image_column", "image", "--images_root", str(tmp_path / "img"))
    with MockServer(answer=teacher_answer) as server:
        stats = generate.generate(argv(server, "posts.csv"))["moderation_qa"]
        assert stats["kept_posts"] == 3 and read_jsonl(tmp_path / "out-posts.csv/moderation_qa.jsonl")[0]["id"] == "0"
        (tmp_path / "bad.csv").write_text("id,text,image\n0,hi,notes.txt\n")
        with pytest.raises(RecordError, match=r"bad.csv:2: notes.txt is not a readable image"):
            generate.generate(argv(server, "bad.csv"))


def test_a_file_that_is_not_utf8_names_itself(tmp_path):
    (tmp_path / "posts.csv").write_bytes("id,comment_text\n1,caf\xe9\n".encode("latin-1"))
    with pytest.raises(RecordError, match=r"posts.csv: not UTF-8 text"):
        generate.generate(["--config", "demo", "--output_dir", str(tmp_path / "out"), "--tasks", "moderation_qa",
                           "--posts", str(tmp_path / "posts.csv")])
