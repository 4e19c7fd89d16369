"""Labeled texts for classifiers: the one loader of every layout, and their tokens.

`load_labeled_texts` reads moderation records and labeled tables (CSV, TSV, JSON, JSONL, each optionally
.gz; Kaggle's texts+labels file pairs; hub datasets) by settings alone (`ClassifierConfig`): which column
holds the text, and either one column of label names / indices / separator-joined lists, or one 0/1
column per label. Bad rows are skipped and listed, or stop the run naming file:line (`bad_records`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, RecordError
from ...paths import resolve_input
from ...records import read_joined_rows, read_table_rows, split_joined_path
from ...runs import sha256_file
from ...splits import stratum_keys
from ...taxonomy import load_taxonomy
from ..data import is_dataset_ref, iter_data_objects
from .config import ClassifierConfig

DEFAULT_LABEL_COLUMN = "labels"  # moderation records: {"text", "labels": [names]}
_INT = re.compile(r"[+-]?\d+")


@dataclass
class LabeledTexts:
    """Texts with their label indices (exactly one each for single_label), and every row left out."""

    texts: list[str]
    targets: list[list[int]]
    ids: list[str]
    labels: tuple[str, ...]
    problem_type: str
    skipped: list[dict] = field(default_factory=list)
    other_split_rows: int = 0
    label_source: Path | None = None
    # (file, position) of each row: its index among the rows its file yields (a line number is not unique
    # in a one-line JSON array)
    origins: list[tuple[str, int]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # each row's line (for messages)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> LabeledTexts:
        indices = list(indices)
        return LabeledTexts([self.texts[i] for i in indices], [self.targets[i] for i in indices],
                            [self.ids[i] for i in indices], self.labels, self.problem_type, [], 0, self.label_source,
                            [self.origins[i] for i in indices] if self.origins else [],
                            [self.lines[i] for i in indices] if self.lines else [])

    def concat(self, other: LabeledTexts) -> LabeledTexts:
        """These rows, then other's (same labels and problem type)."""
        if other.labels != self.labels or other.problem_type != self.problem_type:
            raise ValueError("rows of different label sets or problem types cannot be joined")
        return LabeledTexts(self.texts + other.texts, self.targets + other.targets, self.ids + other.ids,
                            self.labels, self.problem_type, [], 0, self.label_source,
                            self.origins + other.origins if self.origins and other.origins else [],
                            self.lines + other.lines if self.lines and other.lines else [])

    def strata(self) -> list:
        """Each row's stratum for splitting: its class, or its rarest label (() for none)."""
        counts = [int(n) for n in (self.y().sum(axis=0) if self.problem_type == "multi_label"
                                   else np.bincount(self.y(), minlength=len(self.labels)))]
        return stratum_keys(self.targets, counts)

    def y(self) -> np.ndarray:
        """Class indices (single_label) or a 0/1 matrix, one column per label (multi_label)."""
        if self.problem_type == "single_label":
            return np.array([t[0] for t in self.targets], dtype=np.int64)
        return multi_hot(self.targets, len(self.labels))


def multi_hot(targets: list[list[int]], n_labels: int) -> np.ndarray:
    y = np.zeros((len(targets), n_labels), dtype=np.float32)
    for i, t in enumerate(targets):
        y[i, t] = 1.0
    return y


def encode_labels(records: list[dict], labels: tuple[str, ...]) -> np.ndarray:
    """Moderation records ({"labels": [names]}) as a 0/1 matrix, one column per label."""
    return multi_hot([[labels.index(x) for x in r["labels"]] for r in records], len(labels))


@dataclass
class _Row:
    path: Path
    line: int
    id: str
    text: str
    label: object  # the label cell, or the list of 0/1 cells of label_columns
    position: int  # index among the rows the file yields


def _label_tokens(value, separator: str) -> tuple[list, bool]:
    """A label cell as its tokens, and whether it was written as a list (evidence of multi-label)."""
    if isinstance(value, list):
        return value, True
    if isinstance(value, str):
        if separator and separator in value:
            return [t.strip() for t in value.split(separator) if t.strip()], True
        return ([value.strip()] if value.strip() else []), False
    return ([] if value is None else [value]), False


