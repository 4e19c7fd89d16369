"""An LLM judge's scores of generated text, beside BLEU, ROUGE-L and BERTScore: each run's answers graded
on the rubric (mean score with a bootstrap interval), and each compared run against the first judged
pairwise in both orders (win rate with ties counted half, its interval, and how often the judge's
pick followed the position instead of the answer) and by the paired difference of their scores on the
examples both have a readable verdict for. Every verdict is cached in the run folder
(judge_cache.jsonl) and lands in per_example.jsonl beside the two answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import RecordError
from ..judge import Judging, both_orders
from ..runs import RunRecord
from .settings import JudgeScoreConfig


JUDGE_CACHE = "judge_cache.jsonl"


def check_judged_rows(paths: list, runs: list[list[dict]]) -> None:
    """The judge reads each example's instruction: a row without one is named before anything is scored."""
    for path, rows in zip(paths, runs):
        for i, row in enumerate(rows, start=1):
            if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
                raise RecordError(path, None, f"row {i} (id {row.get('id')!r}) has no instruction for the judge to "
                                  "read (inference.py writes it)")


def _interval(boot, column: np.ndarray) -> dict:
    n = len(column)
    if not n:
        return {"value": None, "ci_low": None, "ci_high": None}
    return boot.interval(float(column.mean()), boot.sums(column) / n)


def judge_runs(cfg: JudgeScoreConfig, names: list[str], runs: list[list[dict]], boot, record: RunRecord,
               out: Path) -> tuple[dict, list[dict]]:
    """(scores.json's `judge` part, per-example columns to add to each row of per_example.jsonl)."""
    from ..teachers import RequestCache
    from ..teachers.factory import TeacherSpec, make_teacher

    teacher = make_teacher(TeacherSpec(model=cfg.judge, backend=cfg.judge_backend, batch_size=cfg.judge_batch_size,
                                       dtype=cfg.judge_dtype, device_map=cfg.judge_device_map,
                                       quantization=cfg.judge_quantization, base_url=cfg.judge_base_url,
                                       api_key_env=cfg.judge_api_key_env))
    record.models["judge"] = cfg.judge
    single, pairwise = Judging(cfg, pairwise=False), Judging(cfg, pairwise=True)
    for rubric in (single, pairwise):
        record.add_template(rubric.template.name, rubric.template.source)
    columns: list[dict] = [{} for _ in runs[0]]
    with RequestCache(out / JUDGE_CACHE) as cache:
        record.add_output("judge_cache", cache.path)
        # per-example columns carry the run's name, unprefixed for a single run as its other scores are
        graded = [_grade(single, teacher, cache, name, f"{name}." if len(names) > 1 else "", rows, columns, boot)
                  for name, rows in zip(names, runs)]
        compared = [_compare(pairwise, teacher, cache, (names[0], runs[0]), (name, rows), columns, boot)
                    for name, rows in zip(names[1:], runs[1:])]
    per_row = [entry.pop("scores") for entry in graded]
    return {"judged_by": single.provenance(teacher.name) | {"pairwise_rubric": pairwise.provenance(teacher.name)["rubric"]},
            "intervals": "mean_score: bootstrap over each run's examples with a readable verdict; score_deltas: "
                         "paired, over the examples both runs have a readable verdict for; win_rate: over the "
                         "examples with a readable outcome",
            "runs": graded,
            "score_deltas": [_score_delta(names[0], per_row[0], name, scores, boot)
                             for name, scores in zip(names[1:], per_row[1:])],
            "win_rates": compared}, columns


def _score_delta(baseline: str, base_scores: list, name: str, scores: list, boot) -> dict:
    """The run's judge score minus the baseline's on the same examples, with a paired bootstrap interval."""
    diffs = np.array([s - b for s, b in zip(scores, base_scores, strict=True) if s is not None and b is not None],
                     dtype=float)
    if not len(diffs):
        return {"run": name, "baseline": baseline, "examples": 0, "delta": None, "ci_low": None, "ci_high": None,
                "excludes_zero": None}
    return {"run": name, "baseline": baseline, "examples": len(diffs),
            **boot.delta(float(diffs.mean()), boot.sums(diffs) / len(diffs))}


def _grade(single: Judging, teacher, cache, name: str, prefix: str, rows: list[dict], columns: list[dict],
           boot) -> dict:
    requests = [single.request(row, row["prediction"], meta={"i": i}) for i, row in enumerate(rows)]
    answers, _ = single.ask(teacher, cache, requests, f"judge {name}")
    per_row: list[float | None] = [None] * len(rows)
    for request, verdict in zip(requests, single.read_all_single(teacher, requests, answers, cache), strict=True):
        column = columns[request.meta["i"]]
        column[f"{prefix}judge_score"] = verdict.score
        column[f"{prefix}judge_rationale"] = verdict.rationale or verdict.reject
        per_row[request.meta["i"]] = verdict.score
    scores = [s for s in per_row if s is not None]
    return {"name": name, "mean_score": _interval(boot, np.array(scores, dtype=float)), "rated": len(scores),
            "unreadable": len(rows) - len(scores), "scores": per_row}


def _compare(pairwise: Judging, teacher, cache, baseline: tuple[str, list[dict]], other: tuple[str, list[dict]],
             columns: list[dict], boot) -> dict:
    (a, a_rows), (b, b_rows) = baseline, other
    requests = []
    for i, (x, y) in enumerate(zip(a_rows, b_rows)):
        if x["prediction"].strip() != y["prediction"].strip():  # the same answer twice is a tie, not a question
            requests.append(pairwise.request(x, x["prediction"], y["prediction"], meta={"i": i}))
            requests.append(pairwise.request(x, y["prediction"], x["prediction"], meta={"i": i}))
    answers, _ = pairwise.ask(teacher, cache, requests, f"judge {b} vs {a}")
    read = [pairwise.read_pair(r, ans) for r, ans in zip(requests, answers, strict=True)]
    verdicts = {requests[k].meta["i"]: (read[k], read[k + 1]) for k in range(0, len(read), 2)}
    points, disagreements = [], 0
    counts = {"wins": 0, "losses": 0, "ties": 0, "identical": 0, "unreadable": 0}
    for i in range(len(a_rows)):
        if i not in verdicts:
            counts["ties"] += 1
            counts["identical"] += 1
            points.append(0.5)
            columns[i][f"{b} vs {a}"] = "tie (the same answer)"
            continue
        outcome = both_orders(*verdicts[i])  # `first` is the baseline
        disagreements += outcome.position_disagreement
        counts[{"second": "wins", "first": "losses", "tie": "ties", None: "unreadable"}[outcome.winner]] += 1
        if outcome.winner is not None:
            points.append({"second": 1.0, "first": 0.0, "tie": 0.5}[outcome.winner])
        columns[i][f"{b} vs {a}"] = {"second": b, "first": a, "tie": "tie", None: "unreadable"}[outcome.winner]
        columns[i][f"{b} vs {a}: verdicts"] = " | ".join(
            f"{order}: {v.winner or v.reject}: {v.rationale}".strip() for order, v in
            zip((f"{a} shown first", f"{b} shown first"), outcome.verdicts))
    asked = len(verdicts) - counts["unreadable"]
    return {"run": b, "baseline": a, **counts, "win_rate": _interval(boot, np.array(points, dtype=float)),
            "position_disagreements": disagreements,
            "position_bias_rate": round(disagreements / asked, 4) if asked else None}
