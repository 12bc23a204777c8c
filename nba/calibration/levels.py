"""Each customer's own purchase-rate and dropout levels, fitted by the twin's own likelihood.

Within a persona, customers still differ in how often they buy and how soon they drop out
(BG/NBD's gamma and beta mixing distributions). The twin keeps a finite state by giving each
customer one of K latent rate levels and one of D dropout levels (:mod:`nba.scenario_levels`).

Why by likelihood, not by moments of panel counts: personas are clusters on recency and
frequency, so counts *within* a persona are no freer than the clustering let them be (on a
BG/NBD log with a gamma shape of 0.25 the within-persona moment and negative-binomial fits both
find no spread at all). The twin as a hidden Markov model, with persona latent, weighs each
whole purchase history instead (:func:`nba.calibration.filtering.filter_states`), as the
unseen churn fit does (:func:`nba.calibration.transitions.unseen_churn`).

The fit, on a seeded subset of at most :data:`LEVEL_FIT_CUSTOMERS` histories:

1. the rate spread: the variance ``phi`` of a gamma rate multiplier with mean 1, on the grid
   :data:`SPREAD_GRID`, each point as :data:`GRID_LEVELS` equal-share levels at the
   conditional means of the gamma's equal-probability bins (mean multiplier 1: the persona's
   rate stays the mean), one dropout level;
2. the number of levels, by a stated rule: one unless the spread beats none by a
   likelihood-ratio test at 1% (:data:`LR_CRITICAL`); else the smallest count whose
   log-likelihood gain over one level is at least :data:`KEPT_GAIN` of the most allowed
   (:data:`MAX_RATE_LEVELS`: the state space and the filter's work grow with it).

Intervals: each bootstrap replicate reweighs the same per-customer log-likelihoods (one matrix
product per grid) and picks its own spread, refined by a parabola between grid points; the
levels' multipliers follow replicate by replicate.

Dropout: one level, marked ``assumed``. The same fit of a mean-1 multiplier on the moves into
the churn stage (a beta of tiny mean is a gamma, so the same bins would serve) was tried and is
not trusted: on a log drawn from the retail twin with no dropout spread at all, it preferred
the grid's largest spread, significantly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.filtering import filter_states
from nba.calibration.heterogeneity import tier_multipliers
from nba.calibration.table import ParameterTable
from nba.scenario import Scenario
from nba.scenario_levels import Heterogeneity, Level
from nba.types import FloatArray

#: Variances of the mean-1 multiplier tried (0: no spread); a gamma shape of 0.25 is 4.
SPREAD_GRID = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
#: Levels each spread is tried with.
GRID_LEVELS = 4
#: Share of the most levels' log-likelihood gain over one level the chosen count must keep.
KEPT_GAIN = 0.95
MAX_RATE_LEVELS = 6
#: 2 x the log-likelihood gain over no spread that any spread needs: chi-square(1) at 2%, a
#: 1% test on the boundary (variance 0).
LR_CRITICAL = 5.41
LEVEL_FIT_CUSTOMERS = 2_000
LEVEL_MODES = ("none", "auto")  # calibrate(levels=...): one level each, or fitted
SOURCE = "quantile bins of gamma multipliers fitted by the twin's likelihood of the histories"


@dataclass(frozen=True)
class LevelFit:
    """Equal-share rate and dropout multipliers, and the spreads they discretise."""

    rate: FloatArray  # (K,) rate multipliers, mean 1
    dropout: FloatArray  # (D,) dropout multipliers, mean 1
    rate_variance: float
    dropout_variance: float

    def heterogeneity(self) -> dict[str, Any] | None:
        """The scenario's ``heterogeneity`` block, or None with one level of each."""
        if len(self.rate) == 1 and len(self.dropout) == 1:
            return None
        return {
            "rate_levels": [_level(m, len(self.rate)) for m in self.rate],
            "dropout_levels": [_level(m, len(self.dropout)) for m in self.dropout],
            "source": f"{SOURCE} (rate variance {self.rate_variance:.3g}, dropout variance "
            f"{self.dropout_variance:.3g})",
        }


def check_mode(levels: str) -> None:
    """Refuse a ``levels`` setting calibration does not know, naming the field."""
    if levels not in LEVEL_MODES:
        raise EventLogError(f"levels: expected one of {', '.join(LEVEL_MODES)}, got {levels!r}")


def _level(multiplier: float, count: int) -> dict[str, float]:
    return {"multiplier": float(multiplier), "share": 1.0 / count}


def with_levels(scenario: Scenario, rate: FloatArray, dropout: FloatArray) -> Scenario:
    """``scenario`` with equal-share rate and dropout levels at these multipliers."""
    block = Heterogeneity(
        rate_levels=[Level(**_level(m, len(rate))) for m in rate],
        dropout_levels=[Level(**_level(m, len(dropout))) for m in dropout],
        source=SOURCE,
    )
    return scenario.model_copy(update={"heterogeneity": block})


