"""data/split_alpaca.py and data/split_imdb.py: the result runs' seeded, disjoint, balanced draws."""

import csv
import gzip
import json
import subprocess
import sys

from tunelab.paths import PROJECT_ROOT


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "data" / script), *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_alpaca_split_is_disjoint_seeded_and_skips_unusable_and_repeated_records(tmp_path):
    records = [{"instruction": f"Task {i % 30}", "input": "", "output": f"answer {i}"} for i in range(40)]
    records[3]["output"] = ""  # unusable: never drawn (its instruction comes again at 33, which may be)
    source = tmp_path / "alpaca.json"
    source.write_text(json.dumps(records))
    for out in ("a", "b"):
        done = run("split_alpaca.py", "--source", str(source), "--train", "20", "--heldout", "8",
                   "--output_dir", str(tmp_path / out))
        assert done.returncode == 0, done.stderr
    train, heldout = (json.loads((tmp_path / "a" / f"{n}.json").read_text()) for n in ("train", "heldout"))
    assert len(train) == 20 and len(heldout) == 8
    questions = [r["instruction"] for r in train + heldout]
    assert len(set(questions)) == len(questions)  # a repeated instruction is drawn once at most
    assert "alpaca-3" not in {r["id"] for r in train + heldout}
    assert all(records[int(r["id"].split("-")[1])]["output"] == r["output"] for r in train + heldout)
    assert (tmp_path / "a" / "train.json").read_bytes() == (tmp_path / "b" / "train.json").read_bytes()
    assert json.loads((tmp_path / "a" / "provenance.json").read_text())["notes"]["counts"] == {
        "train": 20, "heldout": 8, "unusable_in_source": 1}
    too_many = run("split_alpaca.py", "--source", str(source), "--train", "25", "--heldout", "8",
                   "--output_dir", str(tmp_path / "c"))
    assert too_many.returncode == 2 and "more than the 30 distinct records" in too_many.stderr


def write_imdb(path, rows):
    with gzip.open(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["review", "sentiment", "split", "review_id", "rating"])
        writer.writerows(rows)


def test_imdb_subsets_are_balanced_cut_the_same_for_every_system_and_name_bad_rows(tmp_path):
    rows = [[f"{split} {label} review {i} " + "word " * (3 * i), label, split, str(i % 5), "7"]
            for split in ("train", "test") for label in ("positive", "negative") for i in range(10)]
    source = tmp_path / "imdb.csv.gz"
    write_imdb(source, rows)
    done = run("split_imdb.py", "--source", str(source), "--train", "8", "--test", "6", "--max_chars", "60",
               "--output_dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    with open(out / "test.csv", newline="", encoding="utf-8") as f:
        test = list(csv.DictReader(f))
    alpaca = json.loads((out / "test.alpaca.json").read_text())
    assert [r["sentiment"] for r in test].count("positive") == 3 and len(test) == 6
    assert [(r["id"], r["text"], r["sentiment"]) for r in test] == [(a["id"], a["input"], a["output"]) for a in alpaca]
    assert len({r["id"] for r in test}) == 6  # review_id repeats in the source; ids do not
    assert all(len(r["text"]) <= 62 for r in test) and any(r["text"].endswith(" …") for r in test)
    with open(out / "train.csv", newline="", encoding="utf-8") as f:
        assert not {r["text"] for r in csv.DictReader(f)} & {r["text"] for r in test}  # official splits apart

    rows[4][1] = "neutral"
    write_imdb(source, rows)
    bad = run("split_imdb.py", "--source", str(source), "--output_dir", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "imdb.csv.gz:6" in bad.stderr and "'neutral'" in bad.stderr
