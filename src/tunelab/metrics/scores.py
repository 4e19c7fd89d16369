"""What evaluate scored, typed: text scores, an encoder classifier's scores, an LLM's answers scored.

scores.json keeps its plain layout (RESULTS.md and people read it); these types say which layout a
file holds, from its "source" key, so that readers (the console summary, the report, result runs)
ask the type instead of guessing from which keys happen to be there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .classification import headline

# "+/-": the console summary is printed as ASCII JSON, where "±" would read "\u00b1"
_ASCII_PLUS_MINUS = "+/-"
_TEXT_DIGITS = {"bleu": 2, "rouge_l_f1": 4, "bertscore_f1": 4}


@dataclass
class Scores:
    """One scores.json. `data` is the file's content, unchanged."""

    data: dict
    source: ClassVar[str]

    @property
    def examples(self) -> int:
        return self.data["examples"]

    @property
    def plots(self) -> dict[str, str]:
        """Plot name -> file name, for the plots written beside scores.json."""
        plots = self.data.get("plots")
        return {str(k): str(v) for k, v in plots.items() if isinstance(v, str)} if isinstance(plots, dict) else {}

    def summary(self) -> dict:
        """The few numbers printed when a run ends."""
        raise NotImplementedError


@dataclass
class TextScores(Scores):
    """BLEU, ROUGE-L and BERTScore of one or more runs answering the same examples, the first the baseline."""

    source: ClassVar[str] = "text"

    @property
    def runs(self) -> list[dict]:
        return self.data["runs"]

    @property
    def comparisons(self) -> list[dict]:
        return self.data["comparisons"]

    @property
    def baseline(self) -> str:
        return self.data["baseline"]

    @property
    def judge(self) -> dict | None:
        """The judge's part (evaluate --judge): runs' mean scores, paired score deltas and win rates."""
        return self.data.get("judge")

    def summary(self) -> dict:
        """Each run's scores as 'value [low, high]', and each delta against the baseline ('*': its CI excludes 0)."""
        def text(value: float | None, low, high, d: int, star: bool = False, sign: str = "") -> str:
            if value is None:
                return "n/a"
            return (f"{value:{sign}.{d}f}" + (f" [{low:{sign}.{d}f}, {high:{sign}.{d}f}]" if low is not None else "")
                    + (" *" if star else ""))

        out = {"examples": self.examples,
               "empty_predictions": {r["name"]: r["empty_predictions"] for r in self.runs},
               "scores [95% CI]": {r["name"]: {m: text(r[m]["value"], r[m]["ci_low"], r[m]["ci_high"], d)
                                               for m, d in _TEXT_DIGITS.items()} for r in self.runs}}
        if self.comparisons:
            deltas = out[f"delta vs {self.baseline} [95% CI], * = excludes 0"] = {}
            for c in self.comparisons:
                deltas.setdefault(c["run"], {})[c["metric"]] = text(
                    c["delta"], c["ci_low"], c["ci_high"], _TEXT_DIGITS[c["metric"]], bool(c["excludes_zero"]))
        if judge := self.judge:
            shown = out["judge"] = {"score [95% CI]": {
                r["name"]: text(r["mean_score"]["value"], r["mean_score"]["ci_low"], r["mean_score"]["ci_high"], 2)
                + f" ({r['rated']} rated, {r['unreadable']} unreadable)" for r in judge["runs"]}}
            if judge.get("score_deltas"):
                shown[f"score delta vs {self.baseline}"] = {
                    d["run"]: text(d["delta"], d["ci_low"], d["ci_high"], 2, bool(d["excludes_zero"]), "+")
                    for d in judge["score_deltas"]}
            if judge.get("win_rates"):
                shown[f"win rate vs {self.baseline} (ties half)"] = {
                    w["run"]: text(w["win_rate"]["value"], w["win_rate"]["ci_low"], w["win_rate"]["ci_high"], 2)
                    + f" ({w['wins']} wins, {w['losses']} losses, {w['ties']} ties; position bias "
                    + (f"{w['position_bias_rate']:.0%})" if w["position_bias_rate"] is not None else "n/a)")
                    for w in judge["win_rates"]}
        return out


