"""Encoder classifiers (BERT, MiniLM, DistilBERT, any sequence-classification model) with the HF
Trainer, full fine-tuning or LoRA.

- single_label (one class per text: IMDB sentiment, DBpedia-14): softmax + cross-entropy; accuracy
  and macro-F1 during training; the prediction is the most probable class.
- multi_label (any number of labels per text: Jigsaw toxicity, GoEmotions): one sigmoid per label +
  BCE, a text with no label is all zeros; micro/macro-F1 and mean ROC-AUC during training; per-label
  decision thresholds tuned on the eval set after training and saved with the model.
- imbalance: class weights in the loss (CE `weight`, BCE `pos_weight`) and/or a weighted random
  sampler that draws classes evenly. `ClassifierTrainer` changes only the loss and the sampler.

Data: `load_labeled_texts` is the one loader. It reads moderation records and labeled tables (CSV,
TSV, JSON, JSONL, each optionally .gz) by settings alone (`ClassifierConfig`): which column holds the
text, and either one column of label names / indices / separator-joined lists, or one 0/1 column
per label. Bad rows are skipped and listed, or stop the run naming file:line (`bad_records`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, RecordError

CLASSIFIER_INFO = "tunelab_classifier.json"
PROBLEM_TYPES = ("auto", "single_label", "multi_label")
HF_PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}
CLASS_WEIGHTINGS = ("none", "balanced")
TRUNCATIONS = ("head", "head_tail")
HEAD_BIAS_INITS = ("prior", "zero")
POOLINGS = ("model", "mean")
DATA_SPLITS = "data_splits.json"  # which rows of which files each split holds
DEFAULT_LABEL_COLUMN = "labels"  # moderation records: {"text", "labels": [names]}
_INT = re.compile(r"[+-]?\d+")


@dataclass
class ClassifierConfig:
    """Settings of the encoder-classifier task (`task: classify`): data layout, labels, imbalance, thresholds."""

    # Where the labels come from: give at most one of labels, labels_file, taxonomy. With none,
    # label_columns name the labels, or the label names found in label_column are used, sorted.
    taxonomy: str | None = field(default=None, metadata={
        "help": "Labels from a taxonomy YAML (a name in data/taxonomies, e.g. jigsaw, or a path)."})
    labels: list[str] = field(default_factory=list, metadata={
        "help": "Label names in index order (integer label values index into this list)."})
    labels_file: str | None = field(default=None, metadata={
        "help": "Text file with one label name per line, in index order (GoEmotions labels.txt, DBpedia classes.txt)."})
    # Data layout.
    text_column: str = field(default="text", metadata={"help": "Column (or JSON key) holding the text."})
    label_column: str | None = field(default=None, metadata={
        "help": "Column holding each row's label(s): a name, an integer index into the labels, a label_separator-"
                "joined list of them (GoEmotions '4,27') or a JSON list. Default 'labels' (moderation records) "
                "unless label_columns is given."})
    label_columns: list[str] = field(default_factory=list, metadata={
        "help": "One 0/1 column per label, named after it (Jigsaw: toxic ... identity_hate); -1 (unscored) and "
                "other values are bad rows."})
    column_names: list[str] = field(default_factory=list, metadata={
        "help": "Column names, in order, of header-less CSV/TSV files (GoEmotions TSV: text labels id). "
                "Empty: the first line is the header."})
    label_separator: str = field(default=",", metadata={
        "help": "Separator of several labels in one label_column cell; '' never splits."})
    label_index_start: int = field(default=0, metadata={"range": (0, None),
        "help": "Integer label value of the first label: 0 (GoEmotions ids) or 1 (DBpedia's 1-14)."})
    split_column: str | None = field(default=None, metadata={
        "help": "Column naming each row's split (IMDB's 'split'): data files give their train_split_value rows, "
                "eval_data files (and the evaluate stage) their eval_split_value rows."})
    train_split_value: str = field(default="train", metadata={"help": "split_column value of the training rows."})
    eval_split_value: str = field(default="test", metadata={"help": "split_column value of the evaluation rows."})
    problem_type: str = field(default="auto", metadata={
        "help": "single_label (softmax + CE, one class per text), multi_label (sigmoids + BCE, any number), or "
                "auto: multi_label for label_columns or when any training row holds a list of labels."})
    # Imbalance.
    class_weighting: str = field(default="none", metadata={
        "help": "none, or balanced: single_label weights each class n/(k*count) in the CE loss; multi_label "
                "weights each label's positives by negatives/positives (BCE pos_weight). Rare classes get "
                "recall at some precision."})
    max_class_weight: float | None = field(default=None, metadata={"range": (1, None),
        "help": "Clip class weights at this value (unclipped, Jigsaw's threat label gets about 200)."})
    balanced_sampling: bool = field(default=False, metadata={
        "help": "Draw training rows with replacement so each class (multi_label: each row's rarest label; "
                "label-less rows form one group) comes up about equally often. An epoch keeps its length."})
    # Splits and subsets (seeded by data_seed or seed; stratified by class, or a row's rarest label).
    test_split: float = field(default=0.0, metadata={"range": (0, 1), "range_open": "high",
        "help": "Hold out this fraction of the data rows as a test set: never trained on, never used for thresholds "
                "or early stopping. Its rows are listed in data_splits.json; `evaluate/score.py --model <run> "
                "--split test` scores them. With eval_split, both are fractions of all rows (0.1 + 0.2: 70/10/20)."})
    extra_train_data: list[str] = field(default_factory=list, metadata={
        "help": "More training rows, read with the data files' layout (their train_split_value rows under "
                "split_column), added after the splits: never in eval or test. A row whose text is also an eval or "
                "test row's (compared on its lower-cased ASCII letters and digits alone, so copies differing in "
                "spacing, punctuation or stripped accents meet) is left out and listed in skipped_records; a test "
                "file scored later (not a test_split) is not known here. train_subset draws from the training rows "
                "with these added."})
    train_subset: int | None = field(default=None, metadata={"range": (1, None),
        "help": "Train on a stratified random N of the training rows (after the splits), for a CPU budget; the "
                "rest are unused (listed as such in data_splits.json)."})
    truncation: str = field(default="head", metadata={
        "help": "Texts longer than max_length: head keeps the start; head_tail keeps the first quarter and the last "
                "three quarters of the tokens (long reviews state their verdict at the end). Saved with the model."})
    head_bias_init: str = field(default="prior", metadata={
        "help": "prior: the new head's biases start at the training rows' label log-odds (multi_label) or log "
                "class frequencies (single_label), so the first steps learn from the text instead of spending "
                "themselves on the label rates (with many rare labels, as GoEmotions' 28, a zero start can "
                "leave the encoder predicting the rates alone for epochs); zero: the library's start. Under "
                "class_weighting and balanced_sampling, the rates as the loss weighs and draws them (fully "
                "balanced: even odds)."})
    pooling: str = field(default="model", metadata={
        "help": "model: the model's own sequence-classification head (BERT: its pooler over [CLS]; DistilBERT: the "
                "first token; decoders: the last). mean: one linear layer over the encoder's outputs averaged over "
                "the attention mask, as sentence-embedding models (all-MiniLM-L6-v2) were trained to be read; their "
                "[CLS] output was not. Saved with the model (tunelab's loader reads it; plain "
                "AutoModelForSequenceClassification does not)."})
    # Thresholds.
    tune_thresholds: bool = field(default=True, metadata={
        "help": "multi_label with an eval set: after training, pick each label's threshold maximising its F1 on "
                "the eval set and save it (the evaluate stage applies it; 0.5 otherwise)."})

    def __post_init__(self):
        for name, value, allowed in (("problem_type", self.problem_type, PROBLEM_TYPES),
                                     ("class_weighting", self.class_weighting, CLASS_WEIGHTINGS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.label_column and self.label_columns:
            raise ValueError("give label_column (one column of label names/indices) or label_columns "
                             "(one 0/1 column per label), not both")
        sources = [n for n in ("labels", "labels_file", "taxonomy") if getattr(self, n)]
        if len(sources) > 1:
            raise ValueError(f"give one source of label names, not {' and '.join(sources)}")
        if sources and self.label_columns:
            raise ValueError(f"label_columns name the labels; drop {sources[0]}")
        for name in ("labels", "label_columns", "column_names"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} holds a name twice: {values}")
        if not 0.0 <= self.test_split < 1.0:
            raise ValueError(f"test_split must be in [0, 1), got {self.test_split}")
        if self.train_subset is not None and self.train_subset < 1:
            raise ValueError(f"train_subset must be at least 1, got {self.train_subset}")
        if self.head_bias_init not in HEAD_BIAS_INITS:
            raise ValueError(f"head_bias_init must be one of {', '.join(HEAD_BIAS_INITS)}, got {self.head_bias_init!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}")
        if self.max_class_weight is not None and self.max_class_weight <= 0:
            raise ValueError(f"max_class_weight must be positive, got {self.max_class_weight}")

    @property
    def layout(self) -> dict:
        """The settings that say how to read a data file (saved with the model for the evaluate stage)."""
        keys = ("text_column", "label_column", "label_columns", "column_names", "label_separator",
                "label_index_start", "split_column", "train_split_value", "eval_split_value")
        return {k: v for k, v in asdict(self).items() if k in keys}


# ---- data --------------------------------------------------------------------------------------

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
        from ..splits import stratum_keys

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
    from ..paths import resolve_input

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
    from ..records import read_table_rows

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
        if layout.label_columns:
            flags = [_flag(v, c) for v, c in zip(r.label, layout.label_columns)]
            problem = next((f for f in flags if isinstance(f, str)), None)
            indices = [j for j, f in enumerate(flags) if f == 1]
        else:
            tokens, _ = _label_tokens(r.label, layout.label_separator if problem_type == "multi_label" else "")
            found = [_token_index(t, name_to_index, layout.label_index_start, len(labels)) for t in tokens]
            problem = next((f for f in found if isinstance(f, str)), None)
            indices = list(dict.fromkeys(f for f in found if not isinstance(f, str)))
        if problem is None and problem_type == "single_label" and len(indices) != 1:
            problem = ("no label" if not indices else
                       f"{len(indices)} labels {[labels[j] for j in indices]} in a single_label problem")
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


JOIN_ID_COLUMN = "id"


def is_dataset_ref(path) -> bool:
    from .data import is_dataset_ref as is_ref

    return is_ref(path)


def _dataset_rows(ref, required: list[str]):
    """(row number, row) of a hub dataset or dataset folder (`datasets.load_dataset`, split after a colon)."""
    from .data import iter_data_objects

    for row, obj in iter_data_objects(ref):
        absent = [c for c in required if c not in obj]
        if absent:
            raise RecordError(ref, None, f"missing column(s) {absent}; the dataset has {sorted(obj)}")
        yield row, obj


def joined_parts(path) -> tuple[Path, Path] | None:
    """(texts file, labels file) of a `texts+labels` data entry (Kaggle's test.csv+test_labels.csv), else None."""
    from ..records import split_joined_path

    parts = split_joined_path(path)
    if parts and not all(p.exists() for p in parts):
        missing = [str(p) for p in parts if not p.exists()]
        raise ConfigError(f"{path}: a texts+labels entry needs both files; missing {', '.join(missing)}")
    return parts


def data_file_hash(path) -> str:
    """SHA-256 of a data file, or of both files of a texts+labels entry."""
    from ..runs import sha256_file

    parts = joined_parts(path)
    if parts:
        return "+".join(sha256_file(p) for p in parts)
    if Path(path).is_file():
        return sha256_file(path)
    return "dataset reference (not hashed)"  # a hub id or dataset folder: its revision is the hub's


def _joined_rows(text_path: Path, labels_path: Path, layout: ClassifierConfig, required: list[str], skip):
    """(text file line, row) of `text_path` joined by id with the label columns of `labels_path`; rows
    that do not pair up are bad rows, named by the joined entry and the line."""
    from ..records import read_joined_rows

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
        from ..paths import resolve_input

        return _read_label_names(Path(layout.labels_file)), resolve_input(layout.labels_file)
    if layout.taxonomy:
        from ..taxonomy import load_taxonomy

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


# ---- imbalance -----------------------------------------------------------------------------------

def class_weights(data: LabeledTexts, cap: float | None = None) -> np.ndarray:
    """Balanced loss weights from the training targets.

    single_label: n / (k * count_c) per class (sklearn's "balanced"), the `weight` of cross-entropy.
    multi_label: negatives / positives per label, the `pos_weight` of BCE. A class with no training
    example gets 1. `cap` clips the largest weights.
    """
    k = len(data.labels)
    if data.problem_type == "single_label":
        counts = np.bincount(data.y(), minlength=k).astype(np.float64)
        w = np.where(counts > 0, len(data) / (k * np.maximum(counts, 1)), 1.0)
    else:
        pos = data.y().sum(axis=0).astype(np.float64)
        w = np.where(pos > 0, (len(data) - pos) / np.maximum(pos, 1), 1.0)
    return np.minimum(w, cap) if cap is not None else w


def sample_weights(data: LabeledTexts) -> np.ndarray:
    """Per-row draw weights under which every class comes up about equally often.

    single_label: 1 / count of the row's class. multi_label: 1 / count of the row's rarest label;
    rows without a label form one more group. (Rows with several labels make it approximate.)
    """
    k = len(data.labels)
    if data.problem_type == "single_label":
        y = data.y()
        return 1.0 / np.bincount(y, minlength=k)[y]
    counts = data.y().sum(axis=0)
    none = sum(1 for t in data.targets if not t)
    return np.array([1.0 / min(counts[j] for j in t) if t else 1.0 / none for t in data.targets])


def classification_loss(logits, labels, problem_type: str, weights=None, label_smoothing: float = 0.0):
    """Cross-entropy over classes (single_label, `weights` per class) or BCE per label (multi_label,
    `weights` = pos_weight per label). Means over the batch (weighted CE: over the targets' weights)."""
    import torch.nn.functional as F

    if problem_type == "single_label":
        return F.cross_entropy(logits.float(), labels.long(), weight=weights, label_smoothing=label_smoothing)
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weights)


