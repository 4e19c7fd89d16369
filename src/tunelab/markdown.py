"""Markdown tables, as model and dataset cards, RESULTS.md and the benchmark pages write them."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_cell(value) -> str:
    """A value as one table cell: a pipe would end the cell and a newline the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence, rows: Sequence[Sequence]) -> str:
    """A GitHub table (no trailing newline); every cell, header included, through `markdown_cell`."""
    def line(cells: Sequence) -> str:
        return "| " + " | ".join(markdown_cell(c) for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
