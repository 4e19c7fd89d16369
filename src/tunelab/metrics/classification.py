"""Classification scores with scikit-learn: multi-label (per-label thresholds) and single-label (argmax),
from probabilities (encoder classifiers) or from predicted labels (an LLM's parsed answers, with
per-label scores where the backend gave them)."""

from __future__ import annotations

import math
import warnings

import numpy as np

NO_ANSWER = -1  # single-label prediction of an example without a valid answer (refusal, unparseable)


def _prf(y_true, y_pred, **kwargs) -> tuple[np.ndarray, ...]:
    from sklearn.metrics import precision_recall_fscore_support

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision of a never-predicted label is reported as 0
        return precision_recall_fscore_support(y_true, y_pred, zero_division=0, **kwargs)


def _averages(y_true, y_pred, **kwargs) -> dict:
    return {avg: dict(zip(("precision", "recall", "f1"), map(float, _prf(y_true, y_pred, average=avg, **kwargs)[:3])))
            for avg in ("micro", "macro")}


def _ranking_scores(positive: np.ndarray, score: np.ndarray | None) -> tuple[float | None, float | None]:
    """(ROC-AUC, PR-AUC as average precision) of one label; None where undefined (one class only,
    or no scores). Average precision is sklearn's step-wise area, not a trapezoid."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if score is None or not positive.any():
        return None, None
    ap = float(average_precision_score(positive, score))
    return (float(roc_auc_score(positive, score)) if not positive.all() else None), ap


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def multilabel_scores(y_true: np.ndarray, y_pred: np.ndarray, labels, scores: np.ndarray | None = None) -> dict:
    """Per-label precision/recall/F1/support/accuracy, the 2x2 counts (tn, fp, fn, tp) and, with `scores`,
    ROC-AUC and PR-AUC (average precision); micro and macro averages; subset accuracy; Hamming loss.

    `y_true`, `y_pred`: 0/1 matrices, one column per label. ROC-AUC is None for a label whose set holds
    only one class, PR-AUC for a label without positives (both undefined there).
    """
    from sklearn.metrics import accuracy_score, hamming_loss, multilabel_confusion_matrix

    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    p, r, f, s = _prf(y_true, y_pred, average=None)
    counts = multilabel_confusion_matrix(y_true, y_pred)  # per label [[tn, fp], [fn, tp]]
    per_label = {}
    for j, label in enumerate(labels):
        (tn, fp), (fn, tp) = counts[j].tolist()
        auc, ap = _ranking_scores(y_true[:, j], None if scores is None else np.asarray(scores)[:, j])
        per_label[label] = {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j]),
                            "accuracy": (tn + tp) / max(len(y_true), 1), "roc_auc": auc, "pr_auc": ap,
                            "tn": tn, "fp": fp, "fn": fn, "tp": tp}
    return {
        "problem_type": "multi_label", "per_label": per_label, **_averages(y_true, y_pred),
        "mean_roc_auc": _mean(v["roc_auc"] for v in per_label.values()),
        "mean_pr_auc": _mean(v["pr_auc"] for v in per_label.values()),
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "examples": int(len(y_true)),
    }


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] | list[str],
                       threshold: float | np.ndarray = 0.5) -> dict:
    """`multilabel_scores` of probabilities cut at `threshold` (one for all labels, or one per label)."""
    probs = np.asarray(probs)
    metrics = multilabel_scores(y_true, probs >= threshold, labels, probs)
    metrics["threshold"] = threshold if np.isscalar(threshold) else list(map(float, threshold))
    return metrics


def singlelabel_scores(y_true: np.ndarray, y_pred: np.ndarray, labels, scores: np.ndarray | None = None) -> dict:
    """Accuracy, per-class precision/recall/F1/support, micro and macro averages, the confusion matrix
    (rows true, columns predicted) and, with `scores`, one-vs-rest ROC-AUC and PR-AUC per class.

    `y_true`, `y_pred` hold class indices; a prediction of NO_ANSWER (-1) is wrong for its example and a
    prediction of no class, so micro precision counts answered examples only while micro recall equals
    accuracy. The matrix then gets a last row and column "(no answer)" (`confusion_matrix_labels`).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix

    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    k = list(range(len(labels)))
    p, r, f, s = _prf(y_true, y_pred, labels=k, average=None)
    per_label = {}
    for j, label in enumerate(labels):
        auc, ap = _ranking_scores((y_true == j).astype(int), None if scores is None else np.asarray(scores)[:, j])
        per_label[label] = {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j]),
                            "roc_auc": auc, "pr_auc": ap}
    unanswered = int((y_pred == NO_ANSWER).sum())
    matrix_labels = list(labels) + (["(no answer)"] if unanswered else [])
    matrix = confusion_matrix(y_true, y_pred, labels=k + ([NO_ANSWER] if unanswered else []))
    return {
        "problem_type": "single_label", "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_label": per_label, **_averages(y_true, y_pred, labels=k),
        "mean_roc_auc": _mean(v["roc_auc"] for v in per_label.values()),
        "mean_pr_auc": _mean(v["pr_auc"] for v in per_label.values()),
        "confusion_matrix": matrix.tolist(), "confusion_matrix_labels": matrix_labels,
        "examples": int(len(y_true)),
    }