def _trainer_class():
    from transformers import Trainer

    class ClassifierTrainer(Trainer):
        """The stock Trainer with its loss replaced by `classification_loss` (class weights) and, when
        `sample_weights` is given, its train sampler by a seeded `WeightedRandomSampler`."""

        loss_is_scaled_for_ga = False  # the loss is a per-batch mean: let the Trainer divide for accumulation

        def __init__(self, *args, problem_type: str, loss_weights=None, sample_weights=None, sampler_seed: int = 0,
                     **kwargs):
            super().__init__(*args, **kwargs)
            import torch

            self.problem_type = problem_type
            self.loss_weights = None if loss_weights is None else torch.tensor(loss_weights, dtype=torch.float32)
            self.sample_weights = sample_weights
            self.sampler_seed = sampler_seed

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
            weights = None if self.loss_weights is None else self.loss_weights.to(logits.device)
            loss = classification_loss(logits, labels, self.problem_type, weights, self.args.label_smoothing_factor)
            return (loss, outputs) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            if self.sample_weights is None:
                return super()._get_train_sampler(train_dataset)
            import torch
            from torch.utils.data import WeightedRandomSampler

            generator = torch.Generator().manual_seed(self.sampler_seed)
            return WeightedRandomSampler(torch.as_tensor(self.sample_weights, dtype=torch.double),
                                         num_samples=len(self.sample_weights), replacement=True, generator=generator)

    return ClassifierTrainer


