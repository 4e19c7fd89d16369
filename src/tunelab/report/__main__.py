"""python -m tunelab.report EVAL_DIR [--title ...] [--max-examples N]: (re)write EVAL_DIR/report.html."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import TunelabError
from .html import DEFAULT_MAX_EXAMPLES, write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tunelab.report",
        description="Write a self-contained HTML report (scores, plots, every example) into an evaluation folder.")
    parser.add_argument("eval_dir", type=Path, help="an evaluation output folder (scores.json, per_example.jsonl, ...)")
    parser.add_argument("--title", default=None, help="page title (default: the task and the folder's name)")
    parser.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES,
                        help="rows in the examples table; 0 for all (plain DOM stays quick to ~10k)")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.eval_dir, args.title, max_examples=args.max_examples)
    except TunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
