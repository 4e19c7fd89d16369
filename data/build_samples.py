"""Rebuild the shipped samples from the full datasets (run from the project root, with ../shared/data beside it).

    python data/build_samples.py --source ../shared/data

Deterministic: the same source files give byte-identical samples.
"""

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

JIGSAW_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="../shared/data", type=Path)
    parser.add_argument("--out", default=Path(__file__).resolve().parent, type=Path)
    args = parser.parse_args()
    rng = random.Random(0)

    # Jigsaw: every labelled row of the first 3,000 train rows, plus clean rows up to 520 in all.
    with open(args.source / "jigsaw/train_rows0001-3000_noid.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labelled = [r for r in rows if any(r[label] == "1" for label in JIGSAW_LABELS)]
    clean = [r for r in rows if not any(r[label] == "1" for label in JIGSAW_LABELS)]
    sample = labelled + rng.sample(clean, 520 - len(labelled))
    sample.sort(key=rows.index)
    with open(args.out / "jigsaw_sample.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["comment_text", *JIGSAW_LABELS])
        writer.writeheader()
        writer.writerows(sample)

    # Alpaca: 320 records for training and 40 held aside for inference and scoring, no overlap.
    alpaca = json.loads((args.source / "alpaca/alpaca_data.json").read_text(encoding="utf-8"))
    picked = rng.sample(range(len(alpaca)), 360)
    train = [alpaca[i] | {"id": f"alpaca-{i}"} for i in picked[:320]]
    heldout = [alpaca[i] | {"id": f"alpaca-{i}"} for i in picked[320:]]
    for name, records in (("alpaca_sample.json", train), ("alpaca_heldout.json", heldout)):
        (args.out / name).write_text(json.dumps(records, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    shutil.copyfile(args.source / "alpaca/seed_tasks.jsonl", args.out / "seed_tasks.jsonl")


if __name__ == "__main__":
    main()
