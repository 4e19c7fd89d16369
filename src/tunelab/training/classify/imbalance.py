"""Imbalance maths from the training rows: class weights for the loss, draw weights for a balanced sampler,
and the head biases that match the label rates as the loss weighs and draws them."""

from __future__ import annotations

import numpy as np

from .data import LabeledTexts


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


def label_prior_logits(data: LabeledTexts, loss_weights: np.ndarray | None = None,
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
