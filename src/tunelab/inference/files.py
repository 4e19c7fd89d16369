"""Where an inference run's answers go: one setting's predictions.jsonl, or a sweep's predictions/ folder (one
file per decoding setting) with its sweep.json index; and how rows are keyed by id."""

from __future__ import annotations

import json
from pathlib import Path

PREDICTIONS = "predictions.jsonl"  # the single-setting file; evaluate and the demo read it
SWEEP_DIR = "predictions"  # a sweep's files: predictions/t0.7_k50_b1.jsonl
SWEEP_INDEX = "sweep.json"


def id_key(value) -> str:
    """An example's id as a dict key, whatever JSON type it has (the view page matches sweep rows by it)."""
    return json.dumps(value, sort_keys=True)


def prediction_files(out: Path) -> list[Path]:
    """The predictions files an inference folder holds: one setting's, or a sweep's, one per setting."""
    files = [out / PREDICTIONS] + sorted((out / SWEEP_DIR).glob("*.jsonl"))
    return [p for p in files if p.is_file()]
