"""An LLM judge's verdicts: single-answer grading on declared criteria, and pairwise comparison.

A rubric is a prompt file in prompts/ (`judge_single`, `judge_pairwise`, and few-shot versions a small
judge can finish); it receives the criteria, the scale and the record(s) to judge.
Judge answer, single: one JSON object {"rationale": str, "scores": {criterion: int in 1..scale}}
(the scores may also sit at the top level), checked against `single_schema`; or labelled lines
("Reason: ...", then "<criterion>: N", or "Score: N" for the one criterion `overall`).
Judge answer, pairwise: {"rationale": str, "winner": "A" | "B" | "tie"}, or lines ("Reason: ...",
"Better: A"). Parsing never raises: an answer that cannot be read comes back with its reason.
Pairwise verdicts are asked in both orders; `both_orders` reads the pair, and a judge that prefers a
position rather than an answer gives a tie with the disagreement recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..teachers.answer_json import extract_json

OVERALL = "overall"  # the one criterion of a rubric that asks for a single score
WINNERS = ("A", "B", "tie")
PAIRWISE_SCHEMA = {
    "type": "object",
    "required": ["rationale", "winner"],
    "properties": {"rationale": {"type": "string", "minLength": 1}, "winner": {"enum": list(WINNERS)}},
}


def single_schema(criteria: list[str], scale: int) -> dict:
    """Every declared criterion scored once, as a whole number on 1..scale, with a rationale."""
    score = {"type": "integer", "minimum": 1, "maximum": scale}
    return {
        "type": "object",
        "required": ["rationale", "scores"],
        "properties": {
            "rationale": {"type": "string", "minLength": 1},
            "scores": {"type": "object", "required": list(criteria),
                       "properties": {c: score for c in criteria}, "additionalProperties": False},
        },
    }


@dataclass
class Verdict:
    """A single-answer grade: a score per criterion, their mean, and why; or why there is none."""

    scores: dict[str, int] = field(default_factory=dict)
    rationale: str = ""
    reject: str | None = None
    expected: float | None = None  # judge_score expected: the probability-weighted score (judge/expected.py)
    probabilities: dict[int, float] | None = None

    @property
    def stated(self) -> float | None:
        """The mean of the scores the judge wrote."""
        return round(sum(self.scores.values()) / len(self.scores), 4) if self.scores else None

    @property
    def score(self) -> float | None:
        """What records are kept and ranked by: the expected score where one was read, else the stated one."""
        return self.expected if self.expected is not None else self.stated

    def as_dict(self) -> dict:
        extra = {"stated_score": self.stated, "score_probabilities": self.probabilities} if self.expected is not None else {}
        return {"scores": self.scores, "score": self.score, "rationale": self.rationale, **extra}


@dataclass
class PairVerdict:
    winner: str | None = None  # "A", "B" or "tie", in the order the answers were shown
    rationale: str = ""
    reject: str | None = None


def _validate(obj: object, schema: dict) -> str | None:
    import jsonschema

    try:
        jsonschema.validate(obj, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "top level"
        return f"schema: {where}: {e.message[:120]}"
    except RecursionError:
        return "schema: nested too deeply"
    return None


def _whole_number(value: object) -> object:
    """4, 4.0 and "4" are the score 4 (judges write all three); anything else is left for the schema."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,3}(\.0+)?\s*(/\s*\d{1,3})?\s*", value):
        return int(float(value.split("/")[0]))
    return value


def parse_single(answer: str, criteria: list[str], scale: int) -> Verdict:
    """A single-answer verdict from a judge's answer, JSON or labelled lines; never raises."""
    obj, problem = extract_json(answer)
    if problem is None:
        if isinstance(obj, dict) and "scores" not in obj and any(c in obj for c in criteria):
            obj = {"rationale": obj.get("rationale"), "scores": {c: obj[c] for c in criteria if c in obj}}
        if isinstance(obj, dict) and isinstance(obj.get("scores"), dict):
            obj = {**obj, "scores": {k: _whole_number(v) for k, v in obj["scores"].items()}}
        if reason := _validate(obj, single_schema(criteria, scale)):
            return Verdict(reject=reason)
        if not obj["rationale"].strip():
            return Verdict(reject="empty rationale")
        return Verdict(scores={c: obj["scores"][c] for c in criteria}, rationale=obj["rationale"].strip())
    if problem == "empty answer":
        return Verdict(reject=problem)
    return _single_lines(answer, criteria, scale) if "{" not in answer else Verdict(reject=problem)


_LABELLED = re.compile(r"^[\s*#>-]*([A-Za-z][\w -]{0,40}?)\s*\**\s*:\**\s*(.*)$")


