"""An LLM's classification answer, in words, read back into labels.

The tuned moderation student answers in a fixed format ("toxic, insult" or "none";
prompts/moderation_instruction.jinja2), but base models, few-shot baselines and half-tuned students
answer in prose, bullets, other casing and order, with quotes and markdown, or refuse outright
("I cannot classify this content..."). The study this reproduces saw its base model refuse toxic
inputs until tuned, so a refusal is its own outcome here: counted and reported, never silently
scored as "none" or as a wrong label set.

How an answer is read, in order:
1. Clean lists win. The answer is cut into segments (lines, sentences, the text after a colon,
   bullets and numbering stripped); a segment that holds nothing but category names and separators
   (`,` `;` `/` `|` `&` `+` `and` `or`, quotes, markdown) is a clear answer. The labels of every such
   segment are the answer; a clean segment that is only the none label (or "none", "n/a", ...)
   makes the answer "none" when no clean segment names a label. A segment listing every category
   beside another clean answer is the prompt's category list repeated, and is left out.
2. Else a refusal phrase ("I cannot", "I can't", "As an AI", "I'm not able to", "not appropriate",
   "I'm sorry", ...) makes it a refusal, even when categories are named in the prose around it
   (a refusal usually repeats the words it refuses over: "...content that contains hate speech").
3. Else category names in prose are the answer, except those negated in their clause ("not toxic",
   "non-toxic", "no threats", "I don't think it is obscene"); inflections count ("insulting",
   "threatening", "toxicity").
4. Else a none phrase ("none", "no category applies", "does not fit any of the categories"), or
   only negated categories, is "none"; anything else is unparseable, with the reason.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

OUTCOMES = ("labels", "none", "refusal", "unparseable")

# Written answers mean "no category" with these as well as with the taxonomy's own none label.
NONE_WORDS = ("none", "n/a", "nothing", "no category", "no categories", "no label", "no labels",
              "none of the above", "none of them", "not applicable")
# Phrasings of chat models that decline a task (Llama-2-chat, Gemma, Mistral, GPT-style).
REFUSAL_PATTERNS = (
    r"\bi (?:cannot|can ?not|can't|won't|will not|am unable to|am not able to|must (?:respectfully )?decline|"
    r"refuse to|am not comfortable|do not feel comfortable|don't feel comfortable)\b",
    r"\bi'm (?:unable to|not able to|not comfortable|afraid i (?:can't|cannot))\b",
    r"\b(?:i'm|i am) (?:just |only )?an? (?:ai|language model|large language model|assistant)\b",
    r"\bas an? (?:ai|language model|large language model|ai language model|responsible ai|assistant)\b",
    r"\bnot appropriate\b",
    r"\binappropriate for me\b",
    r"\b(?:i'm|i am) sorry\b",
    r"\bi apologi[sz]e\b",
    r"\b(?:against|violates?|not within) my (?:programming|guidelines|principles|polic(?:y|ies)|ethical)",
    r"\bethical guidelines\b",
    r"\b(?:unable|not able) to (?:assist|help|comply|classify|provide|fulfill|categori[sz]e|label|engage)\b",
    r"\bcan(?:not|'t| not) (?:assist|help|comply|fulfill|classify|categori[sz]e|label|engage|provide)\b",
)
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS))
# Prose that says no category applies.
_NONE_PROSE = re.compile(
    r"\bno (?:\w+ )?(?:categor(?:y|ies)|labels?|class(?:es)?) (?:\w+ )?(?:appl|fit|match|is|are)"
    r"|\b(?:not?|n't) (?:\w+ ){0,4}any (?:\w+ ){0,2}(?:of (?:the|these|those) )?(?:categor|label|class)"
    r"|\bnone of\b")
# Negation scope: from a negator to the end of its clause.
_CLAUSE_END = re.compile(r"[.;:!?\n]|\b(?:but|however|though|although|yet|whereas|except)\b")
_NEGATOR = re.compile(r"(?:\b(?:not|never|neither|nor|without)\b|n't\b)(?! (?:only|just|merely)\b)")
_ADJACENT_NEGATOR = re.compile(r"\b(?:no|non|free of|lacks?|lacking|zero)\s*$")
# Endings of a category word in prose: "insulting", "threatening", "toxicity", "hateful".
_SUFFIX = r"(?:s|es|ed|ing|ening|ity|ities|ful|ive|ness)?"
_BULLET = re.compile(r"^\s*(?:[-*•·‣▪>]+|\(?\d{1,3}[.)]|\(?[a-z]\))\s+")
# What may stand between the names of a clean list.
_FILLER = re.compile(r"^(?:[\s,;/|&+.!?\"'`*()\[\]{}<>=#~-]|\band\b|\bor\b)*$")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class LabelAnswer:
    """What an answer says: `outcome` one of OUTCOMES, the labels named (taxonomy order; empty unless
    outcome is "labels"), and why it was read that way."""

    outcome: str
    labels: tuple[str, ...] = ()
    reason: str = ""


def _normalize(text: str) -> str:
    """Lower case, typographic quotes made plain, `_`, `-` and runs of spaces made one space."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.translate(str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "`": "'"}))
    return re.sub(r"[_\-\s]+", " ", text).strip()


def _key(name: str) -> str:
    return _normalize(name)


class LabelParser:
    """Reads answers against one label set (compiled once; `parse_label_answer` caches these)."""

    def __init__(self, labels: tuple[str, ...], none_label: str | None = "none"):
        self.labels = tuple(labels)
        self.none_label = none_label or "none"
        keys = {}
        for label in self.labels:
            k = _key(label)
            if k and k not in keys:
                keys[k] = label
        self.by_key = keys
        none_keys = {_key(w) for w in (*NONE_WORDS, none_label or "none")} - set(keys) - {""}
        self.none_keys = none_keys
        # Longest first, so "severe toxic" is taken whole before "toxic" could match inside it.
        alternatives = sorted(keys, key=len, reverse=True)
        none_alts = sorted(none_keys, key=len, reverse=True)
        word = r"(?<![a-z0-9])(?:{}){}(?![a-z0-9])"
        self.clean_label = re.compile(word.format("|".join(map(re.escape, alternatives)), "s?")) if keys else None
        self.prose_label = re.compile(word.format("|".join(map(re.escape, alternatives)), _SUFFIX)) if keys else None
        # (an empty alternation would match everywhere: "(?!)" matches nowhere)
        self.none_word = re.compile(word.format("|".join(map(re.escape, none_alts)), "") if none_alts else "(?!)")
        self.order = {label: i for i, label in enumerate(self.labels)}
        self._longest_first = sorted(keys, key=len, reverse=True)

    def _label_of(self, matched: str, allow_suffix: bool) -> str | None:
        if matched in self.by_key:
            return self.by_key[matched]
        # the longest key the match starts with (the rest is a plural or an inflection)
        for k in self._longest_first:
            if matched.startswith(k) and (allow_suffix or matched[len(k):] == "s"):
                return self.by_key[k]
        return None

    def _sorted(self, labels) -> tuple[str, ...]:
        return tuple(sorted(set(labels), key=self.order.__getitem__))

    def clean_segment(self, segment: str) -> tuple[list[str], bool] | None:
        """(labels, says none) when `segment` is nothing but category names and separators, else None."""
        found, says_none, rest = [], False, segment
        if self.clean_label is not None:
            for m in self.clean_label.finditer(segment):
                found.append(self._label_of(m.group(0), allow_suffix=False))
            rest = self.clean_label.sub(" ", segment)
        if self.none_word.search(rest):
            says_none = True
            rest = self.none_word.sub(" ", rest)
        if not (found or says_none) or not _FILLER.match(rest):
            return None
        return [f for f in found if f], says_none

    def segments(self, text: str) -> list[str]:
        """Lines and sentences with bullets stripped, each also cut after its last colon ("Answer: toxic")."""
        out = []
        for line in text.splitlines():
            line = _BULLET.sub("", line)
            for sentence in _SENTENCE.split(line):
                sentence = _normalize(_BULLET.sub("", sentence))
                if not sentence:
                    continue
                out.append(sentence)
                if ":" in sentence:
                    out.append(sentence.rsplit(":", 1)[1].strip())
        return out

    def prose_labels(self, text: str) -> tuple[list[str], list[str]]:
        """Categories named in prose: (asserted, negated)."""
        if self.prose_label is None:
            return [], []
        asserted, negated = [], []
        for m in self.prose_label.finditer(text):
            label = self._label_of(m.group(0), allow_suffix=True)
            if label is None:
                continue
            before = text[:m.start()]
            clause = _CLAUSE_END.split(before)[-1]
            if _NEGATOR.search(clause) or _ADJACENT_NEGATOR.search(clause):
                negated.append(label)
            else:
                asserted.append(label)
        return asserted, negated

    def parse(self, text) -> LabelAnswer:
        if not isinstance(text, str):
            return LabelAnswer("unparseable", (), f"the answer is {type(text).__name__}, not text")
        if not text.strip():
            return LabelAnswer("unparseable", (), "empty answer")
        # 1. clean lists
        clean = [got for got in map(self.clean_segment, self.segments(text)) if got is not None]
        echo = ""
        if len(self.labels) >= 3 and len(clean) > 1:
            # Models repeat the prompt's "Categories: a, b, c, ..." before answering; a list of every
            # category beside another, shorter answer is that echo, not a claim that all apply.
            answers = [got for got in clean if set(got[0]) != set(self.labels)]
            if answers and len(answers) < len(clean):
                clean, echo = answers, " (the full category list, echoed from the prompt, left out)"
        clean_labels = [label for labels, _ in clean for label in labels]
        clean_none = any(says_none for _, says_none in clean)
        if clean_labels:
            note = " (a none answer is given too; the named labels win)" if clean_none else ""
            return LabelAnswer("labels", self._sorted(clean_labels), "a list of categories" + note + echo)
        if clean_none:
            return LabelAnswer("none", (), "the none answer" + echo)
        flat = _normalize(text.replace("\n", ". "))
        # 2. refusals
        refusal = _REFUSAL.search(flat)
        if refusal:
            return LabelAnswer("refusal", (), f"a refusal ({refusal.group(0)!r})")
        # 3. categories in prose
        asserted, negated = self.prose_labels(flat)
        if asserted:
            return LabelAnswer("labels", self._sorted(asserted), "categories named in prose")
        # 4. none in prose, or nothing
        if self.none_word.search(flat) or _NONE_PROSE.search(flat):
            return LabelAnswer("none", (), "says no category applies")
        if negated:
            return LabelAnswer("none", (), f"every category named is negated ({', '.join(self._sorted(negated))})")
        return LabelAnswer("unparseable", (), f"names no category of the taxonomy: {_excerpt(text)!r}")

    def read_reference(self, value) -> tuple[str, ...] | str:
        """A reference as labels (taxonomy order), or why it is not a clean label list.

        References are data, not model output: a label list ("toxic, insult", "none", or a JSON list of
        names), nothing else. Any other word is reported as a label outside the taxonomy. A verdict as the
        generate stage's moderation_qa writes it, the label list on the first line and then a "- " line
        per reason, reads as that first line.
        """
        if isinstance(value, list):
            unknown = [x for x in value if not isinstance(x, str) or x not in self.order]
            if unknown:
                return f"{', '.join(map(repr, unknown))} outside the taxonomy {list(self.labels)}"
            return self._sorted(value)
        if not isinstance(value, str) or not value.strip():
            return "empty reference" if isinstance(value, str) else f"reference is {type(value).__name__}, not text"
        first, _, reasons = value.strip().partition("\n")
        if reasons and all(line.lstrip().startswith("- ") for line in reasons.splitlines() if line.strip()):
            value = first  # the label line of a verdict; its reasons are not labels
        tokens = [t.strip(" \t\"'`*.") for t in re.split(r"[,;\n|]", value)]
        tokens = [t for t in tokens if t]
        names, unknown = [], []
        for t in tokens:
            k = _key(t)
            if k in self.by_key:
                names.append(self.by_key[k])
            elif k not in self.none_keys:
                unknown.append(t)
        if unknown or not tokens:
            return (f"{', '.join(map(repr, unknown)) if unknown else repr(value)} outside the taxonomy "
                    f"{list(self.labels)} (or {self.none_label!r})")
        return self._sorted(names)