def _token_index(token, name_to_index: dict, start: int, n: int) -> int | str:
    """A label token (name or integer index) as an index into the labels, or why it is not one."""
    if isinstance(token, str):
        if token in name_to_index:
            return name_to_index[token]
        if not _INT.fullmatch(token):
            known = list(name_to_index)
            return f"unknown label {token!r} (labels: {known if len(known) <= 30 else str(known[:30])[:-1] + ', ...]'})"
        token = int(token)
    if isinstance(token, float) and token.is_integer():
        token = int(token)
    if isinstance(token, bool) or not isinstance(token, int):
        return f"label {token!r} is neither a label name nor an integer index"
    if not start <= token < start + n:
        return f"label index {token} is outside {start}..{start + n - 1} (label_index_start {start})"
    return token - start


def _flag(value, column: str) -> int | str:
    """A 0/1 label cell, or why it is not one."""
    if isinstance(value, bool):
        return int(value)
    text = str(value).strip().lower() if value is not None else ""
    if text in ("1", "1.0", "true"):
        return 1
    if text in ("0", "0.0", "false"):
        return 0
    if text in ("-1", "-1.0"):
        return f"label column {column!r} is -1 (unscored, as in Jigsaw's test_labels.csv)"
    return f"label column {column!r} holds {value!r}, expected 0 or 1"


def _read_label_names(path: Path) -> tuple[str, ...]:
    path = resolve_input(path)
    if not path.exists():
        raise ConfigError(f"labels_file {path} not found")
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"labels_file {path}: expected one distinct label name per line, got {list(names)[:10]}")
    return names


def load_labeled_texts(paths, layout: ClassifierConfig, *, labels: tuple[str, ...] | None = None,
                       problem_type: str | None = None, split_value: str | None = None,
                       bad_records: str = "skip") -> LabeledTexts:
    """Read labeled texts from `paths` laid out as `layout` says.

    `labels` / `problem_type`: those of a training set (for eval data and the evaluate stage); when
    None they come from `layout` (label sources, problem_type) and, where it says auto, from the rows.
    `split_value`: keep only rows whose `layout.split_column` holds it (the others are counted).
    `bad_records`: "skip" lists a bad row (empty text, unknown label, wrong field count, ...) in
    `.skipped` with file, line and reason; "error" raises `RecordError` naming the first one's file:line.
    A missing column or an unreadable file always raises.
    """
    paths = [Path(p) for p in paths]
    if bad_records not in ("skip", "error"):
        raise ConfigError(f"bad_records must be skip or error, got {bad_records!r}")
    skipped: list[dict] = []
    label_column = None if layout.label_columns else (layout.label_column or DEFAULT_LABEL_COLUMN)
    required = [layout.text_column, *(layout.label_columns or [label_column])]
    if split_value is not None and layout.split_column:
        required.append(layout.split_column)

    def skip(path, line, reason, rid=None):
        skipped.append({"file": str(path), "line": line, "id": rid, "reason": reason})

    rows, other_split = _read_rows(paths, layout, label_column, required, split_value, skip)

    label_source = None
    if labels is None:
        labels, label_source = _label_names(layout, rows, label_column)
    labels = tuple(labels)
    if problem_type is None or problem_type == "auto":
        problem_type = layout.problem_type
    if problem_type == "auto":
        problem_type = "multi_label" if layout.label_columns or any(
            _label_tokens(r.label, layout.label_separator)[1] for r in rows) else "single_label"

    name_to_index = {name: i for i, name in enumerate(labels)}
    texts, targets, ids, origins, lines = [], [], [], [], []
    for r in rows:
        indices, problem = _targets(r.label, layout, problem_type, labels, name_to_index)
        if problem is not None:
            skip(r.path, r.line, problem, r.id)
            continue
        texts.append(r.text)
        targets.append(indices)
        ids.append(r.id)
        origins.append((str(r.path), r.position))
        lines.append(r.line)
    # Rows are judged in two passes (fields, then labels once the label set is known): list them in file order.
    order = {str(p): i for i, p in enumerate(paths)}
    skipped.sort(key=lambda s: (order.get(s["file"], 0), s["line"]))
    if skipped and bad_records == "error":
        first = skipped[0]
        more = f" (and {len(skipped) - 1} more bad rows)" if len(skipped) > 1 else ""
        raise RecordError(first["file"], first["line"], first["reason"] + more)
    if not texts:
        raise RecordError(", ".join(map(str, paths)), None, "no usable rows"
                          + (f" ({len(skipped)} bad rows skipped, the first {skipped[0]['file']}:{skipped[0]['line']}: "
                             f"{skipped[0]['reason']})" if skipped else "")
                          + (f" ({other_split} rows of other splits than {split_value!r})" if other_split else ""))
    return LabeledTexts(texts, targets, ids, labels, problem_type, skipped, other_split, label_source, origins,
                        lines)


def _read_rows(paths: list[Path], layout: ClassifierConfig, label_column: str | None, required: list[str],
               split_value: str | None, skip) -> tuple[list[_Row], int]:
    """The first pass: every row with a text, its label cell(s) as written, and the count of other splits' rows."""
    rows: list[_Row] = []
    other_split = 0
    for path in paths:
        parts = joined_parts(path)
        if parts:  # Kaggle's test.csv+test_labels.csv: texts in one file, labels in the other, by id
            table = _joined_rows(*parts, layout, required, skip)
        elif is_dataset_ref(path):  # a hub id (stanfordnlp/imdb:test) or a dataset folder
            table = _dataset_rows(path, required)
        else:
            table = read_table_rows(path, required, column_names=layout.column_names or None,
                                    on_bad=lambda line, why, p=path: skip(p, line, why))
        for position, (line, row) in enumerate(table):
            if split_value is not None and layout.split_column and str(row[layout.split_column]).strip() != split_value:
                other_split += 1
                continue
            rid = str(row.get("id") or f"{path.stem}:{line}")
            text = row[layout.text_column]
            if not isinstance(text, str):
                skip(path, line, f"text column {layout.text_column!r} holds {type(text).__name__}, not text", rid)
            elif not text.strip():
                skip(path, line, f"empty text in column {layout.text_column!r}", rid)
            else:
                label = [row[c] for c in layout.label_columns] if layout.label_columns else row[label_column]
                rows.append(_Row(path, line, rid, text, label, position))
    return rows, other_split


def _targets(label, layout: ClassifierConfig, problem_type: str, labels: tuple[str, ...],
             name_to_index: dict) -> tuple[list[int], str | None]:
    """The second pass, once the label set is known: a row's label indices, or why it has none usable."""
    if layout.label_columns:
        flags = [_flag(v, c) for v, c in zip(label, layout.label_columns)]
        problem = next((f for f in flags if isinstance(f, str)), None)
        indices = [j for j, f in enumerate(flags) if f == 1]
    else:
        tokens, _ = _label_tokens(label, layout.label_separator if problem_type == "multi_label" else "")
        found = [_token_index(t, name_to_index, layout.label_index_start, len(labels)) for t in tokens]
        problem = next((f for f in found if isinstance(f, str)), None)
        indices = list(dict.fromkeys(f for f in found if not isinstance(f, str)))
    if problem is None and problem_type == "single_label" and len(indices) != 1:
        problem = ("no label" if not indices else
                   f"{len(indices)} labels {[labels[j] for j in indices]} in a single_label problem")
    return indices, problem


JOIN_ID_COLUMN = "id"


def _dataset_rows(ref, required: list[str]):
    """(row number, row) of a hub dataset or dataset folder (`datasets.load_dataset`, split after a colon)."""
    for row, obj in iter_data_objects(ref):
        absent = [c for c in required if c not in obj]
        if absent:
            raise RecordError(ref, None, f"missing column(s) {absent}; the dataset has {sorted(obj)}")
        yield row, obj


