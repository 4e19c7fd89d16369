"""Seeded, stratified splits of labeled rows: train / dev / test fractions that keep each class's share.

Stratifying by the class (single-label) or by a row's rarest label (multi-label; rows without a
label form their own group) keeps rare classes in every split: a random 70/30 cut of Jigsaw's 3,000
rows can leave 2 of its 14 threats in test, or none.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Sequence

from .errors import ConfigError


def stratum_keys(targets: Sequence[Sequence[int]], label_counts: Sequence[int] | None = None) -> list[Hashable]:
    """One stratum per row: its single label, or its rarest label (by `label_counts`), or () for no label."""
    if label_counts is None:
        counts: dict[int, int] = defaultdict(int)
        for t in targets:
            for j in t:
                counts[j] += 1
        label_counts = [counts[j] for j in range(max(counts, default=-1) + 1)]
    return [min(t, key=lambda j: (label_counts[j], j)) if t else () for t in targets]


def stratified_split(keys: Sequence[Hashable], fractions: Sequence[float], seed: int) -> list[list[int]]:
    """Row indices for each of `fractions` (the remainder is the first part, e.g. train), per stratum.

    `fractions`: the shares of the later parts, e.g. (0.1, 0.2) for dev and test; the first part gets
    the rest. Each stratum is shuffled with `seed` and cut by largest remainder, so the parts' sizes
    match the fractions overall within one row per stratum. Indices come back sorted (file order).
    """
    if any(f <= 0 for f in fractions) or sum(fractions) >= 1:
        raise ConfigError(f"split fractions must be positive and sum below 1, got {list(fractions)}")
    rng = random.Random(seed)
    by_key: dict[Hashable, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        by_key[key].append(i)
    parts: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    carry = [0.0] * len(fractions)  # fractional rows owed to each later part, across strata
    for key in sorted(by_key, key=repr):  # a fixed order: the result depends on the seed only
        rows = by_key[key]
        rng.shuffle(rows)
        start = 0
        for p, fraction in enumerate(fractions):
            want = len(rows) * fraction + carry[p]
            n = min(int(want + 0.5), len(rows) - start)
            carry[p] = want - n
            parts[p + 1].extend(rows[start:start + n])
            start += n
        parts[0].extend(rows[start:])
    return [sorted(part) for part in parts]