def grid_choice(totals: FloatArray, grid: FloatArray) -> FloatArray:
    """(B + 1,) the grid value maximising each replicate's total, refined by a parabola."""
    best = np.argmax(totals, axis=1)
    position = best.astype(float)
    for b, g in enumerate(best):
        if 0 < g < len(grid) - 1:
            y0, y1, y2 = totals[b, g - 1 : g + 2]
            curvature = y0 - 2.0 * y1 + y2
            if curvature < 0:
                position[b] = g + float(np.clip(0.5 * (y0 - y2) / curvature, -0.5, 0.5))
    return np.interp(position, np.arange(len(grid)), grid)


def level_count(loglik: Callable[[int], float], none: float, most: int, significant: bool) -> int:
    """The smallest count keeping :data:`KEPT_GAIN` of ``most`` levels' gain over ``none``."""
    if not significant or most == 1:
        return 1
    top = loglik(most) - none
    for count in range(2, most):
        if loglik(count) - none >= KEPT_GAIN * top:
            return count
    return most


@dataclass(frozen=True)
class _Histories:
    """The weighed subset: per-customer log-likelihood under given levels, and its weights."""

    scenario: Scenario
    log: EventLog
    reference: pd.Timestamp
    ids: pd.Index
    weights: FloatArray  # (B + 1, n)

    def loglik(self, rate: FloatArray, dropout: FloatArray) -> FloatArray:
        trial = with_levels(self.scenario, rate, dropout)
        return filter_states(trial, self.log, self.reference, self.ids).log_likelihood

    def spread(self, levels: Callable[[float], tuple[FloatArray, FloatArray]]) -> FloatArray:
        """(B + 1, G) each replicate's total log-likelihood at each spread of the grid."""
        lls = np.stack([self.loglik(*levels(v)) for v in SPREAD_GRID], axis=1)
        return self.weights @ lls


def fit_levels(
    scenario: Scenario,
    log: EventLog,
    reference: pd.Timestamp,
    ids: pd.Index,
    boot: Bootstrap,
    out: ParameterTable,
    rng: np.random.Generator,
) -> LevelFit:
    """Rate and dropout levels (see the module docstring), into ``out`` with intervals."""
    rows = np.arange(len(ids))
    if len(ids) > LEVEL_FIT_CUSTOMERS:
        rows = np.sort(rng.choice(len(ids), size=LEVEL_FIT_CUSTOMERS, replace=False))
    data = _Histories(scenario, log, reference, ids[rows], boot.weights[:, rows].astype(float))
    one = np.ones(1)
    rate_totals = data.spread(lambda v: (tier_multipliers(v, GRID_LEVELS), one))
    rate_draws = grid_choice(rate_totals, SPREAD_GRID)
    phi = float(rate_draws[0])
    n = f"{len(rows)} purchase histories"
    none = float(rate_totals[0, 0])
    k = level_count(
        lambda c: float(data.weights[0] @ data.loglik(tier_multipliers(phi, c), one)),
        none,
        MAX_RATE_LEVELS,
        2.0 * (rate_totals[0].max() - none) > LR_CRITICAL,
    )
    rate = _record(out, "rate", rate_draws, k, n)
    out.add(
        "heterogeneity.dropout_levels[0].multiplier",
        1.0,
        "one dropout level: the twin's likelihood is not trusted to tell dropout spread (on a "
        "log drawn with none it prefers the grid's largest)",
        source="assumed",
    )
    return LevelFit(rate, np.ones(1), phi, 0.0)


def _record(out: ParameterTable, kind: str, draws: FloatArray, count: int, n: str) -> FloatArray:
    """Rows for one kind of level: its spread, count and multipliers; the multipliers."""
    what = "purchase rate" if kind == "rate" else "moves into the churn stage"
    out.add(
        f"heterogeneity.{kind}_variance",
        draws,
        f"variance of the customers' mean-1 multiplier on the {what}; maximum likelihood of "
        f"{n} under the twin (forward filter), {GRID_LEVELS} levels per grid point",
    )
    rule = (
        f"smallest count keeping {KEPT_GAIN:.0%} of the log-likelihood gain of the most allowed; "
        f"1 unless a likelihood-ratio test at 1% finds spread"
    )
    out.add(f"heterogeneity.{kind}_level_count", float(count), rule)
    if count == 1:
        out.add(
            f"heterogeneity.{kind}_levels[0].multiplier",
            1.0,
            f"one level: the histories show no significant spread in the {what}",
            source="assumed",
        )
        return np.ones(1)
    multipliers = np.stack([tier_multipliers(float(v), count) for v in draws])
    for level in range(count):
        out.add(
            f"heterogeneity.{kind}_levels[{level}].multiplier",
            multipliers[:, level],
            f"share 1/{count}: conditional mean of the gamma's bin {level + 1} of {count}",
        )
    return multipliers[0]