# ---- model, training, metrics --------------------------------------------------------------------

def load_classifier_base(path: str, labels: tuple[str, ...], *, problem_type: str = "multi_label",
                         trust_remote_code: bool = False, with_new_modules: bool = False, pooling: str = "model"):
    """A sequence-classification model with a fresh head of len(labels) outputs: the model's own
    (`pooling` model) or a linear layer over the mean of its outputs (mean, `MeanPooledClassifier`).

    `with_new_modules`: also return the names of the modules the checkpoint did not hold (the new
    head: BERT's `classifier`, DistilBERT's `pre_classifier` and `classifier`, a missing pooler).
    """
    settings = dict(num_labels=len(labels), problem_type=HF_PROBLEM_TYPES[problem_type],
                    id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    if pooling == "mean":
        from .mean_pooling import mean_pooled_from_encoder

        model, new_modules = mean_pooled_from_encoder(path, trust_remote_code=trust_remote_code, **settings)
        return (model, new_modules) if with_new_modules else model
    from transformers import AutoModelForSequenceClassification

    model, loading = AutoModelForSequenceClassification.from_pretrained(
        path, **settings, use_safetensors=True, trust_remote_code=trust_remote_code, output_loading_info=True)
    if not with_new_modules:
        return model
    return model, sorted({key.rsplit(".", 1)[0] for key in loading["missing_keys"]})


def label_prior_logits(data: "LabeledTexts", loss_weights: np.ndarray | None = None,
                       draw_weights: np.ndarray | None = None) -> np.ndarray:
    """The head biases that minimise the training loss before any text is read, so the first steps learn
    from the text: log-odds of each label's share (multi_label, sigmoids) or log of each class's share
    (single_label, softmax). Shares are clipped to [1e-4, 1 - 1e-4], so a label absent from the rows gets
    a finite bias.

    The loss sees the rows as drawn (`draw_weights`, balanced sampling: shares are weighted means) and
    weighted (`loss_weights`: BCE's pos_weight w multiplies a label's odds; CE's class weight w_c its
    share), so fully balanced weights give a head that starts at even odds, as from zero.
    """
    y = data.y()
    draws = np.ones(len(y)) if draw_weights is None else np.asarray(draw_weights, dtype=np.float64)
    if data.problem_type == "multi_label":
        share = np.clip(draws @ y / draws.sum(), 1e-4, 1 - 1e-4)
        odds = share / (1 - share) * (1.0 if loss_weights is None else loss_weights)
        return np.log(odds)
    share = np.bincount(y, weights=draws, minlength=len(data.labels)) / draws.sum()
    share = np.clip(share, 1e-4, 1.0) * (1.0 if loss_weights is None else loss_weights)
    return np.log(share)


def set_head_bias(model, bias: np.ndarray) -> str | None:
    """Write `bias` into the classification head (the last linear layer with one output per label and a
    bias: BERT's and DistilBERT's `classifier`, RoBERTa's `classifier.out_proj`). Returns the layer's
    name, or None where the head has no bias (a decoder's `score`)."""
    import torch

    heads = [(name, m) for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and m.out_features == len(bias) and m.bias is not None]
    if not heads:
        return None
    name, head = heads[-1]
    with torch.no_grad():
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return name


def classifier_model(base: str, labels: tuple[str, ...], problem_type: str, mcfg, *, trust_remote_code: bool = False,
                     head_bias: np.ndarray | None = None, pooling: str = "model") -> tuple[object, bool]:
    """The model to train: the encoder with a new head, wrapped in LoRA when `mcfg.use_lora`, and
    whether the head's biases were set to `head_bias` (not where none is given or the head has none).

    Under LoRA every newly initialised module is trained in full (`modules_to_save`): PEFT adds
    `classifier`/`score` (and by suffix DistilBERT's `pre_classifier`) by itself, but the pooler that
    BERT-style models get when the checkpoint has none (sentence-transformers exports) would
    otherwise stay a frozen random projection.
    """
    from ..models import model_type
    from .lora import lora_from_settings

    model, new_modules = load_classifier_base(base, labels, problem_type=problem_type, pooling=pooling,
                                              trust_remote_code=trust_remote_code, with_new_modules=True)
    # before LoRA, so the trained copy of the head (modules_to_save) starts there too
    bias_set = head_bias is not None and set_head_bias(model, head_bias) is not None
    if head_bias is not None and not bias_set:
        print(f"finetune: the head of {type(model).__name__} has no bias; it starts as the library builds it")
    if not mcfg.use_lora:
        return model, bias_set
    from peft import get_peft_model

    config = lora_from_settings(mcfg, model_type(base), "classify", "SEQ_CLS")
    config.modules_to_save = sorted(set(config.modules_to_save or []) | set(new_modules)) or None
    return get_peft_model(model, config), bias_set


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


def _dataset(data: LabeledTexts, tokenizer, max_length: int, truncation: str = "head"):
    from datasets import Dataset

    y = data.y()
    ds = Dataset.from_dict({"text": data.texts, "labels": y.tolist()})
    return ds.map(lambda batch: dict(encode_texts(tokenizer, batch["text"], max_length, truncation)),
                  batched=True, remove_columns=["text"])


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def compute_metrics_fn(labels: tuple[str, ...], problem_type: str = "multi_label"):
    """`compute_metrics` for the Trainer: accuracy and macro-F1 (single_label); micro/macro-F1 at 0.5
    and mean ROC-AUC (multi_label; NaN when no label has both classes in the eval set)."""

    def compute(eval_pred):
        from ..metrics.classification import multilabel_metrics, singlelabel_metrics

        logits, y_true = eval_pred
        if problem_type == "single_label":
            m = singlelabel_metrics(y_true, _softmax(logits), labels)
            return {"accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"]}
        m = multilabel_metrics(y_true.astype(int), _sigmoid(logits), labels)
        return {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"],
                "mean_roc_auc": m["mean_roc_auc"] if m["mean_roc_auc"] is not None else float("nan")}

    return compute


