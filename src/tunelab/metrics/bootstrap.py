"""Bootstrap confidence intervals for corpus scores, paired across runs.

Every corpus score here is a function of per-example columns summed over the corpus: BLEU of its
sufficient statistics (sacrebleu's matched/total n-gram counts and lengths), a mean of per-example
F1 of the F1 column. So one resample is one vector of draw counts `c` (how often each example was
drawn), and every score of every run on that resample follows from `c @ columns`. Drawing the counts
once and applying them to all runs' columns makes the comparison paired: run and baseline are
always scored on the same resampled examples, which is what makes a delta's interval narrow
enough to mean something (Koehn 2004, "Statistical significance tests for MT evaluation").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Draw counts held at once (resamples x examples): about 80 MB per array at 10M cells, whatever the size.
_MAX_CELLS = 10_000_000


@dataclass(frozen=True)
class Bootstrap:
    """How the intervals are drawn; the same settings and examples give the same intervals."""

    resamples: int = 1000
    seed: int = 12345
    level: float = 0.95

    def __post_init__(self):
        if self.resamples < 0:
            raise ValueError(f"bootstrap resamples must be >= 0, got {self.resamples}")
        if not 0 < self.level < 1:
            raise ValueError(f"bootstrap level must be between 0 and 1, got {self.level}")

    def counts(self, n: int) -> Iterator[np.ndarray]:
        """Blocks of draw counts, shape (resamples in block, n): row b says how many times each of the
        n examples is in resample b (rows sum to n). Seeded: the same for every call."""
        rng = np.random.default_rng(self.seed)
        block = max(1, _MAX_CELLS // max(n, 1))
        for start in range(0, self.resamples, block):
            rows = min(block, self.resamples - start)
            draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
            yield np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)

    def sums(self, columns: np.ndarray) -> np.ndarray:
        """Column sums over each resample: shape (resamples, columns). `columns` is (n,) or (n, k)."""
        columns = np.asarray(columns, dtype=np.float64)
        flat = columns.reshape(len(columns), -1)
        # float64 matmul of integer counts: exact for integer columns (BLEU statistics) below 2**53.
        out = np.concatenate([c.astype(np.float64) @ flat for c in self.counts(len(flat))]) if self.resamples \
            else np.empty((0, flat.shape[1]))
        return out.reshape((self.resamples,) + columns.shape[1:])

    def interval(self, value: float, resampled: np.ndarray) -> dict:
        """{value, ci_low, ci_high}: the point estimate on all examples and the percentile interval
        of the resampled estimates (None when there are no resamples)."""
        if len(resampled) == 0:
            return {"value": float(value), "ci_low": None, "ci_high": None}
        tail = (1 - self.level) / 2 * 100
        low, high = np.percentile(resampled, [tail, 100 - tail])
        return {"value": float(value), "ci_low": float(low), "ci_high": float(high)}

    def delta(self, value: float, resampled: np.ndarray) -> dict:
        """A paired difference (run minus baseline) with its interval and whether that excludes 0."""
        ci = self.interval(value, resampled)
        excludes = None if ci["ci_low"] is None else bool(ci["ci_low"] > 0 or ci["ci_high"] < 0)
        return {"delta": ci["value"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "excludes_zero": excludes}

    def describe(self) -> dict:
        return {"resamples": self.resamples, "level": self.level, "seed": self.seed,
                "method": "percentile; paired: every run is scored on the same resampled examples"}
