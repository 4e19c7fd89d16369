"""Draw balanced IMDB subsets from the official split, for comparing LLMs answering in words with classifiers.

    python data/split_imdb.py --source ../shared/data/imdb/imdb_50k_aclImdb.csv.gz --train 2000 --test 400 \
        --max_chars 1000 --output_dir runs/results/imdb_subset

From the rows marked train and those marked test, seeded draws with as many positive as negative
reviews. Each review is cut at --max_chars (at a word boundary, ending in …) so that a small LLM's
prompt, its k-shot examples included, stays short on a CPU; every system then reads the same text.
Writes train.csv and test.csv (id, text, sentiment) for classifiers, train.alpaca.json and
test.alpaca.json (the same rows as instructions answered with one word) for LLMs, with config.yaml and
provenance.json beside them. The same source, sizes and seed give byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from dataclasses import dataclass

from tunelab.errors import ConfigError, RecordError
from tunelab.records import atomic_write_text, read_table_rows, text_problem, write_json
from tunelab.runs import RunRecord, ensure_output_dir

INSTRUCTION = ("Is the sentiment of this movie review positive or negative? Answer with one word: "
               "positive or negative.")
LABELS = ("positive", "negative")


@dataclass
class ImdbSplitConfig:
    source: str
    train: int
    test: int
    max_chars: int
    seed: int
    output_dir: str


def cut(text: str, max_chars: int) -> str:
    text = " ".join(text.replace("<br />", " ").split())
    if len(text) <= max_chars:
        return text
    return text[:max_chars].rsplit(" ", 1)[0] + " …"


def balanced_draw(rows: list[dict], count: int, rng: random.Random) -> list[dict]:
    """`count` rows, half of each label (the first label gets the odd one), in a seeded order."""
    drawn = []
    for i, label in enumerate(LABELS):
        pool = [r for r in rows if r["sentiment"] == label]
        want = count // 2 + (count % 2 if i == 0 else 0)
        if want > len(pool):
            raise ConfigError(f"{want} {label} reviews asked for, the split holds {len(pool)}")
        drawn += rng.sample(pool, want)
    rng.shuffle(drawn)
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="../shared/data/imdb/imdb_50k_aclImdb.csv.gz")
    parser.add_argument("--train", type=int, default=2000, help="training reviews, from the rows marked train")
    parser.add_argument("--test", type=int, default=400, help="test reviews, from the rows marked test")
    parser.add_argument("--max_chars", type=int, default=1000, help="longer reviews are cut here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        if min(args.train, args.test, args.max_chars) < 1:
            raise ConfigError("--train, --test and --max_chars must be at least 1")
        cfg = ImdbSplitConfig(args.source, args.train, args.test, args.max_chars, args.seed, args.output_dir)
        out = ensure_output_dir(cfg.output_dir, args.overwrite)
        record = RunRecord(out, "split_imdb", [cfg])
        record.add_input("imdb", cfg.source)
        by_split: dict[str, list[dict]] = {"train": [], "test": []}
        for line, row in read_table_rows(cfg.source, ["review", "sentiment", "split"]):
            if row["sentiment"] not in LABELS:
                raise RecordError(cfg.source, line, f"sentiment {row['sentiment']!r} is not one of {LABELS}")
            if problem := text_problem(row["review"], "column 'review'"):
                raise RecordError(cfg.source, line, problem)
            if row["split"] in by_split:
                by_split[row["split"]].append({"id": f"imdb-line{line}",  # review_id repeats across files
                                               "text": cut(row["review"], cfg.max_chars),
                                               "sentiment": row["sentiment"]})
        rng = random.Random(cfg.seed)
        drawn = {"train": balanced_draw(by_split["train"], cfg.train, rng),
                 "test": balanced_draw(by_split["test"], cfg.test, rng)}
    except (ConfigError, RecordError, OSError) as e:
        print(f"split_imdb: {e}", file=sys.stderr)
        return 2
    for name, rows in drawn.items():
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=["id", "text", "sentiment"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        record.add_output(f"{name}_csv", atomic_write_text(out / f"{name}.csv", table.getvalue()))
        record.add_output(f"{name}_alpaca", write_json(out / f"{name}.alpaca.json", [
            {"id": r["id"], "instruction": INSTRUCTION, "input": r["text"], "output": r["sentiment"]} for r in rows]))
    record.notes["counts"] = {name: len(rows) for name, rows in drawn.items()}
    record.write()
    print(f"split_imdb: {len(drawn['train']):,} training and {len(drawn['test']):,} test reviews in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
