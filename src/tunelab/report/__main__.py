"""python -m tunelab.report FOLDER [--title ...] [--max-examples N] (also `tunelab view FOLDER`): write
the folder's page and print its path: report.html for an evaluation folder, view.html for a generate
or inference folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import TunelabError
from .html import DEFAULT_MAX_EXAMPLES
from .view import write_page


def main(argv: Sequence[str] | None = None) -> int:
    prog = sys.argv[0] if sys.argv[0].startswith("tunelab ") else "python -m tunelab.report"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write a self-contained HTML page into a run folder: an evaluation folder gets report.html "
                    "(scores, plots, every example); a generate or inference folder gets view.html (records, "
                    "rejects with reasons and the prompts sent, predictions, a sweep side by side).")
    parser.add_argument("eval_dir", metavar="folder", type=Path,
                        help="a run output folder: evaluate (scores.json, ...), generate or inference")
    parser.add_argument("--title", default=None, help="page title (default: the kind and the folder's name)")
    parser.add_argument("--max_examples", "--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES,
                        help="rows per table; 0 for all (plain DOM stays quick to ~10k)")
    args = parser.parse_args(argv)
    try:
        path = write_page(args.eval_dir, args.title, max_rows=args.max_examples)
    except TunelabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
