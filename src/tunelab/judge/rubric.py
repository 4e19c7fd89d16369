"""A rubric and how it is asked: the judge's settings, its requests (chat or a few-shot text to continue)
and the verdicts read from its answers. The judge is any teacher backend, answering greedily.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from ..errors import ConfigError
from ..prompts import load_template
from ..teachers.base import SamplingParams, TeacherRequest, TeacherResponse
from . import verdicts as judge


@dataclass
class JudgeRubricConfig:
    """The rubric and how the judge is asked (generate's judge and preferences tasks, evaluate's judge)."""

    judge_template: str = field(default="judge_single", metadata={
        "help": "Single-answer rubric in prompts/ (judge_single_fewshot for small judges, with request completion)."})
    judge_pairwise_template: str = field(default="judge_pairwise", metadata={
        "help": "Pairwise rubric in prompts/ (judge_pairwise_fewshot for small judges, with request completion)."})
    judge_request: str = field(default="chat", metadata={
        "help": "chat: the rubric as one user turn, a JSON verdict; completion: the judge continues a few-shot "
                "rubric and stops at a blank line."})
    judge_criteria: list[str] = field(default_factory=lambda: ["instruction_following", "correctness", "harmlessness"],
        metadata={"help": "What the judge scores, each on 1..judge_scale; [overall] for one score."})
    judge_scale: int = field(default=5, metadata={"range": (2, 10), "help": "The top score (1 is the bottom)."})
    judge_max_new_tokens: int = field(default=256, metadata={"range": (1, None), "help": "Verdict length cap."})
    judge_score: str = field(default="stated", metadata={
        "help": "stated: the score the judge writes; expected: the probability-weighted mean of every score as its "
                "next words after its rationale (G-Eval's way: ranks answers a small judge scores alike). expected "
                "needs an in-process judge, request completion and criteria [overall]."})


REQUESTS = ("chat", "completion")


class Judging:
    """One rubric (single-answer or pairwise) and how its requests are sent and read."""

    def __init__(self, cfg: JudgeRubricConfig, *, pairwise: bool, backend: str | None = None):
        if cfg.judge_request not in REQUESTS:
            raise ConfigError(f"judge_request must be chat or completion, got {cfg.judge_request!r}")
        criteria = [c.strip() for c in cfg.judge_criteria]
        if not criteria or len(set(criteria)) != len(criteria) or not all(re.fullmatch(r"[A-Za-z]\w*", c) for c in criteria):
            raise ConfigError(f"judge_criteria must name each criterion once, in letters, digits and _ (a JSON key "
                              f"and a line label), got {cfg.judge_criteria}")
        if cfg.judge_score not in ("stated", "expected"):
            raise ConfigError(f"judge_score must be stated or expected, got {cfg.judge_score!r}")
        if cfg.judge_score == "expected" and (cfg.judge_request != "completion" or criteria != [judge.OVERALL]):
            raise ConfigError("judge_score expected reads the score after the judge's Reason line: it needs "
                              "judge_request completion and judge_criteria overall (the few-shot rubrics)")
        if cfg.judge_score == "expected" and backend not in (None, "transformers"):
            raise ConfigError(f"judge_score expected reads the judge's token probabilities: it needs the judge in this "
                              f"process (backend transformers), not {backend}")
        self.cfg, self.criteria, self.pairwise = cfg, criteria, pairwise
        self.template = load_template(cfg.judge_pairwise_template if pairwise else cfg.judge_template)
        # Greedy, so no seed of the run's keys a verdict (another --seed pays for nothing again). A continued
        # rubric has no end of turn to stop at: its verdict ends at the first blank line.
        self.params = SamplingParams(max_new_tokens=cfg.judge_max_new_tokens, temperature=0.0, seed=0,
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

    def read_all_single(self, teacher, requests: list[TeacherRequest], answers: list[TeacherResponse],
                        cache=None) -> list[judge.Verdict]:
        """Every single-answer verdict, with its expected score where judge_score is expected (with `cache`,
        the judge's RequestCache, its probabilities are kept beside it: a rerun reads them back)."""
        verdicts = [self.read_single(r, a) for r, a in zip(requests, answers, strict=True)]
        if self.cfg.judge_score != "expected":
            return verdicts
        from .expected import expectation, expected_probabilities, score_context

        readable = [(v, score_context(r.prompt, a.text)) for v, r, a in zip(verdicts, requests, answers) if not v.reject]
        readable = [(v, c) for v, c in readable if c is not None]
        for (verdict, _), probabilities in zip(readable, expected_probabilities(
                teacher, [c for _, c in readable], self.cfg.judge_scale, cache), strict=True):
            verdict.probabilities = {k: round(p, 4) for k, p in probabilities.items()}
            verdict.expected = expectation(probabilities)
        return verdicts

    def read_pair(self, request: TeacherRequest, answer: TeacherResponse) -> judge.PairVerdict:
        text = self._answer_text(request, answer)
        if text is None:
            return judge.PairVerdict(reject=f"judge refused the request: {answer.error}")
        return _length_cut(judge.parse_pairwise(text), answer, judge.PairVerdict)

    def provenance(self, teacher_name: str) -> dict:
        return {"judge": teacher_name, "rubric": f"{self.template.name}@{self.template.version}",
                "criteria": self.criteria, "scale": self.cfg.judge_scale, "sampling": asdict(self.params)}

    def ask(self, teacher, cache, requests: list[TeacherRequest], desc: str) -> tuple[list[TeacherResponse], dict]:
        """Every request answered, through `cache` (a RequestCache): a rerun pays only for what it lacks."""
        from ..teachers.cache import RequestProgress, run_requests

        progress = RequestProgress(len(requests), desc)
        try:
            return run_requests(teacher, requests, self.params, cache, template_version=self.template.version,
                                progress=progress)
        finally:
            progress.close()


def _length_cut(verdict, answer: TeacherResponse, kind):
    if verdict.reject and answer.finish_reason == "length":  # raise judge_max_new_tokens, not a format problem
        return kind(reject="cut off by the length limit (judge_max_new_tokens)")
    return verdict
