"""An encoder classifier's scores: its probabilities on labeled texts or on a split its run held out,
per-label metrics at its thresholds, bootstrap intervals, optionally thresholds tuned on a dev split
and a TF-IDF baseline fitted on the same training rows."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..metrics.scores import ClassifierScores
from ..paths import resolve_input
from ..records import write_jsonl
from ..runs import RunRecord
from .outputs import write_plots
from .settings import ClassifierConfig, ScoreRunConfig


@dataclass
class _Classifier:
    """A loaded classifier and how it reads and scores texts."""

    cfg: ClassifierConfig
    model_dir: Path
    model: object
    tokenizer: object
    info: object  # training.classify.predict.ClassifierInfo

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.info.labels)

    def predict(self, texts: list[str]) -> np.ndarray:
        from ..training.classify.predict import predict_proba

        return predict_proba(self.model, self.tokenizer, texts, self.info.max_length, self.cfg.batch_size,
                             problem_type=self.info.problem_type, truncation=self.info.truncation,
                             dtype=self.cfg.classifier_dtype)

    def read(self, path: Path):
        """Labeled texts in the classifier's layout. Every row counts in a score: a bad one stops the run,
        naming file and line."""
        from ..training.classify.data import load_labeled_texts

        layout = self.info.data_layout()
        return load_labeled_texts([path], layout, labels=self.labels, problem_type=self.info.problem_type,
                                  split_value=layout.eval_split_value if layout.split_column else None,
                                  bad_records="error")

    def held_out(self, split: str):
        """The rows of a split its run held out, read again from its training files; and those files."""
        from ..training.classify.held_out import load_split_rows

        return load_split_rows(self.model_dir, split, self.info.data_layout(), self.labels, self.info.problem_type)


def score_classifier(run: ScoreRunConfig, cfg: ClassifierConfig, record: RunRecord, out: Path) -> ClassifierScores:
    """The classifier of --model on --data (or --split). Writes predictions.jsonl, per_example.jsonl and the
    plots beside scores.json."""
    from ..training.classify.predict import load_classifier

    model_dir = resolve_input(cfg.model)
    model, tokenizer, info = load_classifier(model_dir)
    classifier = _Classifier(cfg, model_dir, model, tokenizer, info)
    record.models["classifier"] = str(cfg.model)
    data = _eval_rows(run, classifier, record)
    started = time.monotonic()
    probs = classifier.predict(data.texts)
    predict_seconds = round(time.monotonic() - started, 2)
    if info.problem_type == "single_label" and cfg.dev_data:
        raise ConfigError("--dev_data tunes per-label thresholds of a multi-label classifier; this one is "
                          "single_label (its prediction is the most probable class)")
    metrics, predicted, y_matrix = _metrics_at_thresholds(cfg, classifier, data, probs)
    metrics = {"source": ClassifierScores.source, "labels": list(classifier.labels), "examples": len(data),
               "split": cfg.split, "predict_seconds": predict_seconds, "dtype": cfg.classifier_dtype, **metrics}
    if cfg.split == "eval" and metrics.get("threshold_source") == "tuned at training":
        metrics["note"] = "thresholds were tuned on these eval rows at training: optimistic; score --split test"
    if data.other_split_rows:
        metrics["rows_in_other_splits"] = data.other_split_rows
    tuned_predicted = _tune_on_dev(cfg, classifier, record, metrics, y_matrix, probs) if cfg.dev_data else None
    _add_intervals(run, cfg, classifier, metrics, data, probs)
    _write_rows(classifier, record, out, data, probs, predicted, tuned_predicted)
    write_plots(run.plots, record, out, metrics, metrics, y_true=y_matrix, scores=probs, labels=classifier.labels)
    if "tuned_on_dev" in metrics:
        write_plots(run.plots, record, out, metrics, metrics["tuned_on_dev"], labels=classifier.labels,
                    prefix="tuned_on_dev_", title="thresholds tuned on dev")
    return ClassifierScores(metrics)


def _eval_rows(run: ScoreRunConfig, classifier: _Classifier, record: RunRecord):
    split = classifier.cfg.split
    if split:
        data, files = classifier.held_out(split)
        for i, path in enumerate(files):
            record.add_input(f"{split}_split[{i}]", path)
        return data
    data_path = resolve_input(run.data)
    record.add_input("data", data_path)
    return classifier.read(data_path)


def _metrics_at_thresholds(cfg: ClassifierConfig, classifier: _Classifier, data, probs: np.ndarray):
    """Metrics at the classifier's decision rule (argmax; else the given, tuned or default thresholds),
    each example's predicted labels, and the targets as a 0/1 matrix."""
    from ..metrics.classification import multilabel_metrics, singlelabel_metrics

    labels, y = classifier.labels, data.y()
    if classifier.info.problem_type == "single_label":
        predicted = [[labels[int(p.argmax())]] for p in probs]
        return singlelabel_metrics(y, probs, labels), predicted, np.eye(len(labels), dtype=int)[y]
    saved = classifier.info.thresholds
    if cfg.threshold is not None:
        threshold, source = cfg.threshold, "given"
    elif saved:
        threshold, source = np.array([saved[label] for label in labels]), "tuned at training"
    else:
        threshold, source = 0.5, "default"
    metrics = multilabel_metrics(y.astype(int), probs, labels, threshold)
    metrics["threshold_source"] = source
    cut = np.broadcast_to(threshold, probs.shape[1:])
    predicted = [[label for j, label in enumerate(labels) if p[j] >= cut[j]] for p in probs]
    return metrics, predicted, y.astype(int)