def build_classifier_trainer(model, tokenizer, train: LabeledTexts, evals: LabeledTexts | None, args, max_length: int,
                             *, loss_weights=None, balanced_sampling: bool = False, callbacks=None,
                             truncation: str = "head"):
    from transformers import DataCollatorWithPadding

    seed = args.data_seed if args.data_seed is not None else args.seed
    return _trainer_class()(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=_dataset(train, tokenizer, max_length, truncation),
        eval_dataset=_dataset(evals, tokenizer, max_length, truncation) if evals else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics_fn(train.labels, train.problem_type),
        callbacks=callbacks, problem_type=train.problem_type, loss_weights=loss_weights,
        sample_weights=sample_weights(train) if balanced_sampling else None, sampler_seed=seed,
    )


def overlength_rows(texts: list[str], tokenizer, max_length: int) -> list[int]:
    """Indices of texts longer than `max_length` tokens (special tokens included)."""
    over = []
    for start in range(0, len(texts), 1024):
        ids = tokenizer(texts[start:start + 1024], truncation=True, max_length=max_length + 1)["input_ids"]
        over += [start + i for i, x in enumerate(ids) if len(x) > max_length]
    return over


def save_classifier_info(out_dir: Path, *, base: str, labels: tuple[str, ...], problem_type: str, max_length: int,
                         lora: bool, layout: dict, thresholds: dict | None = None, label_source: str | None = None,
                         truncation: str = "head", pooling: str = "model"):
    """What a classifier folder is: base, labels and problem type, thresholds, and the data layout it read."""
    (Path(out_dir) / CLASSIFIER_INFO).write_text(json.dumps(
        {"base": base, "labels": list(labels), "problem_type": problem_type, "thresholds": thresholds,
         "max_length": max_length, "truncation": truncation, "pooling": pooling, "lora": lora,
         "label_source": label_source, "layout": layout}, indent=2),
        encoding="utf-8")


