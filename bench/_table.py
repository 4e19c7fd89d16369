"""Tables the bench scripts and bench/suite.py print: aligned columns for a terminal, pipes for markdown."""

from __future__ import annotations

from collections.abc import Sequence

import tunelab.markdown


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows with every column but the last padded to its widest cell (the last is a free-form note)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)), row[-1], sep="  ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table, ending in a newline."""
    return tunelab.markdown.markdown_table(header, rows) + "\n"