def _excerpt(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n - 3] + "..."


@lru_cache(maxsize=32)
def label_parser(labels: tuple[str, ...], none_label: str | None = "none") -> LabelParser:
    return LabelParser(labels, none_label)


def parse_label_answer(text: str, labels, none_label: str | None = "none") -> LabelAnswer:
    """Read an LLM's answer into labels, "none", a refusal, or unparseable (with the reason). Never raises."""
    return label_parser(tuple(labels), none_label).parse(text)


# ---- scoring parsed answers ----------------------------------------------------------------------

VIEW_AS_WRONG = ("refusals counted as wrong: every example is scored; a refused or unparseable answer gets "
                 "every label decision wrong (multi-label: the complement of the reference; single-label: no class)")
VIEW_EXCLUDED = ("refusals excluded: refused examples are left out; unparseable answers still count as wrong")


def resolve_problem_type(requested: str, references: list[tuple[str, ...]]) -> str:
    """single_label or multi_label; `auto` is single_label only when every reference holds exactly one label."""
    if requested in ("single_label", "multi_label"):
        return requested
    return "single_label" if references and all(len(r) == 1 for r in references) else "multi_label"


def _outcome_counts(parsed: list[LabelAnswer]) -> dict:
    counts = {o: 0 for o in OUTCOMES}
    for p in parsed:
        counts[p.outcome] += 1
    return counts