def classifier_layout(info: dict) -> ClassifierConfig:
    """The data layout a classifier was trained on, from its info file (moderation records for old folders)."""
    return ClassifierConfig(**info.get("layout", {}))


def load_classifier(model_dir: str | Path):
    """A trained classifier folder (adapter or full model) -> (model, tokenizer, info)."""
    from transformers import AutoTokenizer

    model_dir = Path(model_dir)
    info_path = model_dir / CLASSIFIER_INFO
    if not info_path.exists():
        raise ConfigError(f"{model_dir} is not a tunelab classifier folder (no {CLASSIFIER_INFO})")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info.setdefault("problem_type", "multi_label")  # folders from before single_label existed
    labels = tuple(info["labels"])
    pooling = info.get("pooling", "model")  # folders from before pooling existed used the model's head
    if info["lora"]:
        from peft import PeftModel

        from ..models import require_safetensors_adapter, resolve_model

        require_safetensors_adapter(model_dir)
        model = PeftModel.from_pretrained(load_classifier_base(resolve_model(info["base"]), labels, pooling=pooling,
                                                               problem_type=info["problem_type"]), model_dir)
    elif pooling == "mean":
        from .mean_pooling import load_mean_pooled

        model = load_mean_pooled(model_dir)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model.eval()
    return model, tokenizer, info


