"""The report's scores and plots, laid out by what was scored (`tunelab.metrics.scores`): text scores
show their runs and paired deltas; a classifier and an LLM's answers show their labels' tables and
matrices, and the systems compared with their k-shot baselines. What a type does not name is laid out
by shape (`tables.json_blocks`)."""

from __future__ import annotations

import base64
from pathlib import Path

from ..metrics.scores import ClassifierScores, Scores, TextScores, read_scores
from .tables import _table, comparisons_table, esc, json_blocks, runs_table


def systems_table(rows: list[dict], table_id: str) -> str:
    """The scored model beside its k-shot baselines: one row per system, each number as mean ± std."""
    numbers = list(rows[0]["text"])
    return _table(["system", "model", "runs", *numbers],
                  [[r["system"], r["model"], r["runs"], *(r["text"][k] for k in numbers)] for r in rows],
                  table_id=table_id, caption="mean ± sample standard deviation over seeds; n/a: nothing to score")


def _typed(data: dict) -> Scores | None:
    try:
        return read_scores(data)
    except (ValueError, AttributeError):  # a scores.json of a kind this version does not know
        return None


def _blocks(data: dict) -> list[str]:
    scores = _typed(data)
    if isinstance(scores, TextScores):
        return json_blocks(data, known={"runs": ("Runs", runs_table),
                                        "comparisons": ("Comparisons", comparisons_table)})
    if isinstance(scores, ClassifierScores):
        labels = data.get("labels")
        return json_blocks(data, label_names=[str(x) for x in labels] if isinstance(labels, list) else None,
                           known={"comparison": ("Compared with k-shot baselines", systems_table)})
    return json_blocks(data)


def scores_section(data: dict) -> str:
    body = "".join(_blocks(data)) if data else '<p class="note">No scores to show.</p>'
    return f'<section id="scores"><h2>Scores</h2>{body}</section>'


def images_section(images: list[Path], data: dict) -> str:
    if not images:
        return ""
    # scores.json names its plots ({"plots": {name: file}}); else the caption comes from the file name.
    scores = _typed(data) if data else None
    names = {file: name for name, file in scores.plots.items()} if scores else {}
    out = ['<section id="plots"><h2>Plots</h2>']
    for path in images:
        image = base64.b64encode(path.read_bytes()).decode("ascii")
        caption = names.get(path.name) or path.stem
        caption = caption.replace("_", " ").replace("-", " ").strip()
        caption = caption[:1].upper() + caption[1:]
        out.append(f'<figure><img src="data:image/png;base64,{image}" alt="{esc(caption)}">'
                   f"<figcaption>{esc(caption)} <span class=\"muted\">({esc(path.name)})</span></figcaption></figure>")
    out.append("</section>")
    return "".join(out)