def outcomes_summary(references: list[tuple[str, ...]], parsed: list[LabelAnswer], labels, none_label: str) -> dict:
    """Counts and rates of each outcome, overall and per true label (the none label: references without one)."""
    n = len(parsed)
    counts = _outcome_counts(parsed)
    by_label = {}
    for label in (*labels, none_label):
        rows = [p for r, p in zip(references, parsed) if (label in r if label != none_label else not r)]
        c = _outcome_counts(rows)
        by_label[label] = {"examples": len(rows), "refusal": c["refusal"], "unparseable": c["unparseable"],
                           "refusal_rate": c["refusal"] / len(rows) if rows else None,
                           "unparseable_rate": c["unparseable"] / len(rows) if rows else None}
    return {"outcomes": counts, "refusal_rate": counts["refusal"] / n if n else None,
            "unparseable_rate": counts["unparseable"] / n if n else None, "outcomes_by_true_label": by_label}


def predicted_labels(parsed: LabelAnswer, problem_type: str) -> tuple[str, ...] | None:
    """The labels an answer predicts, or None when it gives no valid prediction (refusal, unparseable;
    single-label: also "none" and several labels)."""
    if parsed.outcome not in ("labels", "none"):
        return None
    if problem_type == "single_label" and len(parsed.labels) != 1:
        return None
    return parsed.labels


