"""Classification plots as PNG files (matplotlib, Agg: no display needed): confusion matrices and
per-label ROC and precision-recall curves, drawn with scikit-learn's display classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 120


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers and in tests without a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4)
    return (n + cols - 1) // cols, cols


def confusion_matrix_png(matrix, labels, path, title: str = "Confusion matrix") -> Path:
    """A square confusion matrix (rows true, columns predicted) with its counts."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    n = len(labels)
    size = max(4.0, 0.6 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(labels)).plot(
        ax=ax, cmap="Blues", xticks_rotation=45 if n > 3 else "horizontal", colorbar=True, values_format="d")
    ax.set_title(title)
    return _save(fig, path)


def per_label_confusion_png(per_label: dict, path,
                            title: str = "Per-label confusion (rows true, columns predicted)") -> Path:
    """One 2x2 matrix per label ({label: {"tn", "fp", "fn", "tp"}}) in a grid."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    rows, cols = _grid(len(per_label))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (label, c) in zip(axes.flat, per_label.items()):
        ConfusionMatrixDisplay(np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]]), display_labels=["no", "yes"]).plot(
            ax=ax, cmap="Blues", colorbar=False, values_format="d")
        ax.set_title(label)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    for ax in axes.flat[len(per_label):]:
        ax.axis("off")
    fig.suptitle(title)
    return _save(fig, path)


def curves_png(y_true: np.ndarray, scores: np.ndarray, labels, path, kind: str,
               title: str | None = None) -> Path | None:
    """ROC (`kind` "roc") or precision-recall ("pr") curves, one per label, on one axes.

    `y_true` is a 0/1 matrix (one column per label; one-vs-rest for single-label). A label whose set
    holds one class only has no curve. Returns None when no label has one.
    """
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    y_true, scores = np.asarray(y_true).astype(int), np.asarray(scores, dtype=np.float64)
    drawable = [j for j in range(len(labels)) if y_true[:, j].any() and not y_true[:, j].all()]
    if not drawable:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    display = RocCurveDisplay if kind == "roc" else PrecisionRecallDisplay
    for i, j in enumerate(drawable):
        display.from_predictions(y_true[:, j], scores[:, j], name=str(labels[j]), ax=ax,
                                 plot_chance_level=(kind == "roc" and i == len(drawable) - 1))
    ax.set_xlabel("false positive rate" if kind == "roc" else "recall")
    ax.set_ylabel("true positive rate" if kind == "roc" else "precision")
    ax.set_title(title or ("ROC curves" if kind == "roc" else "Precision-recall curves"))
    ax.legend(loc="lower right" if kind == "roc" else "lower left", fontsize="small")
    return _save(fig, path)


def classification_plots(metrics: dict, out_dir, *, y_true: np.ndarray | None = None, scores: np.ndarray | None = None,
                         labels=None, prefix: str = "", title: str = "") -> dict[str, Path]:
    """Every plot `metrics` supports, into `out_dir`; returns {name: path}.

    Single-label: confusion_matrix.png. Multi-label: confusion_per_label.png. With scores: roc_curves.png
    and pr_curves.png (`y_true` a 0/1 matrix, one column per label). `prefix` starts each file name.
    """
    out_dir = Path(out_dir)
    suffix = f" ({title})" if title else ""
    made: dict[str, Path] = {}
    if metrics.get("problem_type") == "single_label":
        made[f"{prefix}confusion_matrix"] = confusion_matrix_png(
            metrics["confusion_matrix"], metrics.get("confusion_matrix_labels", labels),
            out_dir / f"{prefix}confusion_matrix.png", "Confusion matrix" + suffix)
    else:
        made[f"{prefix}confusion_per_label"] = per_label_confusion_png(
            metrics["per_label"], out_dir / f"{prefix}confusion_per_label.png",
            "Per-label confusion (rows true, columns predicted)" + suffix)
    if scores is not None and y_true is not None:
        for kind, name, what in (("roc", "roc_curves", "ROC curves"), ("pr", "pr_curves", "Precision-recall curves")):
            path = curves_png(y_true, scores, labels, out_dir / f"{prefix}{name}.png", kind, what + suffix)
            if path is not None:
                made[f"{prefix}{name}"] = path
    return made