def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 32,
                  problem_type: str | None = None, truncation: str = "head", dtype: str = "float32") -> np.ndarray:
    """Class probabilities, one row per text, in input order (batches sorted by length): softmax for a
    single_label model, one sigmoid per label for multi_label. `problem_type` defaults to the model's.
    `dtype` bfloat16 runs the encoder under autocast (about 2x faster on CPUs with native bf16)."""
    import contextlib

    import torch
    from tqdm.auto import tqdm

    if problem_type is None:
        problem_type = ("single_label" if getattr(model.config, "problem_type", None) == "single_label_classification"
                        else "multi_label")
    encoded = encode_texts(tokenizer, texts, max_length, truncation)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
    probs = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    device = next(model.parameters()).device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bfloat16"
                else contextlib.nullcontext())
    with torch.no_grad(), autocast:
        for start in tqdm(range(0, len(order), batch_size), desc="classify", unit="batch"):
            idx = order[start:start + batch_size]
            enc = tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(device)
            logits = model(**enc).logits.float()
            p = torch.softmax(logits, dim=-1) if problem_type == "single_label" else torch.sigmoid(logits)
            probs[idx] = p.cpu().numpy()
    return probs


def held_out_key(text: str) -> str:
    """A text as compared with held-out rows: lower-cased ASCII letters and digits alone (one copy of
    DBpedia keeps "Łososina ( 3 mi )", another "ososina (3 mi)"); a text with none of them (another
    script) by its normalised words, so such texts do not all meet as one empty key."""
    from ..generation.dedup import normalize

    return re.sub(r"[^a-z0-9]", "", text.lower()) or normalize(text)


def drop_held_out_copies(rows: LabeledTexts,
                         held_out: dict[str, LabeledTexts | None]) -> tuple[LabeledTexts, list[dict]]:
    """rows without those whose text is a held-out row's (held_out_key), and a skipped-record entry for each."""
    seen = {}
    for split, part in held_out.items():
        if part is not None:
            for text, rid in zip(part.texts, part.ids):
                seen.setdefault(held_out_key(text), (split, rid))
    keep, copies = [], []
    for i, text in enumerate(rows.texts):
        match = seen.get(held_out_key(text))
        if match is None:
            keep.append(i)
        else:
            path, _ = rows.origins[i] if rows.origins else (None, None)
            copies.append({"file": path, "line": rows.lines[i] if rows.lines else None, "id": rows.ids[i],
                           "reason": f"extra_train_data row repeats {match[0]} row {match[1]}"})
    return rows.subset(keep), copies


def write_data_splits(out: Path, seed: int, splits: dict[str, LabeledTexts | None], files: dict[str, list]) -> None:
    """data_splits.json: which rows of which files each split holds (each row's position among the rows its
    file yields), the files' hashes and a digest of each split's texts and labels, so the evaluate stage can
    score exactly the held-out rows (`--split test`) and fit baselines on exactly the training rows."""
    hashes = {str(p): data_file_hash(p) for group in files.values() for p in group}
    entry = {}
    for name, rows in splits.items():
        if rows is None:
            continue
        by_file: dict[str, list[int]] = {}
        for path, position in rows.origins:
            by_file.setdefault(path, []).append(position)
        entry[name] = {"rows": len(rows), "positions": by_file, "digest": rows_digest(rows)}
    (Path(out) / DATA_SPLITS).write_text(json.dumps(
        {"seed": seed, "stratified_by": "class (single_label) or a row's rarest label (multi_label)",
         "files": hashes, "splits": entry}), encoding="utf-8")


def rows_digest(rows: LabeledTexts) -> str:
    """SHA-256 of a split's texts and labels, in order: catches any change of the rows, hub datasets included."""
    import hashlib

    h = hashlib.sha256()
    for text, target in zip(rows.texts, rows.targets):
        h.update(json.dumps([text, sorted(target)]).encode("utf-8"))
    return h.hexdigest()


def load_split_rows(model_dir: Path, split: str, layout: ClassifierConfig, labels: tuple[str, ...],
                    problem_type: str) -> tuple[LabeledTexts, list[Path]]:
    """The rows of one split of a classifier run (train, eval, test, unused) as it trained, and their files.

    The files are read again with the run's layout and checked against the hashes recorded at training
    time: a changed file would silently give other rows.
    """
    from ..paths import resolve_input

    path = Path(model_dir) / DATA_SPLITS
    if not path.exists():
        raise ConfigError(f"{model_dir} has no {DATA_SPLITS} (trained before splits were recorded); give --data")
    info = json.loads(path.read_text(encoding="utf-8"))
    if split not in info["splits"]:
        raise ConfigError(f"{model_dir} has no {split!r} split; it has {sorted(info['splits'])} "
                          "(a test split needs test_split at training)")
    entry = info["splits"][split]
    by_line = "lines" in entry  # folders written before positions were recorded
    wanted = entry["lines"] if by_line else entry["positions"]
    files = [resolve_input(p) for p in wanted]
    for p in files:
        if not p.exists() and not joined_parts(p) and not is_dataset_ref(p):
            raise ConfigError(f"{p}, a file {model_dir} trained from, is missing")
        if data_file_hash(p) != info["files"][str(p)]:
            raise ConfigError(f"{p} changed since {model_dir} was trained (its hash differs): the {split} rows "
                              "cannot be recovered")
    # Rows are picked by position, so a split column needs no filtering (IMDB's train and test share a file).
    rows = load_labeled_texts(files, layout, labels=labels, problem_type=problem_type)
    if by_line:
        rows.origins = [(path, line) for (path, _), line in zip(rows.origins, rows.lines)]
    names = {str(f): key for f, key in zip(files, wanted)}  # as resolved here -> as recorded
    keep = {(p, i) for p, indices in wanted.items() for i in indices}
    chosen = rows.subset(i for i, (path, at) in enumerate(rows.origins) if (names.get(path, path), at) in keep)
    if len(chosen) != entry["rows"] or ("digest" in entry and rows_digest(chosen) != entry["digest"]):
        raise ConfigError(f"{model_dir}: the {split} rows read again ({len(chosen)}) are not the {entry['rows']} "
                          f"recorded at training (the data changed since, e.g. a hub dataset's new revision)")
    return chosen, files


