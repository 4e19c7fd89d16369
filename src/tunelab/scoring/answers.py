"""An LLM classifying in words: its answers (inference.py's predictions.jsonl) parsed into labels and
scored twice, refusals counted as wrong and refusals left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError, RecordError
from ..metrics.scores import AnswerScores
from ..paths import resolve_input
from ..records import write_jsonl
from ..runs import RunRecord
from .outputs import write_plots
from .settings import LabelSetConfig, ScoreRunConfig


def label_set(cfg: LabelSetConfig, record: RunRecord) -> tuple[tuple[str, ...], str]:
    """The labels and the none answer, from --taxonomy or --labels."""
    if cfg.taxonomy and cfg.labels:
        raise ConfigError("give --taxonomy or --labels, not both")
    if cfg.taxonomy:
        from ..taxonomy import load_taxonomy

        taxonomy = load_taxonomy(cfg.taxonomy)
        record.add_input("taxonomy", taxonomy.path)
        return taxonomy.labels, taxonomy.none_label
    if cfg.labels:
        if len(set(cfg.labels)) != len(cfg.labels) or cfg.none_label in cfg.labels:
            raise ConfigError(f"--labels must be distinct and differ from none_label {cfg.none_label!r}: {cfg.labels}")
        return tuple(cfg.labels), cfg.none_label
    raise ConfigError("classification of --predictions needs the label set: --taxonomy (e.g. jigsaw) or --labels")


def score_answers_file(run: ScoreRunConfig, cfg: LabelSetConfig, record: RunRecord,
                       out: Path) -> tuple[AnswerScores, dict[str, tuple[str, ...]]]:
    """The answers of --predictions against their references (each row's, or --data's matched by id).
    Writes per_example.jsonl and the plots. Returns the scores and each answered id's reference labels
    (baselines answer the same examples)."""
    from ..metrics.answer_files import attach_references, read_answer_rows, read_reference_file
    from ..metrics.llm_answers import label_matrix, label_parser, resolve_problem_type, score_answers

    labels, none_label = label_set(cfg, record)
    path = resolve_input(run.predictions)
    record.add_input("predictions", path)
    rows = read_answer_rows(path, labels, none_label, allow_empty=run.allow_empty_predictions,
                            with_references=not run.data)
    if run.data:  # references in their own file (alpaca or moderation records), matched by id
        ref_path = resolve_input(run.data)
        record.add_input("references", ref_path)
        attach_references(rows, path, read_reference_file(ref_path, labels, none_label), ref_path)
    references = [row.reference for row in rows]
    problem_type = resolve_problem_type(cfg.problem_type, references)
    if problem_type == "single_label":
        for row in rows:
            if len(row.reference) != 1:
                raise RecordError(*row.reference_at, f"record {row.id}: a single_label reference holds exactly one "
                                                     f"label, this one {list(row.reference) or none_label!r}")
    parser = label_parser(labels, none_label)
    parsed = [parser.parse(row.answer) for row in rows]
    probs = (np.array([[row.label_probs[label] for label in labels] for row in rows], dtype=np.float64)
             if rows[0].label_probs is not None else None)
    scores = {"source": AnswerScores.source, "labels": list(labels), "none_label": none_label,
              **score_answers(references, parsed, labels, none_label, problem_type, probs),
              "scores_from": "label_probs" if probs is not None else None}
    write_jsonl(out / "per_example.jsonl", [
        {"id": row.id, "instruction": row.instruction, "text": row.text, "answer": row.answer,
         "outcome": p.outcome, "reason": p.reason, "reference": list(row.reference),
         "predicted": list(p.labels) if p.outcome in ("labels", "none") else None,
         "correct": p.outcome in ("labels", "none") and p.labels == row.reference, "scores": row.label_probs}
        for row, p in zip(rows, parsed)])
    record.add_output("per_example", out / "per_example.jsonl")
    y = label_matrix(references, labels)
    write_plots(run.plots, record, out, scores, scores, y_true=y, scores=probs, labels=labels,
                title="all examples, refusals counted as wrong")
    kept = [i for i, p in enumerate(parsed) if p.outcome != "refusal"]
    if "per_label" in scores["refusals_excluded"] and len(kept) < len(rows):
        write_plots(run.plots, record, out, scores, scores["refusals_excluded"], y_true=y[kept],
                    scores=None if probs is None else probs[kept], labels=labels, prefix="refusals_excluded_",
                    title="refusals excluded")
    return AnswerScores(scores), {row.id: row.reference for row in rows}