def singlelabel_metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict:
    """`singlelabel_scores` of the most probable class."""
    probs = np.asarray(probs)
    return singlelabel_scores(y_true, probs.argmax(axis=1), labels, probs)


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-label decision thresholds that maximise each label's F1 on (y_true, probs), each placed
    halfway between the lowest score it accepts and the highest it rejects.

    A label with no positive example keeps `default`: no threshold gives it a nonzero F1, and a
    tuned one would only reflect noise. Thresholds tuned on a set score optimistically on that set.
    """
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs)
    thresholds = np.full(y_true.shape[1], default, dtype=np.float64)
    for j in range(y_true.shape[1]):
        if y_true[:, j].sum() == 0:
            continue
        precision, recall, cuts = precision_recall_curve(y_true[:, j], probs[:, j])
        # the curve's last point (recall 0) has no threshold
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        cut = float(cuts[int(np.argmax(f1))])
        # Halfway to the next lower score: the same decisions on this set, but not on a knife edge that
        # float noise from another batch size or device would flip.
        below = probs[:, j][probs[:, j] < cut]
        thresholds[j] = (cut + float(below.max() if below.size else 0.0)) / 2
    return thresholds


def headline(metrics: dict) -> dict:
    """The few numbers that compare runs: accuracy (single-label) or subset accuracy and Hamming loss
    (multi-label), micro/macro F1, mean ROC-AUC and PR-AUC where scores exist, and F1 per label."""
    keys = ("accuracy",) if metrics.get("problem_type") == "single_label" else ("subset_accuracy", "hamming_loss")
    out = {k: metrics[k] for k in keys}
    out |= {"micro_f1": metrics["micro"]["f1"], "macro_f1": metrics["macro"]["f1"],
            "mean_roc_auc": metrics.get("mean_roc_auc"), "mean_pr_auc": metrics.get("mean_pr_auc")}
    out["f1"] = {label: v["f1"] for label, v in metrics["per_label"].items()}
    return out


def mean_std(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof 1) of every number in a list of same-shaped dicts
    (nested dicts too). A value missing (None) in any run is None; std is None for a single run."""
    def combine(values):
        if all(isinstance(v, dict) for v in values):
            keys = [k for k in values[0] if all(k in v for v in values)]
            parts = {k: combine([v[k] for v in values]) for k in keys}
            return {"mean": {k: p["mean"] for k, p in parts.items()}, "std": {k: p["std"] for k, p in parts.items()}}
        if any(v is None or isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            return {"mean": None, "std": None}
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=1)) if len(arr) > 1 else None
        return {"mean": float(arr.mean()), "std": std if std is None or not math.isnan(std) else None}

    return combine(runs)


# ---- bootstrap intervals ---------------------------------------------------------------------------

def _f1(tp, fp, fn):
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)


