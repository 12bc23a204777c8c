"""Customer-level bootstrap of group sums, vectorised: every estimate gets an interval.

The Poisson bootstrap gives each customer an independent Poisson(1) weight per replicate, so a
replicate's group sums are one matrix product ``weights @ values``; replicate 0 carries unit
weights (the point estimate). Ratios of sums (rates, means, proportions) and anything computed
from them replicate by replicate then give percentile intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba.types import FloatArray, IntArray


@dataclass(frozen=True)
class Bootstrap:
    """Replicate weights for N units: row 0 is all ones, rows 1..B are Poisson(1)."""

    weights: FloatArray  # (B + 1, N) float32

    @classmethod
    def draw(cls, n: int, replicates: int, rng: np.random.Generator) -> Bootstrap:
        weights = np.ones((replicates + 1, n), dtype=np.float32)
        weights[1:] = rng.poisson(1.0, size=(replicates, n))
        return cls(weights)

    @property
    def replicates(self) -> int:
        return self.weights.shape[0] - 1

    def group_sums(self, values: FloatArray, group: IntArray, n_groups: int) -> FloatArray:
        """(B + 1, G, ...) weighted sums of ``values`` (N, ...) within each group."""
        values = np.asarray(values, dtype=np.float32)
        flat = values.reshape(values.shape[0], -1)
        sums = np.zeros((self.weights.shape[0], n_groups, flat.shape[1]))
        for g in range(n_groups):  # a handful of groups; each is one BLAS product
            members = np.flatnonzero(group == g)
            if len(members):
                sums[:, g] = self.weights[:, members] @ flat[members]
        return sums.reshape(self.weights.shape[0], n_groups, *values.shape[1:])


def interval(replicates: FloatArray, level: float = 0.95) -> tuple[FloatArray, FloatArray]:
    """Percentile interval over axis 0 of bootstrap replicates (row 0, the estimate, excluded)."""
    tail = (1.0 - level) / 2.0 * 100.0
    draws = replicates[1:]
    with np.errstate(invalid="ignore"):
        low = np.nanpercentile(draws, tail, axis=0)
        high = np.nanpercentile(draws, 100.0 - tail, axis=0)
    return low, high


def safe_ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """numerator / denominator, NaN where the denominator is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )
