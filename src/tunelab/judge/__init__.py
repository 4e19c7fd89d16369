"""An LLM judge: rubrics in prompts/, requests to any teacher backend, verdicts read and checked."""

from .rubric import Judging, JudgeRubricConfig
from .verdicts import OVERALL, WINNERS, PairOutcome, PairVerdict, Verdict, both_orders, parse_pairwise, parse_single

__all__ = ["OVERALL", "WINNERS", "Judging", "JudgeRubricConfig", "PairOutcome", "PairVerdict", "Verdict", "both_orders",
           "parse_pairwise", "parse_single"]
