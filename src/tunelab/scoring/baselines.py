"""Zero- and k-shot baselines beside the scored model: inference runs of a base model (inference.py
--shots K --shots_data F --shots_seed S), each scored as an LLM's answers, and runs with the same
number of shots summarized as mean ± sample standard deviation over their seeds."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from ..errors import ConfigError, RecordError
from ..metrics.classification import mean_std
from ..metrics.scores import ClassifierScores
from ..paths import resolve_input
from ..records import write_jsonl
from ..runs import RunRecord

_COMPARED = ("refusal_rate", "micro_f1", "macro_f1", "macro_f1_refusals_excluded")
SPREAD = "mean and sample standard deviation (ddof 1) over seeds; each seed draws its own shots"


@dataclass
class BaselineRun:
    """One finished inference run of the base model, read back: its settings and its answers."""

    path: Path
    model: str
    shots: int
    seed: int
    shot_ids: list
    rows: list  # metrics.answer_files.AnswerRow


def check_baseline_file(predictions: str) -> None:
    """A baseline is the predictions.jsonl of a finished inference run: said before anything is scored."""
    path = resolve_input(predictions)
    folder = path.parent
    if not path.is_file():
        raise ConfigError(f"--baselines {predictions}: no such file")
    if not (folder / "config.yaml").exists():
        raise ConfigError(f"{path}: a baseline is an inference run's predictions.jsonl (python inference.py "
                          f"--shots K ...), and {folder} holds no config.yaml")
    if not (folder / "provenance.json").exists():
        raise ConfigError(f"{path}: its inference run has not finished (no provenance.json in {folder}); rerun "
                          "its command to finish it")


def read_baseline_run(predictions, labels: tuple[str, ...], none_label: str, *, allow_empty: bool) -> BaselineRun:
    """A baseline's predictions.jsonl with its inference run's record beside it (config.yaml: model, shots,
    seed; provenance.json: the shots drawn, and proof the run finished)."""
    from ..metrics.answer_files import read_answer_rows

    check_baseline_file(predictions)
    path = resolve_input(predictions)
    folder = path.parent
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    notes = json.loads((folder / "provenance.json").read_text(encoding="utf-8")).get("notes", {})
    rows = read_answer_rows(path, labels, none_label, allow_empty=allow_empty, with_references=True,
                            missing_reference="an inference run keeps each record's 'output' as its reference")
    return BaselineRun(path, str(config.get("model")), int(config.get("shots") or 0),
                       int(config.get("shots_seed") or 0), notes.get("shots", {}).get("ids", []), rows)


def add_baselines(files: list[str], scored_model: str, record: RunRecord, out: Path, scores: ClassifierScores,
                  none_label: str, *, scored_references: dict[str, tuple[str, ...]] | None,
                  allow_empty: bool) -> None:
    """Score each baseline run, write its answers with their outcomes into out/baselines/, and add
    scores["baselines"] (per number of shots: every seed's numbers, their mean and std) and
    scores["comparison"] (the scored model beside each k-shot baseline)."""
    labels = tuple(scores.labels)
    runs = [read_baseline_run(f, labels, none_label, allow_empty=allow_empty) for f in files]
    seen: dict[tuple[int, int], Path] = {}
    for run in runs:
        if (key := (run.shots, run.seed)) in seen:
            raise ConfigError(f"{run.path} and {seen[key]} are both {run.shots}-shot runs with seed {run.seed}: "
                              "give each (shots, seed) once")
        seen[key] = run.path
        _check_same_examples(run, runs[0], scored_references, scores)
        record.add_input(f"baseline {run.shots}-shot seed {run.seed}", run.path)
    (out / "baselines").mkdir(exist_ok=True)
    by_shots: dict[str, dict] = {}
    for run in sorted(runs, key=lambda r: (r.shots, r.seed)):
        numbers, rows = _score_run(run, labels, none_label, scores.problem_type)
        path = write_jsonl(out / "baselines" / f"{run.shots}shot_seed{run.seed}.jsonl", rows)
        record.add_output(f"baseline_{run.shots}shot_seed{run.seed}", path)
        by_shots.setdefault(str(run.shots), {"shots": run.shots, "seeds": [], "runs": []})
        by_shots[str(run.shots)]["seeds"].append(run.seed)
        by_shots[str(run.shots)]["runs"].append({"seed": run.seed, "predictions": str(run.path),
                                                 "shot_ids": run.shot_ids, **numbers})
    for entry in by_shots.values():
        entry |= mean_std([{k: v for k, v in r.items() if k not in ("seed", "predictions", "shot_ids")}
                           for r in entry["runs"]])
    models = sorted({run.model for run in runs})
    scores.data["baselines"] = {"model": ", ".join(models), "examples": len(runs[0].rows),
                                "spread": SPREAD, "by_shots": by_shots}
    scores.data["comparison"] = comparison_rows(scores, scored_model, ", ".join(models))


def _check_same_examples(run: BaselineRun, first: BaselineRun, scored: dict[str, tuple[str, ...]] | None,
                         scores: ClassifierScores) -> None:
    """Systems are compared on the same examples: a baseline answers the scored model's ids with the same
    references (an LLM's answers) or as many examples (a classifier's rows), and the same ids as the
    other baselines."""
    ids = [row.id for row in run.rows]
    if scored is not None:
        if sorted(ids) != sorted(scored):
            missing = sorted(set(scored) - set(ids))[:3]
            raise RecordError(run.path, None, f"answers {len(ids)} examples, the scored predictions {len(scored)}; "
                              "baselines are compared on the same ids" + (f" (missing {missing})" if missing else ""))
        for row in run.rows:
            if row.reference != scored[row.id]:
                raise RecordError(run.path, row.line, f"record {row.id}: reference {list(row.reference)} differs from "
                                                      f"the scored predictions' {list(scored[row.id])}")
    elif len(ids) != scores.examples:
        raise RecordError(run.path, None, f"answers {len(ids)} examples and the classifier was scored on "
                                          f"{scores.examples}: compare them on the same rows")
    if sorted(ids) != sorted(row.id for row in first.rows):
        raise RecordError(run.path, None, f"answers other ids than {first.path}: baselines are compared on the "
                                          "same examples")


def _score_run(run: BaselineRun, labels: tuple[str, ...], none_label: str, problem_type: str) -> tuple[dict, list]:
    """A baseline run's outcomes and headline numbers, and its answers as per-example rows."""
    from ..metrics.llm_answers import answers_headline, label_parser, score_answers

    parser = label_parser(labels, none_label)
    references = [row.reference for row in run.rows]
    if problem_type == "single_label":
        for row in run.rows:
            if len(row.reference) != 1:
                raise RecordError(*row.reference_at, f"record {row.id}: a single_label reference holds exactly one "
                                                     f"label, this one {list(row.reference) or none_label!r}")
    parsed = [parser.parse(row.answer) for row in run.rows]
    probs = (np.array([[row.label_probs[label] for label in labels] for row in run.rows], dtype=np.float64)
             if run.rows[0].label_probs is not None else None)
    scored = score_answers(references, parsed, labels, none_label, problem_type, probs)
    rows = [{"id": row.id, "text": row.text, "answer": row.answer, "outcome": p.outcome, "reason": p.reason,
             "reference": list(row.reference),
             "predicted": list(p.labels) if p.outcome in ("labels", "none") else None,
             **({"label_probs": row.label_probs} if row.label_probs is not None else {})}
            for row, p in zip(run.rows, parsed)]
    return {"outcomes": scored["outcomes"], **answers_headline(scored)}, rows


def comparison_rows(scores: ClassifierScores, scored_model: str, baseline_model: str) -> list[dict]:
    """One row per system (the scored model, then each k-shot baseline): the headline numbers, as mean ± std."""
    main_key = scores.main_metric
    keys = (_COMPARED[0], main_key, *_COMPARED[1:])

    def fmt(mean, std):
        if mean is None:
            return "n/a"
        return f"{mean:.3f}" if std is None else f"{mean:.3f} ± {std:.3f}"

    main = scores.compared_numbers()
    rows = [{"system": "scored model", "model": scored_model, "shots": None, "runs": 1,
             "mean": main, "std": dict.fromkeys(keys), "text": {k: fmt(main[k], None) for k in keys}}]
    for k, entry in scores.data["baselines"]["by_shots"].items():
        mean, std = _baseline_numbers(entry["mean"], main_key), _baseline_numbers(entry["std"], main_key)
        rows.append({"system": f"{k}-shot baseline", "model": baseline_model, "shots": int(k),
                     "runs": len(entry["runs"]), "mean": mean, "std": std,
                     "text": {key: fmt(mean[key], std[key]) for key in keys}})
    return rows


def _baseline_numbers(numbers: dict, main_key: str) -> dict:
    """The compared numbers of a baseline's mean (or std) over seeds, in the scored model's order."""
    wrong, excluded = numbers["refusals_as_wrong"], numbers.get("refusals_excluded")
    return {"refusal_rate": numbers["refusal_rate"], main_key: wrong[main_key], "micro_f1": wrong["micro_f1"],
            "macro_f1": wrong["macro_f1"], "macro_f1_refusals_excluded": excluded["macro_f1"] if excluded else None}
