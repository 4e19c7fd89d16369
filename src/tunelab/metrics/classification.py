"""Classification scores with scikit-learn: multi-label (per-label thresholds) and single-label (argmax)."""

from __future__ import annotations

import warnings

import numpy as np


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] | list[str],
                       threshold: float | np.ndarray = 0.5) -> dict:
    """Per-label precision/recall/F1/support and ROC-AUC; micro and macro averages; subset accuracy; Hamming loss.

    ROC-AUC is None for a label whose test set holds only one class (it is undefined there).
    """
    from sklearn.metrics import accuracy_score, hamming_loss, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(probs) >= threshold).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined precision of a never-predicted label is reported as 0
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0)
        averages = {avg: dict(zip(("precision", "recall", "f1"),
                                  map(float, precision_recall_fscore_support(y_true, y_pred, average=avg,
                                                                             zero_division=0)[:3])))
                    for avg in ("micro", "macro")}
    per_label = {}
    aucs = []
    for j, label in enumerate(labels):
        auc = None
        if len(np.unique(y_true[:, j])) == 2:
            auc = float(roc_auc_score(y_true[:, j], probs[:, j]))
            aucs.append(auc)
        per_label[label] = {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j]),
                            "roc_auc": auc}
    return {
        "per_label": per_label, **averages,
        "mean_roc_auc": float(np.mean(aucs)) if aucs else None,
        "subset_accuracy": float(accuracy_score(y_true, y_pred)),
        "hamming_loss": float(hamming_loss(y_true, y_pred)),
        "threshold": threshold if np.isscalar(threshold) else list(map(float, threshold)),
        "examples": int(len(y_true)),
    }


def singlelabel_metrics(y_true: np.ndarray, probs: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, micro (= accuracy) and macro averages, the
    confusion matrix (rows true, columns predicted) and one-vs-rest ROC-AUC per class.

    `y_true` holds class indices; the prediction is the most probable class.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs)
    y_pred = probs.argmax(axis=1)
    k = list(range(len(labels)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=k, average=None, zero_division=0)
        averages = {avg: dict(zip(("precision", "recall", "f1"),
                                  map(float, precision_recall_fscore_support(y_true, y_pred, labels=k, average=avg,
                                                                             zero_division=0)[:3])))
                    for avg in ("micro", "macro")}
    per_label, aucs = {}, []
    for j, label in enumerate(labels):
        positive = (y_true == j).astype(int)
        auc = None
        if 0 < positive.sum() < len(positive):
            auc = float(roc_auc_score(positive, probs[:, j]))
            aucs.append(auc)
        per_label[label] = {"precision": float(p[j]), "recall": float(r[j]), "f1": float(f[j]), "support": int(s[j]),
                            "roc_auc": auc}
    return {
        "problem_type": "single_label", "accuracy": float(accuracy_score(y_true, y_pred)),
        "per_label": per_label, **averages,
        "mean_roc_auc": float(np.mean(aucs)) if aucs else None,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=k).tolist(),
        "examples": int(len(y_true)),
    }


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
