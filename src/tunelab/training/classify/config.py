"""Settings of the classify task (`task: classify`): how to read the data, the labels, imbalance, splits,
truncation, the head and thresholds. The trainer's own settings (epochs, rates, batch sizes) are the
finetune stage's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PROBLEM_TYPES = ("auto", "single_label", "multi_label")
CLASS_WEIGHTINGS = ("none", "balanced")
TRUNCATIONS = ("head", "head_tail")
HEAD_BIAS_INITS = ("prior", "zero")
POOLINGS = ("model", "mean")


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