def _tune_on_dev(cfg: ClassifierConfig, classifier: _Classifier, record: RunRecord, metrics: dict,
                 y_matrix: np.ndarray, probs: np.ndarray) -> list[list[str]]:
    """Thresholds tuned on --dev_data and applied here (tuned on the rows they are scored on, they would
    flatter them); their scores go in metrics["tuned_on_dev"]. Returns each example's labels under them."""
    from ..metrics.classification import multilabel_metrics, tune_thresholds

    labels = classifier.labels
    dev_path = resolve_input(cfg.dev_data)
    record.add_input("dev_data", dev_path)
    dev = classifier.read(dev_path)
    tuned = tune_thresholds(dev.y(), classifier.predict(dev.texts))
    metrics["tuned_on_dev"] = {"dev_data": str(dev_path), "dev_examples": len(dev),
                               "thresholds": dict(zip(labels, map(float, tuned))),
                               **multilabel_metrics(y_matrix, probs, labels, tuned)}
    return [[label for j, label in enumerate(labels) if p[j] >= tuned[j]] for p in probs]


def _add_intervals(run: ScoreRunConfig, cfg: ClassifierConfig, classifier: _Classifier, metrics: dict, data,
                   probs: np.ndarray) -> None:
    """Bootstrap intervals of the headline numbers; with --tfidf_baseline, the baseline's scores, intervals
    and the classifier's paired deltas against it."""
    from ..metrics.bootstrap import Bootstrap
    from ..metrics.classification import headline_deltas, headline_intervals, headline_resamples

    problem_type, y = classifier.info.problem_type, data.y()
    boot = Bootstrap(run.bootstrap_resamples, run.bootstrap_seed)
    hard = probs.argmax(axis=1) if problem_type == "single_label" else probs >= np.asarray(metrics["threshold"])
    resampled = headline_resamples(y, hard, probs, problem_type, boot)
    metrics["intervals"] = {"bootstrap": boot.describe(), **headline_intervals(resampled, boot)}
    if cfg.tfidf_baseline:
        baseline, baseline_hard, baseline_probs = _tfidf_baseline(cfg, classifier, metrics, data)
        baseline_resampled = headline_resamples(y, baseline_hard, baseline_probs, problem_type, boot)
        baseline["intervals"] = headline_intervals(baseline_resampled, boot)
        baseline["classifier_minus_baseline"] = headline_deltas(resampled, baseline_resampled, boot)
        metrics["tfidf_baseline"] = baseline


def _tfidf_baseline(cfg: ClassifierConfig, classifier: _Classifier, metrics: dict, data) -> tuple[dict, object, object]:
    """TF-IDF + logistic regression fitted on the classifier's own training rows, scored on `data` as it was.

    Multi-label thresholds follow the classifier's: tuned on the run's eval split when the classifier's
    were tuned there, else the same fixed threshold. Returns (its scores, its hard predictions, its
    probabilities).
    """
    from ..metrics.classification import multilabel_metrics, singlelabel_metrics, tune_thresholds
    from ..training.tfidf import SETTINGS, fit_tfidf_baseline

    labels, problem_type = tuple(metrics["labels"]), metrics["problem_type"]
    train, _ = classifier.held_out("train")
    baseline = fit_tfidf_baseline(train.texts, train.y(), problem_type, len(labels))
    started = time.monotonic()
    probs = baseline.predict_proba(data.texts)
    result = {"model": "TF-IDF + logistic regression", "settings": SETTINGS, "train_rows": len(train),
              "fit_seconds": baseline.fit_seconds, "predict_seconds": round(time.monotonic() - started, 2)}
    if problem_type == "single_label":
        return result | singlelabel_metrics(data.y(), probs, labels), probs.argmax(axis=1), probs
    threshold, source = (cfg.threshold, "given") if cfg.threshold is not None else (0.5, "default")
    if cfg.threshold is None and metrics.get("threshold_source") == "tuned at training":
        dev, _ = classifier.held_out("eval")
        threshold = tune_thresholds(dev.y(), baseline.predict_proba(dev.texts))
        source = "tuned on the classifier run's eval split"
    result["threshold_source"] = source
    result |= multilabel_metrics(data.y().astype(int), probs, labels, np.asarray(threshold))
    return result, probs >= np.asarray(threshold), probs


def _write_rows(classifier: _Classifier, record: RunRecord, out: Path, data, probs: np.ndarray,
                predicted: list[list[str]], tuned_predicted: list[list[str]] | None) -> None:
    """predictions.jsonl (each text, its labels, its prediction and probabilities) and per_example.jsonl
    (the layout every classification's examples share)."""
    labels = classifier.labels
    single = classifier.info.problem_type == "single_label"
    rows = []
    for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets)):
        row = ({"id": rid, "text": text, "label": labels[target[0]], "predicted": predicted[i][0]} if single else
               {"id": rid, "text": text, "labels": [labels[j] for j in target], "predicted": predicted[i]})
        row["probs"] = {label: round(float(probs[i, j]), 6) for j, label in enumerate(labels)}
        rows.append(row)
    write_jsonl(out / "predictions.jsonl", rows)
    record.add_output("predictions", out / "predictions.jsonl")
    per_example = []
    for i, (rid, text, target) in enumerate(zip(data.ids, data.texts, data.targets)):
        reference = [labels[j] for j in target]
        row = {"id": rid, "text": text, "reference": reference, "predicted": predicted[i],
               "outcome": "labels" if predicted[i] else "none", "correct": predicted[i] == reference,
               "scores": rows[i]["probs"]}
        if tuned_predicted is not None:
            row["predicted_tuned_on_dev"] = tuned_predicted[i]
        per_example.append(row)
    write_jsonl(out / "per_example.jsonl", per_example)
    record.add_output("per_example", out / "per_example.jsonl")
