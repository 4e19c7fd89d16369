"""Moderation instruction sets from labelled corpora.

Columns in: any CSV/JSONL with a text column and one 0/1 column per label (mapped in config).
Columns out: moderation records {id, text, labels}; Alpaca records {instruction, input, output};
chat records {messages}. Train and test never share a text.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from ..errors import RecordError
from ..records import alpaca_to_chat, read_table_rows, text_problem
from ..taxonomy import Taxonomy

TRUE_VALUES = {"1", "1.0", "true", "yes"}
FALSE_VALUES = {"0", "0.0", "false", "no", ""}


def _flag(value, path, line, column) -> bool | None:
    """A 0/1 label cell; None for Kaggle's -1 (unscored)."""
    text = str(value).strip().lower()
    if text in ("-1", "-1.0"):
        return None
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise RecordError(path, line, f"column '{column}' must be 0 or 1, got {value!r}")


def load_labeled_corpus(path: str | Path, taxonomy: Taxonomy, text_column: str,
                        label_columns: dict[str, str]) -> tuple[list[dict], dict[str, int]]:
    """Read a labelled corpus into moderation records; returns records and counts of what was skipped.

    `label_columns` maps each taxonomy label to its column. A missing column, an empty text or a
    label cell that is not 0/1 raises a `RecordError` naming the file and line.
    """
    path = Path(path)
    missing_labels = [label for label in taxonomy.labels if label not in label_columns]
    if missing_labels:
        raise RecordError(path, None, f"no column mapped for labels {missing_labels}")
    rows = read_table_rows(path, [text_column, *label_columns.values()])
    records, skipped = [], Counter()
    for line, row in rows:
        text = row[text_column]
        if problem := text_problem(text, f"column '{text_column}'"):
            raise RecordError(path, line, problem)
        flags = {label: _flag(row[col], path, line, col) for label, col in label_columns.items()}
        if any(v is None for v in flags.values()):
            skipped["unscored (-1) rows"] += 1
            continue
        labels = [label for label in taxonomy.labels if flags[label]]
        record_id = str(row.get("id") or f"{path.stem}:{line}")
        records.append({"id": record_id, "text": text, "labels": labels})
    if not records:
        raise RecordError(path, None, "holds no usable rows")
    return records, dict(skipped)


def balanced_split(records: list[dict], taxonomy: Taxonomy, *, test_per_label: int, test_none: int,
                   train_max_per_label: int, train_none: int, seed: int) -> tuple[list[dict], list[dict]]:
    """A label-balanced test set, then a capped, balanced train set from what is left.

    Multi-label aware: labels are filled rarest first, and a record picked for one label counts
    toward every label it carries. A label never gives the test set more than half of its records,
    so rare labels still reach training.
    """
    rng = random.Random(seed)
    pool = list(records)
    rng.shuffle(pool)
    by_label = {label: [r for r in pool if label in r["labels"]] for label in taxonomy.labels}
    rarest_first = sorted(taxonomy.labels, key=lambda label: len(by_label[label]))
    none_pool = [r for r in pool if not r["labels"]]

    def fill(candidates: dict[str, list[dict]], quota, none_quota: int, taken: set[int]) -> list[dict]:
        chosen: list[dict] = []
        counts: Counter = Counter()
        for label in rarest_first:
            for r in candidates[label]:
                if counts[label] >= quota(label):
                    break
                if id(r) in taken:
                    continue
                taken.add(id(r))
                chosen.append(r)
                counts.update(r["labels"])
        nones = [r for r in none_pool if id(r) not in taken][:none_quota]
        taken.update(id(r) for r in nones)
        return chosen + nones

    taken: set[int] = set()
    test = fill(by_label, lambda label: min(test_per_label, len(by_label[label]) // 2), test_none, taken)
    train = fill(by_label, lambda label: train_max_per_label, train_none, taken)
    rng.shuffle(train)
    return train, test


def label_counts(records: list[dict], taxonomy: Taxonomy) -> dict[str, int]:
    counts = Counter(label for r in records for label in r["labels"])
    return {**{label: counts[label] for label in taxonomy.labels}, taxonomy.none_label: sum(not r["labels"] for r in records)}


def answer_text(labels: list[str], taxonomy: Taxonomy) -> str:
    """The fixed answer format: labels in taxonomy order, comma-separated, or the none label."""
    return ", ".join(label for label in taxonomy.labels if label in labels) or taxonomy.none_label


def to_alpaca(record: dict, taxonomy: Taxonomy, instruction: str) -> dict:
    return {"id": record["id"], "instruction": instruction, "input": record["text"],
            "output": answer_text(record["labels"], taxonomy)}


def to_chat(record: dict, taxonomy: Taxonomy, instruction: str) -> dict:
    return alpaca_to_chat(to_alpaca(record, taxonomy, instruction))
