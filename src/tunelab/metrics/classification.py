"""Multi-label classification scores with scikit-learn."""

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