def _weighted_auc(y: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC of one label on each resample (rows of `counts`), ties counted half; NaN where a resample
    holds one class only. Scores are sorted once and tied scores grouped, so every resample is a few
    vectorised sums (Mann-Whitney with the draw counts as weights)."""
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], y[order].astype(bool)
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    c = counts[:, order].astype(np.float64)
    pos_w = np.add.reduceat(c * pos, starts, axis=1)
    neg_w = np.add.reduceat(c * ~pos, starts, axis=1)
    neg_below = np.cumsum(neg_w, axis=1) - neg_w
    p_total, n_total = pos_w.sum(axis=1), neg_w.sum(axis=1)
    wins = (pos_w * (neg_below + 0.5 * neg_w)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((p_total > 0) & (n_total > 0), wins / (p_total * n_total), np.nan)


def headline_resamples(y_true: np.ndarray, predicted: np.ndarray, probs: np.ndarray | None, problem_type: str,
                       bootstrap) -> dict[str, tuple[float, np.ndarray]]:
    """The headline numbers on all examples and on each bootstrap resample: {name: (value, resampled)}.

    single_label (`y_true`, `predicted`: class indices): accuracy and macro-F1. multi_label (0/1
    matrices): subset accuracy, micro- and macro-F1. With `probs`: mean ROC-AUC over the labels (the
    classes, one-vs-rest) with both outcomes present. Every number is a function of per-example
    counts, so one draw of the resample counts serves all of them, and two systems scored with the
    same `bootstrap` on the same examples are paired.
    """
    y_true, predicted = np.asarray(y_true), np.asarray(predicted)
    n = len(y_true)
    if problem_type == "single_label":
        k = probs.shape[1] if probs is not None else int(max(y_true.max(), predicted.max())) + 1
        truth = np.eye(k, dtype=np.float64)[y_true]
        pred = np.zeros((n, k))
        answered = predicted >= 0
        pred[np.flatnonzero(answered), predicted[answered]] = 1.0
        exact = (predicted == y_true).astype(np.float64)
        main = "accuracy"
    else:
        truth, pred = y_true.astype(np.float64), predicted.astype(np.float64)
        exact = (truth == pred).all(axis=1).astype(np.float64)
        main = "subset_accuracy"
    columns = np.concatenate([exact[:, None], truth * pred, (1 - truth) * pred, truth * (1 - pred)], axis=1)
    k = truth.shape[1]

    def numbers(sums, size):
        tp, fp, fn = sums[..., 1:1 + k], sums[..., 1 + k:1 + 2 * k], sums[..., 1 + 2 * k:]
        out = {main: sums[..., 0] / size, "macro_f1": _f1(tp, fp, fn).mean(axis=-1)}
        if problem_type == "multi_label":
            out["micro_f1"] = _f1(tp.sum(axis=-1), fp.sum(axis=-1), fn.sum(axis=-1))
        return out

    full = numbers(columns.sum(axis=0), n)
    resampled = numbers(bootstrap.sums(columns), n)
    result = {name: (float(full[name]), resampled[name]) for name in full}
    if probs is not None:
        ones = np.ones((1, n))
        per_label = [(_weighted_auc(truth[:, j], np.asarray(probs)[:, j], ones)[0],
                      np.concatenate([_weighted_auc(truth[:, j], np.asarray(probs)[:, j], c)
                                      for c in bootstrap.counts(n)]) if bootstrap.resamples else np.empty(0))
                     for j in range(k)]
        defined = [(v, r) for v, r in per_label if not np.isnan(v)]
        if defined:
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no positive of any label
                stacked = np.stack([r for _, r in defined])
                result["mean_roc_auc"] = (float(np.mean([v for v, _ in defined])), np.nanmean(stacked, axis=0))
    return result


def headline_intervals(resamples: dict, bootstrap) -> dict:
    """{name: {value, ci_low, ci_high}} from `headline_resamples`."""
    return {name: bootstrap.interval(value, r[~np.isnan(r)]) for name, (value, r) in resamples.items()}


def headline_deltas(system: dict, baseline: dict, bootstrap) -> dict:
    """Paired differences system minus baseline, {name: {delta, ci_low, ci_high, excludes_zero}}."""
    out = {}
    for name in system.keys() & baseline.keys():
        diff = system[name][1] - baseline[name][1]
        out[name] = bootstrap.delta(system[name][0] - baseline[name][0], diff[~np.isnan(diff)])
    return dict(sorted(out.items()))
