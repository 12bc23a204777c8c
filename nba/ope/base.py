"""One base for every estimator: per-row terms in, a value and a bootstrap interval out.

An estimator only says how each logged row (or trajectory) contributes: a numerator and, for
self-normalised estimators, a denominator, each (n, k). The value is
``sum_k sum_i num[i, k] / sum_i den[i, k]`` (``den`` = 1 per row when absent), so the plain
mean, self-normalisation and per-step normalisation (weighted per-decision IS) share one
bootstrap: resample rows (or clusters of rows) with replacement as count vectors and take
weighted column sums with one matrix product per block of replicates. No Python loop runs over
rows, and every draw comes from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, ClassVar

import numpy as np

from nba.errors import NBAValidationError
from nba.types import FloatArray, IntArray, SeedLike

#: Replicates drawn per block: bounds the (block, n) count matrix to ~64 MB at n = 1M.
_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Terms:
    """Per-row contributions: value = sum over columns of sum(num) / sum(den)."""

    numerator: FloatArray  # (n, k)
    denominator: FloatArray | None = None  # (n, k); None means 1 per row

    def __post_init__(self) -> None:
        num = np.asarray(self.numerator, dtype=np.float64)
        object.__setattr__(self, "numerator", num[:, None] if num.ndim == 1 else num)
        if self.denominator is not None:
            den = np.asarray(self.denominator, dtype=np.float64)
            object.__setattr__(self, "denominator", den[:, None] if den.ndim == 1 else den)

    def value(self) -> float:
        num = self.numerator.sum(axis=0)
        den = (
            np.full(num.shape, float(self.numerator.shape[0]))
            if self.denominator is None
            else self.denominator.sum(axis=0)
        )
        return float(np.sum(_ratio(num, den)))

    def grouped(self, groups: IntArray) -> Terms:
        """Sum rows within clusters (labels 0..G-1); denominators become row counts if absent."""
        n_groups = int(groups.max()) + 1
        den = (
            np.ones((self.numerator.shape[0], 1)) if self.denominator is None else self.denominator
        )
        return Terms(
            _group_sum(self.numerator, groups, n_groups), _group_sum(den, groups, n_groups)
        )

    def minus(self, other: Terms) -> Terms:
        """Terms whose value is ``self.value() - other.value()``, row by row (paired).

        Resampling the result resamples both on the same rows, so the difference's interval
        is far narrower than either value's when the two move together.
        """
        if other.numerator.shape[0] != self.numerator.shape[0]:
            raise NBAValidationError(
                f"terms: a paired difference needs the same rows, got "
                f"{self.numerator.shape[0]} and {other.numerator.shape[0]}"
            )
        if self.denominator is None and other.denominator is None:
            return Terms(np.hstack([self.numerator, -other.numerator]))
        return Terms(
            np.hstack([self.numerator, -other.numerator]),
            np.hstack([_denominator(self), _denominator(other)]),
        )


@dataclass(frozen=True)
class Interval:
    """A point estimate with a percentile-bootstrap interval."""

    estimator: str
    estimate: float
    lower: float
    upper: float
    std_error: float
    n: int
    confidence: float = 0.95
    n_boot: int = 0

    @classmethod
    def from_replicates(
        cls, estimator: str, terms: Terms, replicates: FloatArray, confidence: float
    ) -> Interval:
        """The point estimate of ``terms`` and the percentile interval of its ``replicates``."""
        tail = (1.0 - confidence) / 2.0
        lower, upper = np.quantile(replicates, [tail, 1.0 - tail])
        return cls(
            estimator=estimator,
            estimate=terms.value(),
            lower=float(lower),
            upper=float(upper),
            std_error=float(replicates.std(ddof=1)),
            n=int(terms.numerator.shape[0]),
            confidence=confidence,
            n_boot=int(replicates.shape[0]),
        )

    def as_dict(self) -> dict[str, Any]:
        """Keys as in every interval of nba: ``lower``, ``upper``, ``confidence``."""
        return {
            "estimator": self.estimator,
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
            "std_error": self.std_error,
            "n": self.n,
            "confidence": self.confidence,
            "n_boot": self.n_boot,
        }


class Estimator(ABC):
    """An off-policy estimator: :meth:`terms` says how rows contribute; the rest is shared."""

    name: ClassVar[str]

    @property
    def label(self) -> str:
        """The name, with each parameter that differs from its default: ``switch_dr(tau=20)``.

        Intervals carry it, so two configurations of one estimator stay apart in a table.
        """
        if not is_dataclass(self):
            return self.name
        changed = [
            f"{f.name}={_format(getattr(self, f.name))}"
            for f in fields(self)
            if f.init and f.default is not MISSING and getattr(self, f.name) != f.default
        ]
        return f"{self.name}({', '.join(changed)})" if changed else self.name

    @abstractmethod
    def terms(self, data: Any, predictions: FloatArray | None = None) -> Terms:
        """Per-row (or per-trajectory) contributions; ``predictions`` are model outputs."""

    def groups(self, data: Any) -> IntArray | None:
        """Cluster labels to resample, if the data carries them."""
        return getattr(data, "groups", None)

    def estimate(self, data: Any, predictions: FloatArray | None = None) -> float:
        """The estimated value of the evaluation policy."""
        return self.terms(data, predictions).value()

    def interval(
        self,
        data: Any,
        predictions: FloatArray | None = None,
        *,
        n_boot: int = 1000,
        confidence: float = 0.95,
        seed: SeedLike = None,
    ) -> Interval:
        """Point estimate and percentile-bootstrap interval (rows or clusters resampled).

        The fitted models behind ``predictions`` are held fixed; fit them out of fold
        (:func:`nba.ope.reward_model.cross_fit`) so their errors do not flatter the interval.
        """
        _check_confidence(confidence)
        terms = self.terms(data, predictions)
        groups = self.groups(data)
        replicates = bootstrap(terms.grouped(groups) if groups is not None else terms, n_boot, seed)
        return Interval.from_replicates(self.label, terms, replicates, confidence)


def bootstrap(terms: Terms, n_boot: int, seed: SeedLike = None) -> FloatArray:
    """(n_boot,) values of ``terms`` on resampled rows."""
    return bootstrap_many([terms], n_boot, seed)[:, 0]


def bootstrap_many(terms: Sequence[Terms], n_boot: int, seed: SeedLike = None) -> FloatArray:
    """(n_boot, m) values of m sets of terms on the same resampled rows (one draw for all).

    The first column equals :func:`bootstrap` of ``terms[0]`` with the same seed.
    """
    if n_boot < 2:
        raise NBAValidationError(f"n_boot: need at least 2 replicates, got {n_boot}")
    if not terms:
        raise NBAValidationError("terms: give at least one set of terms to resample")
    n = terms[0].numerator.shape[0]
    if any(t.numerator.shape[0] != n for t in terms):
        raise NBAValidationError("terms: every set must have the same rows to share resamples")
    rng = np.random.default_rng(seed)
    block = max(1, min(n_boot, _BLOCK_BYTES // (8 * n)))
    values = np.empty((n_boot, len(terms)))
    for start in range(0, n_boot, block):
        size = min(block, n_boot - start)
        draws = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(float)
        for j, term in enumerate(terms):
            sums = counts @ term.numerator
            dens = (
                np.full_like(sums, float(n))
                if term.denominator is None
                else counts @ term.denominator
            )
            values[start : start + size, j] = _ratio(sums, dens).sum(axis=1)
    return values


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise NBAValidationError(f"confidence: {confidence} must be strictly between 0 and 1")


def _denominator(terms: Terms) -> FloatArray:
    if terms.denominator is None:
        return np.ones_like(terms.numerator)
    return terms.denominator


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, 0 where nothing was observed (an empty column in a replicate)."""
    safe = np.where(den == 0, 1.0, den)
    return np.where(den == 0, 0.0, num / safe)


def _group_sum(values: FloatArray, groups: IntArray, n_groups: int) -> FloatArray:
    return np.stack(
        [
            np.bincount(groups, weights=values[:, k], minlength=n_groups)
            for k in range(values.shape[1])
        ],
        axis=1,
    )
