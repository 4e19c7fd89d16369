"""ROUGE-L novelty filter for self-instruct, exact and fast.

Alpaca's `generate_instruction.py` keeps a generated instruction only if its ROUGE-L F1 against every
seed and every instruction kept so far is <= `threshold` (0.7); it scores each candidate against the
whole kept set, so n candidates cost O(n^2) LCS calls (~10^9 for Alpaca's 52k). `NaiveNoveltyFilter`
is that loop, kept as the reference; `NoveltyFilter` makes the same keep/drop decisions but compares
a candidate only with instructions that could possibly exceed the threshold.

Why it is exact: F = 2L/(la+lb) with L = LCS <= o = multiset token overlap <= min(la, lb). Hence
F > t needs lb in (r*la, la/r) and o > r*la, where r = t/(2-t). Occurrence-indexed tokens ("the#0",
"the#1") turn multiset overlap into set overlap, so by pigeonhole any (la - alpha + 1) of the
candidate's keys share at least one key with every item whose overlap is >= alpha. Probing only those
keys' postings (the shortest ones) therefore finds every item that could exceed the threshold; the
survivors of the length and overlap bounds are scored with rouge-score's own `_score_lcs`, so every
decision, and every score above the threshold, is bit-for-bit the naive one. All bounds use a
threshold lowered by 1e-9, far more than float rounding can move a score, so pruning never
changes a decision.
"""

from __future__ import annotations

import functools
import math
from array import array
from collections.abc import Callable, Iterable

import numpy as np

# Bounds are computed for threshold - _SLACK: a float F1 can differ from 2L/(la+lb) by a few ulps
# (~1e-16), so an item with float F1 > threshold always passes the slackened bounds.
_SLACK = 1e-9


@functools.cache  # building a RougeScorer takes ~15 ms; its tokenizer is stateless
def _rouge() -> tuple[Callable[[str], list[str]], Callable]:
    """rouge-score's tokenizer and LCS scorer, as Alpaca uses them; imported late, it pulls in nltk."""
    from rouge_score import rouge_scorer

    tokenizer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)._tokenizer
    return tokenizer.tokenize, rouge_scorer._score_lcs


def _check_threshold(threshold: float) -> float:
    # t <= 0 would drop anything sharing a token and t > 1 can never drop; neither is a novelty filter.
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    return float(threshold)


def _keys(tokens: list[str]) -> frozenset[str]:
    """Occurrence-indexed tokens: |keys(a) & keys(b)| is the multiset overlap of a and b."""
    seen: dict[str, int] = {}
    keys = []
    for token in tokens:
        n = seen.get(token, 0)
        seen[token] = n + 1
        keys.append(f"{token}#{n}")  # tokens are [a-z0-9]+, so '#' cannot collide
    return frozenset(keys)


class NaiveNoveltyFilter:
    """Alpaca's loop: score a text against every seed and kept instruction; drop it if the max > threshold."""

    def __init__(self, threshold: float = 0.7, initial: Iterable[str] = ()):
        self.threshold = _check_threshold(threshold)
        self._tokenize, self._score_lcs = _rouge()
        self._tokens: list[list[str]] = []
        for text in initial:
            self.add(text)

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, text: str) -> None:
        self._tokens.append(self._tokenize(text))

    def most_similar(self, text: str) -> float:
        tokens = self._tokenize(text)
        return max((self._score_lcs(tokens, other).fmeasure for other in self._tokens), default=0.0)

    def keep(self, text: str) -> tuple[bool, float]:
        """Whether `text` is novel enough, and its max ROUGE-L F1; a kept text joins the comparison set."""
        score = self.most_similar(text)
        if score > self.threshold:
            return False, score
        self.add(text)
        return True, score


class _Column:
    """A growable int32 column; `view()` is its filled part, with no copy."""

    __slots__ = ("_data", "_size")

    def __init__(self) -> None:
        self._data = np.zeros(1024, dtype=np.int32)
        self._size = 0

    def extend(self, values: list[int]) -> None:
        end = self._size + len(values)
        if end > len(self._data):  # doubling keeps appends amortized O(1)
            data = np.zeros(max(end, 2 * len(self._data)), dtype=np.int32)
            data[: self._size] = self._data[: self._size]
            self._data = data
        self._data[self._size : end] = values
        self._size = end

    def __len__(self) -> int:
        return self._size

    def view(self) -> np.ndarray:
        return self._data[: self._size]