def joined_parts(path) -> tuple[Path, Path] | None:
    """(texts file, labels file) of a `texts+labels` data entry (Kaggle's test.csv+test_labels.csv), else None."""
    parts = split_joined_path(path)
    if parts and not all(p.exists() for p in parts):
        missing = [str(p) for p in parts if not p.exists()]
        raise ConfigError(f"{path}: a texts+labels entry needs both files; missing {', '.join(missing)}")
    return parts


def data_file_hash(path) -> str:
    """SHA-256 of a data file, or of both files of a texts+labels entry."""
    parts = joined_parts(path)
    if parts:
        return "+".join(sha256_file(p) for p in parts)
    if Path(path).is_file():
        return sha256_file(path)
    return "dataset reference (not hashed)"  # a hub id or dataset folder: its revision is the hub's


def _joined_rows(text_path: Path, labels_path: Path, layout: ClassifierConfig, required: list[str], skip):
    """(text file line, row) of `text_path` joined by id with the label columns of `labels_path`; rows
    that do not pair up are bad rows, named by the joined entry and the line."""
    joined = f"{text_path}+{labels_path}"
    for line, row, _ in read_joined_rows(
            text_path, labels_path, [layout.text_column], [c for c in required if c != layout.text_column],
            id_column=JOIN_ID_COLUMN, on_bad=lambda path, line, why: skip(joined, line, f"{path.name}: {why}"),
            on_unmatched=lambda path, line, kind, detail, rid: skip(joined, line, f"{path.name}: {detail}", rid)):
        yield line, row


def _label_names(layout: ClassifierConfig, rows: list[_Row], label_column: str | None):
    """The label names in index order, and the file they came from (None when from settings or data)."""
    if layout.label_columns:
        return tuple(layout.label_columns), None
    if layout.labels:
        return tuple(layout.labels), None
    if layout.labels_file:
        return _read_label_names(Path(layout.labels_file)), resolve_input(layout.labels_file)
    if layout.taxonomy:
        taxonomy = load_taxonomy(layout.taxonomy)
        return taxonomy.labels, taxonomy.path
    names = set()
    for r in rows:
        for token in _label_tokens(r.label, layout.label_separator)[0]:
            if not isinstance(token, str) or _INT.fullmatch(token):
                raise ConfigError(f"{r.path}:{r.line}: column {label_column!r} holds label indices ({token!r}); "
                                  "give the label names with labels, labels_file or taxonomy")
            names.add(token)
    if not names:
        raise ConfigError(f"no label names found in column {label_column!r}; give labels, labels_file or taxonomy")
    return tuple(sorted(names)), None


# ---- tokens --------------------------------------------------------------------------------------

def encode_texts(tokenizer, texts: list[str], max_length: int, truncation: str = "head") -> dict:
    """Token ids (and attention masks) of `texts`, special tokens added, at most `max_length` each.

    head: the tokenizer's own truncation (keeps the start). head_tail: the first quarter of the room
    and the last three quarters of the text's tokens (Sun et al., 2019: best for long IMDB reviews).
    """
    if truncation == "head":
        return tokenizer(texts, truncation=True, max_length=max_length)
    # Where the special tokens sit ([CLS] ... [SEP]: one before, one after), from a one-word probe.
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    probe = tokenizer("a")["input_ids"]
    lead = next(i for i in range(len(probe)) if probe[i:i + len(plain)] == plain)
    trail = len(probe) - lead - len(plain)
    room = max_length - lead - trail
    head = room // 4
    ids = []
    for full in tokenizer(texts, verbose=False)["input_ids"]:
        if len(full) > max_length:
            body = full[lead:len(full) - trail]
            full = full[:lead] + body[:head] + body[len(body) - (room - head):] + full[len(full) - trail:]
        ids.append(full)
    return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}


def overlength_rows(texts: list[str], tokenizer, max_length: int) -> list[int]:
    """Indices of texts longer than `max_length` tokens (special tokens included)."""
    over = []
    for start in range(0, len(texts), 1024):
        ids = tokenizer(texts[start:start + 1024], truncation=True, max_length=max_length + 1)["input_ids"]
        over += [start + i for i, x in enumerate(ids) if len(x) > max_length]
    return over
