"""Task `judge`: Alpaca records rated by the run's teacher as a judge (`tunelab.judge`); those reaching a
threshold are kept with their scores. Every verdict goes through the request cache like any teacher
answer, so a killed run pays again only for what was in flight.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from ..errors import ConfigError, RecordError
from ..judge import Judging, Verdict
from ..paths import resolve_input
from ..records import alpaca_to_chat, read_records, write_jsonl
from ..teachers import TeacherRequest
from .builds import BuildContext, reject_counts, write_formats
from .settings import JudgeConfig

def record_id(record: dict, path: Path, index: int) -> str:
    given = record.get("id")
    return str(given) if given not in (None, "") else f"{path.stem}:{index + 1}"


class JudgeBuild:
    """Task `judge`: every record rated on the rubric's criteria; those whose mean score reaches
    judge_threshold are kept, each with its scores; the rest, and unreadable verdicts, are reject rows."""

    name = "judge"
    SAME_RUN = ("self_instruct", "moderation_qa")  # what it rates when judge_data is not given

    def __init__(self, cfg: JudgeConfig, tasks: list[str], backend: str | None = None):
        self.cfg = cfg
        self.judging = Judging(cfg, pairwise=False, backend=backend)
        self.template, self.params = self.judging.template, self.judging.params
        if cfg.judge_threshold > cfg.judge_scale:
            raise ConfigError(f"judge_threshold {cfg.judge_threshold:g} is above judge_scale {cfg.judge_scale}: "
                              "nothing could be kept")
        self.paths = [resolve_input(cfg.judge_data)] if cfg.judge_data else None
        self.same_run = [t for t in self.SAME_RUN if t in tasks]
        if self.paths is None and not self.same_run:
            raise ConfigError("task judge needs records: give --judge_data, or run it with self_instruct or "
                              "moderation_qa to rate what they keep")
        self.records = self._read(self.paths) if self.paths else None

    @staticmethod
    def _read(paths: list[Path]) -> list[dict]:
        records = []
        for path in paths:
            read = read_records(path, "alpaca")
            records += [r.data | {"id": record_id(r.data, path, i)} for i, r in enumerate(read)]
        if not records:
            raise RecordError(paths[0], None, "holds no records to judge")
        return records

    def prepare(self) -> None:
        pass

    def requests(self) -> list[TeacherRequest]:
        return [self.judging.request(r, r["output"], meta={"record": r}) for r in self.records or []]

    def dry_run_note(self) -> dict:
        if self.records is None:
            return {"note": f"rates what this run's {' and '.join(self.same_run)} keep: one request per record"}
        return {}

    def run(self, ctx: BuildContext) -> dict:
        if self.records is None:  # the same run's builds have written their records by now
            self.paths = [p for t in self.same_run if (p := ctx.out / f"{t}.alpaca.json").exists()]
            self.records = [r.data for p in self.paths for r in read_records(p, "alpaca")]
        for path in self.paths:
            ctx.record.add_input(f"judged:{path.name}", path)
        ctx.record.add_template(self.template.name, self.template.source)
        started = time.monotonic()
        requests = self.requests()
        answers, stats = self.judging.ask(ctx.teacher, ctx.cache, requests, "judge")
        judged_by = self.judging.provenance(ctx.teacher.name)
        kept, rejects, scores = [], [], []
        verdicts = self.judging.read_all_single(ctx.teacher, requests, answers, ctx.cache)
        for request, answer, verdict in zip(requests, answers, verdicts, strict=True):
            record = request.meta["record"]
            cached_at = {"request_key": request.meta["request_key"]}
            if verdict.reject:
                rejects.append({"stage": "judge_parse", "reason": verdict.reject, "id": record["id"],
                                "raw": answer.text, **cached_at})
                continue
            scores.append(verdict)
            judged = record | {"judge": verdict.as_dict() | cached_at}
            if verdict.score < self.cfg.judge_threshold:
                rejects.append({"stage": "judge_threshold", "reason": f"score below {self.cfg.judge_threshold:g}",
                                **judged})
                continue
            kept.append(judged | {"provenance": record.get("provenance", {}) | {"judged_by": judged_by}})
        write_formats(ctx.out, "judged", kept, ctx.record, alpaca_to_chat)
        write_jsonl(ctx.out / "judged.rejects.jsonl", rejects)
        ctx.record.add_output("judged_rejects", ctx.out / "judged.rejects.jsonl")
        return {"records": len(requests), "rated": len(scores), "kept": len(kept), "rejected": len(rejects),
                **score_summary(scores), **stats, "seconds": round(time.monotonic() - started, 2),
                "judged_by": judged_by, "rejected_by_stage": reject_counts(rejects, "stage"),
                "reject_reasons": reject_counts(rejects, "reason")}


def score_summary(verdicts: list[Verdict]) -> dict:
    """Mean score, per-criterion means and how many records got each (rounded) mean score."""
    if not verdicts:
        return {"mean_score": None}
    criteria = list(verdicts[0].scores)
    return {"mean_score": round(sum(v.score for v in verdicts) / len(verdicts), 4),
            "mean_by_criterion": {c: round(sum(v.scores[c] for v in verdicts) / len(verdicts), 4) for c in criteria},
            "score_counts": dict(sorted(Counter(round(v.score) for v in verdicts).items()))}
