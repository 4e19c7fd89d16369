"""The judge as a build: `Judging` turns records into judge requests and answers into verdicts (shared
with the preferences task), and task `judge` rates Alpaca records and keeps those reaching a threshold.

The judge is the run's teacher, answering greedily with its own length cap; every verdict goes through
the request cache like any teacher answer, so a killed run pays again only for what was in flight.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from ..errors import ConfigError, RecordError
from ..paths import resolve_input
from ..prompts import load_template
from ..records import alpaca_to_chat, read_records, write_jsonl
from ..teachers import RequestProgress, SamplingParams, TeacherRequest, TeacherResponse, run_requests
from . import judge
from .builds import BuildContext, reject_counts, write_formats
from .settings import JudgeConfig

REQUESTS = ("chat", "completion")


class Judging:
    """One rubric (single-answer or pairwise) and how its requests are sent and read."""

    def __init__(self, cfg: JudgeConfig, seed: int, *, pairwise: bool):
        if cfg.judge_request not in REQUESTS:
            raise ConfigError(f"judge_request must be chat or completion, got {cfg.judge_request!r}")
        criteria = [c.strip() for c in cfg.judge_criteria]
        if not criteria or len(set(criteria)) != len(criteria) or not all(re.fullmatch(r"[A-Za-z]\w*", c) for c in criteria):
            raise ConfigError(f"judge_criteria must name each criterion once, in letters, digits and _ (a JSON key "
                              f"and a line label), got {cfg.judge_criteria}")
        self.cfg, self.criteria, self.pairwise = cfg, criteria, pairwise
        self.template = load_template(cfg.judge_pairwise_template if pairwise else cfg.judge_template)
        # A continued rubric has no end of turn to stop at: its verdict ends at the first blank line.
        self.params = SamplingParams(max_new_tokens=cfg.judge_max_new_tokens, temperature=0.0, seed=seed,
                                     stop=("\n\n",) if cfg.judge_request == "completion" else ())

    def request(self, record: dict, *answers: str, meta: dict) -> TeacherRequest:
        named = {"answer_a": answers[0], "answer_b": answers[1]} if self.pairwise else {"answer": answers[0]}
        text = self.template.render(criteria=self.criteria, scale=self.cfg.judge_scale,
                                    instruction=record["instruction"], input=record.get("input", ""), **named).strip()
        if self.cfg.judge_request == "completion":
            # the verdict continues the rubric's last line ("Reason:"): it is read from there
            return TeacherRequest(prompt=text, meta=meta | {"answer_prefix": text.rsplit("\n", 1)[-1]})
        return TeacherRequest(messages=[{"role": "user", "content": text}], meta=meta)

    def _answer_text(self, request: TeacherRequest, answer: TeacherResponse) -> str | None:
        """The verdict's text, or None when the judge gave none (its error is then the reason)."""
        return None if answer.error else request.meta.get("answer_prefix", "") + answer.text

    def read_single(self, request: TeacherRequest, answer: TeacherResponse) -> judge.Verdict:
        text = self._answer_text(request, answer)
        if text is None:
            return judge.Verdict(reject=f"judge refused the request: {answer.error}")
        verdict = judge.parse_single(text, self.criteria, self.cfg.judge_scale)
        return _length_cut(verdict, answer, judge.Verdict)

    def read_pair(self, request: TeacherRequest, answer: TeacherResponse) -> judge.PairVerdict:
        text = self._answer_text(request, answer)
        if text is None:
            return judge.PairVerdict(reject=f"judge refused the request: {answer.error}")
        return _length_cut(judge.parse_pairwise(text), answer, judge.PairVerdict)

    def provenance(self, teacher_name: str) -> dict:
        return {"judge": teacher_name, "rubric": f"{self.template.name}@{self.template.version}",
                "criteria": self.criteria, "scale": self.cfg.judge_scale, "sampling": asdict(self.params)}

    def ask(self, ctx: BuildContext, requests: list[TeacherRequest], desc: str) -> tuple[list[TeacherResponse], dict]:
        progress = RequestProgress(len(requests), desc)
        try:
            return run_requests(ctx.teacher, requests, self.params, ctx.cache, template_version=self.template.version,
                                progress=progress)
        finally:
            progress.close()


def _length_cut(verdict, answer: TeacherResponse, kind):
    if verdict.reject and answer.finish_reason == "length":  # raise judge_max_new_tokens, not a format problem
        return kind(reject="cut off by the length limit (judge_max_new_tokens)")
    return verdict


def record_id(record: dict, path: Path, index: int) -> str:
    given = record.get("id")
    return str(given) if given not in (None, "") else f"{path.stem}:{index + 1}"


class JudgeBuild:
    """Task `judge`: every record rated on the rubric's criteria; those whose mean score reaches
    judge_threshold are kept, each with its scores; the rest, and unreadable verdicts, are reject rows."""

    name = "judge"
    SAME_RUN = ("self_instruct", "moderation_qa")  # what it rates when judge_data is not given

    def __init__(self, cfg: JudgeConfig, tasks: list[str], seed: int):
        self.cfg = cfg
        self.judging = Judging(cfg, seed, pairwise=False)
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
        answers, stats = self.judging.ask(ctx, requests, "judge")
        judged_by = self.judging.provenance(ctx.teacher.name)
        kept, rejects, scores = [], [], []
        for request, answer in zip(requests, answers, strict=True):
            record = request.meta["record"]
            verdict = self.judging.read_single(request, answer)
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


def score_summary(verdicts: list[judge.Verdict]) -> dict:
    """Mean score, per-criterion means and how many records got each (rounded) mean score."""
    if not verdicts:
        return {"mean_score": None}
    criteria = list(verdicts[0].scores)
    return {"mean_score": round(sum(v.score for v in verdicts) / len(verdicts), 4),
            "mean_by_criterion": {c: round(sum(v.scores[c] for v in verdicts) / len(verdicts), 4) for c in criteria},
            "score_counts": dict(sorted(Counter(round(v.score) for v in verdicts).items()))}
