"""Each customer's own purchase-rate and dropout levels, and the twin that carries them.

Within a persona, customers still differ in how often they buy and how soon they drop out; a
twin of segments forecasts too flat (one-time buyers too high, the heaviest buyers too low).
With ``calibrate(levels="auto")`` the spread comes from BG/NBD's mixing distributions fitted to
the log (:mod:`nba.calibration.mixing`: a gamma rate with a scale per persona, a beta dropout
after each repeat purchase) and is cut into levels: a customer's rate level multiplies their
persona's purchase rate, their dropout level the chance of dropping out after a purchase.

The twin's purchase process then *is* that model, in days: in every stage a customer is alive
in, they buy at the persona's rate times their level's (the stage multipliers are 1: the
levels carry who buys more, where recency and frequency stages would absorb it and count it
twice), and after a purchase they move to the churn stage with their level's probability; the
first purchase starts a life and never ends it (entry stage). Nobody churns on a quiet day:
a long silence is evidence of an earlier dropout, as in BG/NBD. Stages still move as the rules
say (active, loyal, lapsed), so rules, offers and policies can use them.

Read customers from their first purchase (``history_start="first_purchase"``, recorded in the
scenario): the log holds them because they bought, so that purchase is their start, not
evidence of their rate.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.assembly import FittedScenario
from nba.calibration.bootstrap import Bootstrap
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.mixing import (
    BUCKET_TOLERANCE,
    TOTAL_TOLERANCE,
    Mixing,
    PurchaseDays,
    choose_counts,
    dropout_levels,
    fit_mixing,
    rate_levels,
)
from nba.calibration.table import ParameterTable
from nba.types import FloatArray, IntArray

LEVEL_MODES = ("none", "auto")  # calibrate(levels=...): one level each, or fitted
ALIVE = ("active", "loyal", "lapsed")  # rule stages of customers who have bought
CHURN = "churned"
HISTORY_START = "first_purchase"
DECIMALS = 6  # as the scenario writes stage moves
SOURCE = "bins of BG/NBD's gamma and beta mixing distributions fitted to the log"


def check_mode(levels: str) -> None:
    """Refuse a ``levels`` setting calibration does not know, naming the field."""
    if levels not in LEVEL_MODES:
        raise EventLogError(f"levels: expected one of {', '.join(LEVEL_MODES)}, got {levels!r}")


@dataclass(frozen=True)
class LevelFit:
    """The fitted mixing and its levels."""

    mixing: Mixing
    rate: tuple[FloatArray, FloatArray]  # multipliers on the persona's rate, shares
    dropout: tuple[FloatArray, FloatArray]  # dropout probabilities after a purchase, shares

    def heterogeneity(self) -> dict[str, Any]:
        """The scenario's ``heterogeneity`` block: multipliers on the rate and on the mean
        dropout, with their shares."""
        mean = self.mixing.mean_dropout
        return {
            "rate_levels": _levels(*self.rate),
            "dropout_levels": _levels(self.dropout[0] / mean, self.dropout[1]),
            "source": f"{SOURCE} (r {self.mixing.r:.3g}, a {self.mixing.a:.3g}, "
            f"b {self.mixing.b:.3g})",
        }

    def apply(self, fitted: FittedScenario, out: ParameterTable) -> FittedScenario:
        """``fitted`` with the purchase and dropout process of the module docstring; the rows
        of ``out`` it replaces are rewritten."""
        churn = round(self.mixing.mean_dropout, DECIMALS)
        on_purchase = {  # rounded down, so a row's moves still sum to at most 1 as written
            move: np.floor(value * (1.0 - churn) * 10**DECIMALS) / 10**DECIMALS
            if move[0] in ALIVE
            else value
            for move, value in fitted.on_purchase.items()
            if move[1] != CHURN
        }
        on_purchase.update({(stage, CHURN): churn for stage in ALIVE})
        daily = {m: v for m, v in fitted.daily.items() if not (m[0] in ALIVE and m[1] == CHURN)}
        multipliers = dict(fitted.stage_multiplier) | {stage: 1.0 for stage in ALIVE}
        _rewrite_rows(out, fitted.priors.stage_names, on_purchase)
        return replace(
            fitted,
            base=np.minimum(self.mixing.mean_rate, 1.0),
            tiers=[np.ones(1)] * len(fitted.base),
            tier_cuts=[[] for _ in fitted.base],
            stage_multiplier=multipliers,
            daily=daily,
            on_purchase=on_purchase,
            heterogeneity=self.heterogeneity(),
            history_start=HISTORY_START,
        )


def _rewrite_rows(
    out: ParameterTable, names: dict[str, str], on_purchase: dict[tuple[str, str], float]
) -> None:
    """Stage rows the levels replace: purchase multipliers, churn moves, purchase moves."""
    for stage in ALIVE:
        name = f"stages[{names[stage]}]"
        out.drop({f"{name}.purchase_multiplier", f"{name}.daily.{names[CHURN]}"})
        out.add(
            f"{name}.purchase_multiplier",
            1.0,
            "1 in every stage a customer is alive in: each customer's own rate level carries "
            "who buys more",
        )
    for (src, dst), value in on_purchase.items():
        if src not in ALIVE:
            continue
        name = f"stages[{names[src]}].on_purchase.{names[dst]}"
        out.drop({name})
        how = (
            "mean of the dropout levels (beta a / (a + b)), after every purchase"
            if dst == CHURN
            else "the panel's share, times 1 - the mean dropout after a purchase"
        )
        out.add(name, value, how)


def _levels(multipliers: FloatArray, shares: FloatArray) -> list[dict[str, float]]:
    return [
        {"multiplier": float(m), "share": float(s)}
        for m, s in zip(multipliers, shares / shares.sum(), strict=True)
    ]


def fit_levels(
    log: EventLog,
    end: pd.Timestamp,
    ids: pd.Index,
    persona: IntArray,
    n_personas: int,
    boot: Bootstrap,
    out: ParameterTable,
) -> LevelFit:
    """Fit the mixing on the purchase days before ``end`` and cut it into levels, into ``out``
    with intervals (bootstrap replicates refitted)."""
    days = PurchaseDays.from_log(log, end, ids, persona)
    weights = boot.weights[:, pd.Index(ids).astype(str).get_indexer(days.customer_ids)]
    fits = fit_mixing(days, n_personas, weights.astype(float))
    horizon = float(days.age.max())
    k, d = choose_counts(fits[0], days, horizon)
    _record(out, fits, k, d, len(days.repeats), horizon)
    return LevelFit(fits[0], rate_levels(fits[0], k), dropout_levels(fits[0], d))


def _record(
    out: ParameterTable, fits: list[Mixing], k: int, d: int, n: int, horizon: float
) -> None:
    """The table's rows: the mixing's parameters, the level counts and the levels."""
    how = (
        f"maximum likelihood of {n} customers' purchase days (BG/NBD, a gamma scale per "
        f"persona); intervals from {len(fits) - 1} refitted bootstrap replicates"
    )
    out.add("heterogeneity.rate_shape", np.array([f.r for f in fits]), f"gamma r; {how}")
    out.add("heterogeneity.dropout_a", np.array([f.a for f in fits]), f"beta a; {how}")
    out.add("heterogeneity.dropout_b", np.array([f.b for f in fits]), f"beta b; {how}")
    rule = (
        f"fewest levels whose forecast of the calibration customers over {horizon:.0f} days "
        f"stays within {BUCKET_TOLERANCE:.0%} in every purchase-frequency bucket and "
        f"{TOTAL_TOLERANCE:.0%} in total of the continuous mixture's"
    )
    out.add("heterogeneity.rate_level_count", float(k), rule)
    out.add("heterogeneity.dropout_level_count", float(d), rule)
    for p in range(len(fits[0].alpha)):
        name = f"personas[{p}].base_purchase_rate"
        out.drop({name})
        out.add(name, np.array([f.mean_rate[p] for f in fits]), f"per day, r / alpha; {how}")
    rates = np.stack([rate_levels(f, k)[0] for f in fits])
    dropouts = np.stack([dropout_levels(f, d)[0] for f in fits])
    for level in range(rates.shape[1]):
        out.add(
            f"heterogeneity.rate_levels[{level}].multiplier",
            rates[:, level],
            "conditional mean of its gamma bin over the mean rate",
        )
    for level in range(dropouts.shape[1]):
        out.add(
            f"heterogeneity.dropout_levels[{level}].probability",
            dropouts[:, level],
            "conditional mean of its beta bin: chance of dropping out after a purchase",
        )