def _effective_max_length(args, tokenizer) -> int:
    """max_length, clipped to what the model's position embeddings allow (MiniLM, BERT: 512)."""
    limit = getattr(tokenizer, "model_max_length", None)
    wanted = args.max_length or limit
    if limit and limit < 100_000 and wanted > limit:  # huge values are the tokenizer's "unknown"
        print(f"finetune: max_length {wanted} exceeds the model's {limit} positions; using {limit}")
        return limit
    return wanted


def finetune_classifier(ctx) -> dict:
    """Tune an encoder classifier; full fine-tuning or LoRA. Returns the run summary."""
    from ..metrics.classification import multilabel_metrics, tune_thresholds
    from ..models import load_tokenizer, resolve_model
    from ..paths import resolve_input
    from .runner import early_stopping_callbacks, is_main_process, train_and_save

    mcfg, dcfg, ccfg, args, record, out = ctx.model, ctx.data, ctx.classifier, ctx.train, ctx.record, ctx.out
    if ccfg.balanced_sampling and args.train_sampling_strategy != "random":
        # both choose the training rows' order; the weighted draw would silently replace the other
        raise ConfigError(f"balanced_sampling draws the training rows itself: it cannot be combined with "
                          f"train_sampling_strategy {args.train_sampling_strategy}")
    base = resolve_model(mcfg.base)
    record.models["base"] = mcfg.base
    split = ccfg.split_column is not None

    train_paths = [resolve_input(p) for p in dcfg.data]
    for i, p in enumerate(train_paths):
        record.add_input(f"data[{i}]", p)
    train = load_labeled_texts(train_paths, ccfg, split_value=ccfg.train_split_value if split else None,
                               bad_records=dcfg.bad_records)
    if train.label_source is not None:
        record.add_input("labels", train.label_source)
    skipped, other_split_rows = list(train.skipped), train.other_split_rows
    if dcfg.max_examples is not None:  # as for students: the first N rows, before any split
        train = train.subset(range(min(dcfg.max_examples, len(train))))
    seed = args.data_seed if args.data_seed is not None else args.seed
    evals = test = None
    eval_fraction = dcfg.eval_split if not dcfg.eval_data else 0.0
    fractions = [f for f in (eval_fraction, ccfg.test_split) if f]
    if fractions:  # stratified, so rare classes land in every part
        from ..splits import stratified_split

        parts = stratified_split(train.strata(), fractions, seed)
        if not parts[0] or not all(parts[1:]):
            raise ConfigError(f"eval_split {dcfg.eval_split} / test_split {ccfg.test_split} of {len(train)} rows "
                              "leave a split empty")
        named = dict(zip(["train", *(["eval"] if eval_fraction else []), *(["test"] if ccfg.test_split else [])],
                         parts))
        whole = train
        train = whole.subset(named["train"])
        evals = whole.subset(named["eval"]) if "eval" in named else None
        test = whole.subset(named["test"]) if "test" in named else None

    def load_more(setting: str, files: list[str], split_value: str) -> LabeledTexts:
        """The rows of eval_data or extra_train_data, read with the training rows' layout and labels."""
        nonlocal other_split_rows
        paths = [resolve_input(p) for p in files]
        for i, p in enumerate(paths):
            record.add_input(f"{setting}[{i}]", p)
        rows = load_labeled_texts(paths, ccfg, labels=train.labels, problem_type=train.problem_type,
                                  split_value=split_value if split else None, bad_records=dcfg.bad_records)
        skipped.extend(rows.skipped)
        other_split_rows += rows.other_split_rows
        return rows

    if dcfg.eval_data:
        evals = load_more("eval_data", dcfg.eval_data, ccfg.eval_split_value)
    extra_paths = [resolve_input(p) for p in ccfg.extra_train_data]
    extra_rows = held_out_copies = 0
    if extra_paths:
        extra, copies = drop_held_out_copies(load_more("extra_train_data", ccfg.extra_train_data,
                                                       ccfg.train_split_value),
                                             {"eval": evals, "test": test})
        skipped += copies
        extra_rows, held_out_copies = len(extra), len(copies)
        if copies:
            print(f"finetune: {len(copies)} extra_train_data row(s) repeat an eval or test row; left out")
        train = train.concat(extra)
    unused = None
    if ccfg.train_subset is not None and ccfg.train_subset < len(train):
        from ..splits import stratified_split

        rest, kept = stratified_split(train.strata(), [ccfg.train_subset / len(train)], seed)
        unused, train = train.subset(rest), train.subset(kept)

    tokenizer = load_tokenizer(base, trust_remote_code=args.trust_remote_code)
    max_length = _effective_max_length(args, tokenizer)
    over = overlength_rows(train.texts, tokenizer, max_length)
    if dcfg.overlength == "drop" and over:
        for i in over:
            skipped.append({"file": None, "line": None, "id": train.ids[i],
                            "reason": f"longer than max_length {max_length} tokens (overlength: drop)"})
        dropped = set(over)
        train = train.subset(i for i in range(len(train)) if i not in dropped)
        if not len(train):
            raise ConfigError(f"every training row is longer than max_length ({max_length}) and overlength is drop")
    y = train.y()
    counts = y.sum(axis=0) if train.problem_type == "multi_label" else np.bincount(y, minlength=len(train.labels))
    absent = [label for label, n in zip(train.labels, counts) if n == 0]
    if absent:
        print(f"finetune: no training row has {absent[:10]}{' ...' if len(absent) > 10 else ''} "
              "(a sorted file cut by max_examples?); the model cannot learn them")
    if evals is not None and args.eval_strategy == "no":
        print("finetune: the eval set is scored once after training; set eval_strategy (steps or epoch) "
              "for metrics during training")

    weights = class_weights(train, ccfg.max_class_weight) if ccfg.class_weighting == "balanced" else None
    draws = sample_weights(train) if ccfg.balanced_sampling else None
    prior = label_prior_logits(train, weights, draws) if ccfg.head_bias_init == "prior" else None
    model, prior_bias = classifier_model(base, train.labels, train.problem_type, mcfg, pooling=ccfg.pooling,
                                         trust_remote_code=args.trust_remote_code, head_bias=prior)
    ctx.write_skipped(skipped)  # once data and model have loaded (the folder appears here)
    trainer = build_classifier_trainer(model, tokenizer, train, evals, args, max_length, loss_weights=weights,
                                       balanced_sampling=ccfg.balanced_sampling,
                                       callbacks=early_stopping_callbacks(args) + ctx.callbacks,
                                       truncation=ccfg.truncation)
    if is_main_process():
        write_data_splits(out, seed, {"train": train, "eval": evals, "test": test, "unused": unused},
                          {"data": train_paths, "eval_data": [resolve_input(p) for p in dcfg.eval_data],
                           "extra_train_data": extra_paths})
        record.add_output("data_splits", out / DATA_SPLITS)
    summary = {"examples": len(train), "eval_examples": len(evals) if evals else 0,
               "test_examples": len(test) if test else 0, "unused_examples": len(unused) if unused else 0,
               "extra_train_examples": extra_rows, "extra_train_held_out_copies": held_out_copies,
               "truncation": ccfg.truncation,
               "labels": len(train.labels), "problem_type": train.problem_type,
               "skipped_records": sum(s["file"] is not None for s in skipped),
               "rows_in_other_splits": other_split_rows,
               "overlength": len(over), "overlength_action": dcfg.overlength, "max_length": max_length,
               "class_weights": dict(zip(train.labels, map(float, weights))) if weights is not None else None,
               "balanced_sampling": ccfg.balanced_sampling, "head_bias_init": "prior" if prior_bias else "zero",
               "pooling": ccfg.pooling}
    summary.update(train_and_save(trainer, ctx))

    thresholds = None
    if evals:
        # every process predicts (the Trainer gathers); only the main one writes
        pred = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
        summary["eval"] = {k: v for k, v in pred.metrics.items() if k.startswith("eval_")}
        if train.problem_type == "multi_label" and ccfg.tune_thresholds:
            y, probs = evals.y(), _sigmoid(pred.predictions)
            tuned = tune_thresholds(y, probs)
            thresholds = dict(zip(train.labels, map(float, tuned)))
            m = multilabel_metrics(y, probs, train.labels, tuned)
            summary["eval_tuned_thresholds"] = {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"],
                                                "note": "thresholds tuned on this same eval set: optimistic"}
    if not is_main_process():
        return summary
    save_classifier_info(out, base=mcfg.base, labels=train.labels, problem_type=train.problem_type,
                         max_length=max_length, lora=mcfg.use_lora, layout=ccfg.layout, thresholds=thresholds,
                         label_source=str(train.label_source) if train.label_source else None,
                         truncation=ccfg.truncation, pooling=ccfg.pooling)
    record.add_output("classifier_info", out / CLASSIFIER_INFO)
    return summary
