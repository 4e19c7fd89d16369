"""The classify recipe: tune an encoder (or a decoder's classification head) with full fine-tuning or LoRA.

Data in every layout `data.py` reads, cut into train / eval / test (`held_out.py`); a new head whose
biases start at the label rates; the class-weighted `ClassifierTrainer`; after training, per-label
thresholds tuned on the eval set; the folder described by `ClassifierInfo` for evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...console import get_logger
from ...errors import ConfigError
from ...metrics.classification import multilabel_metrics, tune_thresholds
from ...models import load_tokenizer
from ..runner import FinetuneRecipe, early_stopping_callbacks
from .data import LabeledTexts, load_labeled_texts, overlength_rows
from .held_out import DATA_SPLITS, drop_held_out_copies, split_rows, subset_rows, write_data_splits
from .imbalance import class_weights, label_prior_logits, sample_weights
from .modeling import classifier_model, match_pad_token
from .predict import CLASSIFIER_INFO, ClassifierInfo
from .trainer import build_classifier_trainer, sigmoid

_log = get_logger("finetune")


@dataclass
class ClassifierRows:
    """The rows of one run, split, and every row left out."""

    train: LabeledTexts
    evals: LabeledTexts | None = None
    test: LabeledTexts | None = None
    unused: LabeledTexts | None = None  # left over by train_subset
    skipped: list[dict] = field(default_factory=list)
    other_split_rows: int = 0
    files: dict[str, list[Path]] = field(default_factory=dict)  # data, eval_data, extra_train_data
    extra_rows: int = 0
    held_out_copies: int = 0


class ClassifyRecipe(FinetuneRecipe):
    """Tune a classifier as the run's settings say."""

    def setup_data(self) -> None:
        ccfg, args = self.ctx.classifier, self.ctx.train
        if ccfg.balanced_sampling and args.train_sampling_strategy != "random":
            # both choose the training rows' order; the weighted draw would silently replace the other
            raise ConfigError(f"balanced_sampling draws the training rows itself: it cannot be combined with "
                              f"train_sampling_strategy {args.train_sampling_strategy}")
        self.rows = load_rows(self, self.seed)
        self.tokenizer = load_tokenizer(self.base, trust_remote_code=args.trust_remote_code)
        self.max_length = _effective_max_length(args, self.tokenizer)
        self.over = _drop_overlength(self.rows, self.tokenizer, self.max_length, self.ctx.data.overlength)
        self.skipped = self.rows.skipped
        _warn_absent_labels(self.rows.train)
        if self.rows.evals is not None and args.eval_strategy == "no":
            _log.info("the eval set is scored once after training; set eval_strategy (steps or epoch) "
                      "for metrics during training")

    def setup_trainer(self):
        mcfg, ccfg, args, rows = self.ctx.model, self.ctx.classifier, self.ctx.train, self.rows
        train = rows.train
        self.weights = class_weights(train, ccfg.max_class_weight) if ccfg.class_weighting == "balanced" else None
        draws = sample_weights(train) if ccfg.balanced_sampling else None
        prior = label_prior_logits(train, self.weights, draws) if ccfg.head_bias_init == "prior" else None
        model, self.prior_bias = classifier_model(self.base, train.labels, train.problem_type, mcfg,
                                                  pooling=ccfg.pooling, trust_remote_code=args.trust_remote_code,
                                                  head_bias=prior)
        match_pad_token(model, self.tokenizer)
        return build_classifier_trainer(model, self.tokenizer, train, rows.evals, args, self.max_length,
                                        loss_weights=self.weights, balanced_sampling=ccfg.balanced_sampling,
                                        callbacks=early_stopping_callbacks(args) + self.ctx.callbacks,
                                        truncation=ccfg.truncation)

    def write_data_record(self) -> None:
        rows = self.rows
        write_data_splits(self.ctx.out, self.seed, {"train": rows.train, "eval": rows.evals, "test": rows.test,
                                                    "unused": rows.unused}, rows.files)
        self.ctx.record.add_output("data_splits", self.ctx.out / DATA_SPLITS)

    def data_summary(self, trainer) -> dict:
        ccfg, rows, train = self.ctx.classifier, self.rows, self.rows.train
        return {"examples": len(train), "eval_examples": len(rows.evals) if rows.evals else 0,
                "test_examples": len(rows.test) if rows.test else 0,
                "unused_examples": len(rows.unused) if rows.unused else 0,
                "extra_train_examples": rows.extra_rows, "extra_train_held_out_copies": rows.held_out_copies,
                "truncation": ccfg.truncation,
                "labels": len(train.labels), "problem_type": train.problem_type,
                "skipped_records": sum(s["file"] is not None for s in rows.skipped),
                "rows_in_other_splits": rows.other_split_rows,
                "overlength": len(self.over), "overlength_action": self.ctx.data.overlength,
                "max_length": self.max_length,
                "class_weights": (dict(zip(train.labels, map(float, self.weights))) if self.weights is not None
                                  else None),
                "balanced_sampling": ccfg.balanced_sampling, "head_bias_init": "prior" if self.prior_bias else "zero",
                "pooling": ccfg.pooling}

    def after_training(self, trainer, summary: dict) -> None:
        self.thresholds = _score_eval_set(trainer, self.rows, self.ctx.classifier.tune_thresholds, summary)

    def save(self) -> None:
        mcfg, ccfg, train = self.ctx.model, self.ctx.classifier, self.rows.train
        ClassifierInfo(base=mcfg.base, labels=train.labels, problem_type=train.problem_type,
                       thresholds=self.thresholds, max_length=self.max_length, truncation=ccfg.truncation,
                       pooling=ccfg.pooling, lora=mcfg.use_lora,
                       label_source=str(train.label_source) if train.label_source else None,
                       layout=ccfg.layout).write(self.ctx.out)
        self.ctx.record.add_output("classifier_info", self.ctx.out / CLASSIFIER_INFO)