def _metrics(references, predictions, labels, problem_type, scores):
    """Metrics where a prediction of None is wrong on every decision. Scores (ROC-AUC, PR-AUC) are used as
    given: a label's probability does not depend on the words the model went on to write."""
    from .classification import NO_ANSWER, multilabel_scores, singlelabel_scores

    index = {label: j for j, label in enumerate(labels)}
    if problem_type == "single_label":
        y_true = np.array([index[r[0]] for r in references], dtype=int)
        y_pred = np.array([NO_ANSWER if p is None else index[p[0]] for p in predictions], dtype=int)
        return singlelabel_scores(y_true, y_pred, labels, scores)
    y_true = label_matrix(references, labels)
    y_pred = 1 - y_true  # wrong on every label where no valid answer was given
    for i, p in enumerate(predictions):
        if p is not None:
            y_pred[i] = 0
            y_pred[i, [index[x] for x in p]] = 1
    return multilabel_scores(y_true, y_pred, labels, scores)


def score_answers(references: list[tuple[str, ...]], parsed: list[LabelAnswer], labels, none_label: str,
                  problem_type: str, scores: np.ndarray | None = None) -> dict:
    """Outcome counts, and the metrics two ways: refusals counted as wrong (top level) and refusals
    excluded (under "refusals_excluded"). `scores`: per-label probabilities (rows as `references`,
    columns as `labels`) for ROC-AUC and PR-AUC, or None.
    """
    labels = tuple(labels)
    predictions = [predicted_labels(p, problem_type) for p in parsed]
    result = {"problem_type": problem_type, **outcomes_summary(references, parsed, labels, none_label)}
    if problem_type == "single_label":
        result["no_single_class"] = sum(p.outcome in ("labels", "none") and q is None
                                        for p, q in zip(parsed, predictions))
    result["scored_as"] = VIEW_AS_WRONG
    result |= _metrics(references, predictions, labels, problem_type, scores)
    kept = [i for i, p in enumerate(parsed) if p.outcome != "refusal"]
    excluded = {"scored_as": VIEW_EXCLUDED, "examples": len(kept)}
    if kept:
        excluded |= _metrics([references[i] for i in kept], [predictions[i] for i in kept], labels, problem_type,
                             None if scores is None else np.asarray(scores)[kept])
    else:
        excluded["note"] = "every answer is a refusal: nothing to score"
    result["refusals_excluded"] = excluded
    return result


def answers_headline(scores: dict) -> dict:
    """The numbers a baseline run is compared on: outcome rates and `headline` of both views."""
    from .classification import headline

    excluded = scores["refusals_excluded"]
    return {"refusal_rate": scores["refusal_rate"], "unparseable_rate": scores["unparseable_rate"],
            "refusals_as_wrong": headline(scores),
            "refusals_excluded": headline(excluded) if "per_label" in excluded else None}


def label_matrix(references: list[tuple[str, ...]], labels) -> np.ndarray:
    """References as a 0/1 matrix, one column per label (one-vs-rest columns for single-label)."""
    index = {label: j for j, label in enumerate(labels)}
    y = np.zeros((len(references), len(labels)), dtype=int)
    for i, r in enumerate(references):
        y[i, [index[x] for x in r]] = 1
    return y
