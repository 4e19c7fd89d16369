"""A PNG of a run's training curves: loss (train and eval), learning rate, grad norm, by step; for preference
tuning also the implicit rewards of the chosen and rejected answers, their margin and how often chosen wins."""

from __future__ import annotations

from pathlib import Path


def plot_training_curves(log_history: list[dict], path: str | Path) -> bool:
    """Draw what the trainer logged; returns False (and writes nothing) when nothing was logged."""
    series = {
        "loss": [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e],
        "eval_loss": [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e and "step" in e],
        "learning_rate": [(e["step"], e["learning_rate"]) for e in log_history if "learning_rate" in e],
        "grad_norm": [(e["step"], e["grad_norm"]) for e in log_history if e.get("grad_norm") is not None],
    }
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        series[key] = [(e["step"], e[key]) for e in log_history if e.get(key) is not None and "step" in e]
    if not series["loss"] and not series["eval_loss"]:
        return False
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    panels = [("loss", ("loss", "eval_loss")), ("learning rate", ("learning_rate",)), ("grad norm", ("grad_norm",)),
              ("rewards (DPO)", ("rewards/chosen", "rewards/rejected", "rewards/margins")),
              ("reward accuracy (chosen above rejected)", ("rewards/accuracies",))]
    panels = [(title, keys) for title, keys in panels if any(series[k] for k in keys)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (title, keys) in zip(axes[0], panels):
        for key in keys:
            if series[key]:
                steps, values = zip(*series[key])
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3,
                        label={"loss": "train", "eval_loss": "eval"}.get(key, key.removeprefix("rewards/")))
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