def load_rows(recipe: FinetuneRecipe, seed: int) -> ClassifierRows:
    """The training rows (max_examples first, then the eval and test splits), eval_data, extra_train_data
    without copies of held-out rows, and the train_subset; each file recorded as an input."""
    dcfg, ccfg, record = recipe.ctx.data, recipe.ctx.classifier, recipe.ctx.record
    split = ccfg.split_column is not None
    rows = ClassifierRows(train=None)

    def load(setting: str, files: list[str], split_value: str, **known) -> LabeledTexts:
        paths = rows.files[setting] = recipe.input_paths(setting, files)
        part = load_labeled_texts(paths, ccfg, split_value=split_value if split else None,
                                  bad_records=dcfg.bad_records, **known)
        rows.skipped += part.skipped
        rows.other_split_rows += part.other_split_rows
        return part

    train = load("data", dcfg.data, ccfg.train_split_value)
    if train.label_source is not None:
        record.add_input("labels", train.label_source)
    if dcfg.max_examples is not None:  # as for students: the first N rows, before any split
        train = train.subset(range(min(dcfg.max_examples, len(train))))
    known = {"labels": train.labels, "problem_type": train.problem_type}  # eval and extra rows are read as these
    rows.train, rows.evals, rows.test = split_rows(train, dcfg.eval_split if not dcfg.eval_data else 0.0,
                                                   ccfg.test_split, seed)
    rows.files.setdefault("eval_data", [])
    if dcfg.eval_data:
        rows.evals = load("eval_data", dcfg.eval_data, ccfg.eval_split_value, **known)
    rows.files.setdefault("extra_train_data", [])
    if ccfg.extra_train_data:
        extra, copies = drop_held_out_copies(load("extra_train_data", ccfg.extra_train_data, ccfg.train_split_value,
                                                  **known), {"eval": rows.evals, "test": rows.test})
        rows.skipped += copies
        rows.extra_rows, rows.held_out_copies = len(extra), len(copies)
        if copies:
            _log.info(f"{len(copies)} extra_train_data row(s) repeat an eval or test row; left out")
        rows.train = rows.train.concat(extra)
    rows.train, rows.unused = subset_rows(rows.train, ccfg.train_subset, seed)
    return rows


def _effective_max_length(args, tokenizer) -> int:
    """max_length, clipped to what the model's position embeddings allow (MiniLM, BERT: 512)."""
    limit = getattr(tokenizer, "model_max_length", None)
    wanted = args.max_length or limit
    if limit and limit < 100_000 and wanted > limit:  # huge values are the tokenizer's "unknown"
        _log.info(f"max_length {wanted} exceeds the model's {limit} positions; using {limit}")
        return limit
    return wanted


def _drop_overlength(rows: ClassifierRows, tokenizer, max_length: int, overlength: str) -> list[int]:
    """The training rows longer than max_length; under `overlength: drop` they leave the training rows."""
    over = overlength_rows(rows.train.texts, tokenizer, max_length)
    if overlength == "drop" and over:
        for i in over:
            rows.skipped.append({"file": None, "line": None, "id": rows.train.ids[i],
                                 "reason": f"longer than max_length {max_length} tokens (overlength: drop)"})
        dropped = set(over)
        rows.train = rows.train.subset(i for i in range(len(rows.train)) if i not in dropped)
        if not len(rows.train):
            raise ConfigError(f"every training row is longer than max_length ({max_length}) and overlength is drop")
    return over


def _warn_absent_labels(train: LabeledTexts) -> None:
    y = train.y()
    counts = y.sum(axis=0) if train.problem_type == "multi_label" else np.bincount(y, minlength=len(train.labels))
    absent = [label for label, n in zip(train.labels, counts) if n == 0]
    if absent:
        _log.info(f"no training row has {absent[:10]}{' ...' if len(absent) > 10 else ''} "
                  "(a sorted file cut by max_examples?); the model cannot learn them")


def _score_eval_set(trainer, rows: ClassifierRows, tune: bool, summary: dict) -> dict[str, float] | None:
    """Score the eval set into the summary; multi_label: each label's threshold tuned on it (or None)."""
    if not rows.evals:
        return None
    # every process predicts (the Trainer gathers); only the main one writes
    pred = trainer.predict(trainer.eval_dataset, metric_key_prefix="eval")
    summary["eval"] = {k: v for k, v in pred.metrics.items() if k.startswith("eval_")}
    if rows.train.problem_type != "multi_label" or not tune:
        return None
    y, probs = rows.evals.y(), sigmoid(pred.predictions)
    tuned = tune_thresholds(y, probs)
    m = multilabel_metrics(y, probs, rows.train.labels, tuned)
    summary["eval_tuned_thresholds"] = {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro"]["f1"],
                                        "note": "thresholds tuned on this same eval set: optimistic"}
    return dict(zip(rows.train.labels, map(float, tuned)))