class NoveltyFilter:
    """Same decisions as `NaiveNoveltyFilter`, via an inverted index over occurrence-indexed tokens.

    The score from `most_similar`/`keep` is exact whenever it exceeds the threshold (every drop);
    otherwise it is the max over the few items actually scored, a lower bound of the naive max.
    """

    def __init__(self, threshold: float = 0.7, initial: Iterable[str] = ()):
        self.threshold = _check_threshold(threshold)
        self._tokenize, self._score_lcs = _rouge()
        t = self.threshold - _SLACK
        self._t = t
        self._ratio = t / (2 - t)  # F > t needs lb > ratio*la, lb < la/ratio and overlap > ratio*la
        self._tokens: list[list[str]] = []
        self._key_ids: dict[str, int] = {}  # occurrence-indexed token -> key id
        # Postings are int32 arrays: appends stay cheap and numpy reads them without copying.
        self._postings: list[array] = []  # key id -> ids of items holding it, ascending
        # Every item's key ids, end to end, so overlaps of many items are computed in one numpy pass.
        self._flat, self._starts, self._lengths = _Column(), _Column(), _Column()
        self._marked = np.zeros(1024, dtype=bool)  # key id -> in the text being scored
        for text in initial:
            self.add(text)

    def __len__(self) -> int:
        return len(self._tokens)

    def add(self, text: str) -> None:
        self._add(self._tokenize(text))

    def _add(self, tokens: list[str]) -> None:
        i = len(self._tokens)
        key_ids, postings = self._key_ids, self._postings
        ids = []
        for key in _keys(tokens):  # an empty text gets no postings: it scores 0 against everything
            if (kid := key_ids.get(key)) is None:
                kid = key_ids[key] = len(postings)
                postings.append(array("i"))
            postings[kid].append(i)
            ids.append(kid)
        if len(postings) > len(self._marked):
            self._marked = np.zeros(2 * len(postings), dtype=bool)
        self._tokens.append(tokens)
        self._starts.extend([len(self._flat)])
        self._lengths.extend([len(tokens)])
        self._flat.extend(ids)

    def _best(self, tokens: list[str]) -> float:
        """Max F1 over every item that could exceed the threshold (exact when the max does)."""
        la = len(tokens)
        if not la:
            return 0.0
        t = self._t
        # Integer bounds are rounded outward by 1e-6, so float error in the products only widens them.
        alpha = max(1, math.ceil(self._ratio * la - 1e-6))  # least overlap, and least lb
        lb_max = math.floor(la / self._ratio + 1e-6)
        get = self._key_ids.get
        key_ids = [kid for key in _keys(tokens) if (kid := get(key)) is not None]
        # Pigeonhole: an item sharing >= alpha keys shares one of any la - alpha + 1 of them, so
        # probing the shortest postings finds them all; keys nobody holds count as probed, for free.
        probed = la - alpha + 1
        shortest = probed - (la - len(key_ids))
        if shortest <= 0:
            return 0.0
        probe = sorted((self._postings[kid] for kid in key_ids), key=len)[:shortest]
        ids, hits = np.unique(np.concatenate([np.frombuffer(p, dtype=np.int32) for p in probe]),
                              return_counts=True)
        lb = self._lengths.view()[ids]
        # Overlap <= probed hits + one per unprobed key, and F > t needs overlap > t*(la+lb)/2.
        ok = (lb >= alpha) & (lb <= lb_max) & (hits + (la - probed) >= np.ceil(t * (la + lb) / 2 - 1e-6))
        ids, lb = ids[ok], lb[ok]
        if not len(ids):
            return 0.0
        # Exact multiset overlap of every survivor: gather its key ids, count those the text holds.
        ends = np.cumsum(lb)
        offsets = ends - lb
        where = np.arange(ends[-1]) + np.repeat(self._starts.view()[ids] - offsets, lb)
        marked = self._marked
        marked[key_ids] = True
        try:
            overlap = np.add.reduceat(marked[self._flat.view()[where]], offsets, dtype=np.int32)
        finally:
            marked[key_ids] = False
        best = 0.0
        tokens_of, score_lcs = self._tokens, self._score_lcs
        for i in ids[2 * overlap >= t * (la + lb)].tolist():  # LCS <= overlap
            score = score_lcs(tokens, tokens_of[i]).fmeasure  # same call and argument order as Alpaca's
            if score > best:
                best = score
        return best

    def most_similar(self, text: str) -> float:
        """Max ROUGE-L F1 against the comparison set; exact only when it exceeds the threshold."""
        return self._best(self._tokenize(text))

    def keep(self, text: str) -> tuple[bool, float]:
        """Whether `text` is novel enough, and its score (see `most_similar`); a kept text joins the set."""
        tokens = self._tokenize(text)
        score = self._best(tokens)
        if score > self.threshold:
            return False, score
        self._add(tokens)
        return True, score