@dataclass
class ClassifierScores(Scores):
    """Per-label precision/recall/F1, ROC/PR-AUC and intervals of an encoder classifier's probabilities."""

    source: ClassVar[str] = "classifier"

    @property
    def labels(self) -> list[str]:
        return self.data["labels"]

    @property
    def problem_type(self) -> str:
        return self.data["problem_type"]

    @property
    def main_metric(self) -> str:
        return "accuracy" if self.problem_type == "single_label" else "subset_accuracy"

    @property
    def tuned_on_dev(self) -> dict | None:
        return self.data.get("tuned_on_dev")

    @property
    def comparison(self) -> list[dict] | None:
        """The scored model beside its k-shot baselines, one row per system; None without baselines."""
        return self.data.get("comparison")

    def compared_numbers(self) -> dict[str, Any]:
        """The numbers a comparison with k-shot baselines shows: a classifier never refuses, so both views
        (refusals counted as wrong, refusals left out) are its own scores."""
        return self._compared(headline(self.data), 0.0, headline(self.data))

    def _compared(self, numbers: dict, refusal_rate, excluded: dict | None) -> dict[str, Any]:
        main = self.main_metric
        return {"refusal_rate": refusal_rate, main: numbers[main], "micro_f1": numbers["micro_f1"],
                "macro_f1": numbers["macro_f1"],
                "macro_f1_refusals_excluded": excluded["macro_f1"] if excluded else None}

    def summary(self) -> dict:
        data = self.data
        out = {"examples": self.examples, **({"accuracy": data["accuracy"]} if "accuracy" in data else {}),
               "micro_f1": data["micro"]["f1"], "macro_f1": data["macro"]["f1"],
               "mean_roc_auc": data["mean_roc_auc"],
               "per_label_f1": {k: round(v["f1"], 3) for k, v in data["per_label"].items()}}
        out |= self._summary_extra()
        if self.tuned_on_dev:
            out["macro_f1_thresholds_tuned_on_dev"] = self.tuned_on_dev["macro"]["f1"]
        if self.comparison:
            out["comparison"] = {r["system"]: {k: v.replace("±", _ASCII_PLUS_MINUS) for k, v in r["text"].items()}
                                 for r in self.comparison}
        return out

    def _summary_extra(self) -> dict:
        return {}


@dataclass
class AnswerScores(ClassifierScores):
    """An LLM's answers in words, parsed into labels: each answer's outcome (labels, none, refusal,
    unparseable), the scores with refusals counted as wrong, and with refusals left out."""

    source: ClassVar[str] = "llm_answers"

    @property
    def refusals_excluded(self) -> dict:
        return self.data["refusals_excluded"]

    @property
    def scored_without_refusals(self) -> bool:
        """False when every answer was a refusal: the view without them holds no scores."""
        return "per_label" in self.refusals_excluded

    def compared_numbers(self) -> dict[str, Any]:
        excluded = headline(self.refusals_excluded) if self.scored_without_refusals else None
        return self._compared(headline(self.data), self.data["refusal_rate"], excluded)

    def _summary_extra(self) -> dict:
        excluded = self.refusals_excluded
        return {"outcomes": self.data["outcomes"], "scored_as": "refusals counted as wrong",
                "macro_f1_refusals_excluded": excluded["macro"]["f1"] if "macro" in excluded else None}


SCORE_TYPES: dict[str, type[Scores]] = {t.source: t for t in (TextScores, ClassifierScores, AnswerScores)}


def read_scores(data: dict) -> Scores:
    """The typed view of a scores.json's content. Text scores written before they named their source
    have none: a file without one is text."""
    source = data.get("source", TextScores.source)
    if source not in SCORE_TYPES:
        raise ValueError(f"unknown scores source {source!r} (known: {', '.join(SCORE_TYPES)})")
    return SCORE_TYPES[source](data)
