"""Split Alpaca into disjoint training and held-aside records, seeded, for comparing students on one set.

    python data/split_alpaca.py --source ../shared/data/alpaca/alpaca_data.json --train 2000 --heldout 500 \
        --output_dir runs/results/alpaca_split

Writes train.json and heldout.json (Alpaca records with an id, alpaca-<index in the source>) with
config.yaml and provenance.json beside them. Records whose instruction and input repeat another's are
drawn at most once, so no held-aside question is also a training one. The same source, sizes and seed
give byte-identical files.
"""

from __future__ import annotations

import argparse
import random
import sys
from dataclasses import dataclass

from tunelab.errors import ConfigError, RecordError
from tunelab.records import iter_json_objects, validate, write_json
from tunelab.runs import RunRecord, ensure_output_dir


@dataclass
class SplitConfig:
    source: str
    train: int
    heldout: int
    seed: int
    output_dir: str


def split(records: dict[int, dict], train: int, heldout: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Training and held-aside records (keys: their index in the source) drawn without replacement among
    the distinct (instruction, input) pairs."""
    first_of: dict[tuple[str, str], int] = {}
    for i, r in records.items():
        first_of.setdefault((r["instruction"].strip(), r.get("input", "").strip()), i)
    distinct = sorted(first_of.values())
    if train + heldout > len(distinct):
        raise ConfigError(f"--train {train} + --heldout {heldout} is more than the {len(distinct):,} distinct records")
    drawn = random.Random(seed).sample(distinct, train + heldout)
    tagged = [records[i] | {"id": f"alpaca-{i}"} for i in drawn]
    return tagged[heldout:], tagged[:heldout]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="../shared/data/alpaca/alpaca_data.json", help="Alpaca's JSON file")
    parser.add_argument("--train", type=int, default=2000, help="training records")
    parser.add_argument("--heldout", type=int, default=500, help="held-aside records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.train < 1 or args.heldout < 1:
            raise ConfigError("--train and --heldout must be at least 1")
        cfg = SplitConfig(args.source, args.train, args.heldout, args.seed, args.output_dir)
        out = ensure_output_dir(cfg.output_dir, args.overwrite)
        record = RunRecord(out, "split_alpaca", [cfg])
        record.add_input("alpaca", cfg.source)
        # the source's unusable records (an empty output: Alpaca has a few) are never drawn, only counted
        records, unusable = {}, 0
        for index, (_, obj) in enumerate(iter_json_objects(cfg.source)):
            if validate(obj, "alpaca"):
                unusable += 1
            else:
                records[index] = obj
        train, heldout = split(records, cfg.train, cfg.heldout, cfg.seed)
    except (ConfigError, RecordError, OSError) as e:
        print(f"split_alpaca: {e}", file=sys.stderr)
        return 2
    for name, rows in (("train", train), ("heldout", heldout)):
        record.add_output(name, write_json(out / f"{name}.json", rows))
    record.notes["counts"] = {"train": len(train), "heldout": len(heldout), "unusable_in_source": unusable}
    record.write()
    print(f"split_alpaca: {len(train):,} training and {len(heldout):,} held-aside records in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