def _labelled_lines(answer: str) -> list[tuple[str, str]]:
    """(label, text) per labelled line; a line without a label continues the one above. A second Reason
    is the judge writing its next example: its answer ends there."""
    fields: list[list[str]] = []
    for line in answer.splitlines():
        match = _LABELLED.match(line)
        if match:
            label = re.sub(r"[\s-]+", "_", match.group(1).strip().lower())
            if label in ("reason", "rationale") and any(f[0] in ("reason", "rationale") for f in fields):
                break
            fields.append([label, match.group(2).strip()])
        elif fields and line.strip():
            fields[-1][1] = f"{fields[-1][1]} {line.strip()}"
    return [(label, text) for label, text in fields]


def _single_lines(answer: str, criteria: list[str], scale: int) -> Verdict:
    fields = dict(reversed(_labelled_lines(answer)))  # the first of a repeated label counts
    rationale = (fields.get("reason") or fields.get("rationale") or "").strip()
    names = {c: c for c in criteria} | ({"score": OVERALL, "rating": OVERALL} if criteria == [OVERALL] else {})
    scores = {}
    for label, criterion in names.items():
        if label in fields and criterion not in scores:
            match = re.match(r"\s*\**\s*(\d{1,3})(?!\d)(?:\.0+)?\s*(?:/\s*\d+)?", fields[label])
            if not match:
                return Verdict(reject=f"{label}: not a whole number: {fields[label][:40]!r}")
            scores[criterion] = int(match.group(1))
    if not scores:
        return Verdict(reject="no JSON object or score lines in the answer")
    if missing := [c for c in criteria if c not in scores]:
        return Verdict(reject=f"no score for {missing[:5]}")
    if out := [c for c, s in scores.items() if not 1 <= s <= scale]:
        return Verdict(reject=f"score outside 1..{scale} for {out[:5]}")
    if not rationale:
        return Verdict(reject="no Reason line")
    return Verdict(scores={c: scores[c] for c in criteria}, rationale=rationale)


def parse_pairwise(answer: str) -> PairVerdict:
    """A pairwise verdict from a judge's answer, JSON or labelled lines; never raises."""
    obj, problem = extract_json(answer)
    if problem is None:
        if isinstance(obj, dict) and isinstance(obj.get("winner"), str):
            obj = {**obj, "winner": _winner(obj["winner"]) or obj["winner"]}
        if reason := _validate(obj, PAIRWISE_SCHEMA):
            return PairVerdict(reject=reason)
        if not obj["rationale"].strip():
            return PairVerdict(reject="empty rationale")
        return PairVerdict(winner=obj["winner"], rationale=obj["rationale"].strip())
    if problem == "empty answer" or "{" in answer:
        return PairVerdict(reject=problem)
    fields = dict(reversed(_labelled_lines(answer)))
    said = next((fields[k] for k in ("better", "winner", "verdict") if k in fields), None)
    if said is None:
        return PairVerdict(reject="no JSON object or Better line in the answer")
    winner = _winner(said)
    if winner is None:
        return PairVerdict(reject=f"the Better line names neither A, B nor a tie: {said[:40]!r}")
    rationale = (fields.get("reason") or fields.get("rationale") or "").strip()
    if not rationale:
        return PairVerdict(reject="no Reason line")
    return PairVerdict(winner=winner, rationale=rationale)


def _winner(text: str) -> str | None:
    """'A', 'Answer B', '**B**', 'tie', 'both equally' -> A, B or tie; anything else -> None."""
    words = re.sub(r"[^a-z ]", " ", text.lower()).split()
    if not words:
        return None
    if "tie" in words or words[0] in ("equal", "equally", "both", "neither", "same"):  # "it's a tie" is no A
        return "tie"
    for word in words[:3]:
        if word in ("a", "b"):
            return word.upper()
    return None


@dataclass
class PairOutcome:
    """Both orders of one comparison read together: which answer won, if either."""

    winner: str | None  # "first", "second" or "tie" (in the caller's order); None when a verdict is unreadable
    position_disagreement: bool  # the two orders named different answers: the judge followed the position
    verdicts: tuple[PairVerdict, PairVerdict]


def both_orders(shown_first: PairVerdict, shown_swapped: PairVerdict) -> PairOutcome:
    """`shown_first` saw (first, second) as (A, B), `shown_swapped` saw them as (B, A). An answer wins only
    when both orders pick it (MT-Bench's conservative reading); anything else is a tie, and opposite picks
    are also a position disagreement."""
    verdicts = (shown_first, shown_swapped)
    if shown_first.winner is None or shown_swapped.winner is None:
        return PairOutcome(None, False, verdicts)
    as_first = {"A": "first", "B": "second", "tie": "tie"}[shown_first.winner]
    as_swapped = {"A": "second", "B": "first", "tie": "tie"}[shown_swapped.winner]
    if as_first == as_swapped:
        return PairOutcome(as_first, False, verdicts)
    return PairOutcome("tie", "tie" not in (as_first, as_swapped), verdicts)
