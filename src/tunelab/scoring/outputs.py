"""Plots written beside a classification's scores.json."""

from __future__ import annotations

from pathlib import Path

from ..runs import RunRecord


def write_plots(enabled: bool, record: RunRecord, out: Path, report: dict, metrics: dict, **kwargs) -> None:
    """The plots of `metrics` into `out`, listed in the run record and in `report["plots"]`."""
    if not enabled:
        return
    from ..metrics.plots import classification_plots

    made = classification_plots(metrics, out, **kwargs)
    for name, path in made.items():
        record.add_output(name, path)
    report.setdefault("plots", {}).update({name: path.name for name, path in made.items()})
