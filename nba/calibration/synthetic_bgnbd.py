"""Purchase-only event logs drawn from a BG/NBD process: a log where BG/NBD is the true model.

The process of Fader, Hardie & Lee (2005): each customer has a purchase rate
``lambda ~ Gamma(r, alpha)`` (per week) and a dropout probability ``p ~ Beta(a, b)``. While
alive they buy as a Poisson process at rate ``lambda``; right after each *repeat* purchase they
drop out with probability ``p`` (the trial purchase never ends a life, as in the model's
likelihood, so a customer with no repeat purchase is alive for sure).

Cohort convention: a panel by default, everyone makes their trial purchase at ``start``
(``birth_weeks=0``); ``birth_weeks > 0`` spreads the trial purchases uniformly over the first
``birth_weeks`` weeks instead (customers acquired over time, each with their own ``T``).

Each purchase carries a spend drawn from the gamma-gamma model (Fader, Hardie & Lee 2005b):
a customer's mean spend ``p_s / nu`` with ``nu ~ Gamma(q, gamma)``, each basket
``~ Gamma(p_s, nu)``; defaults near the published CDNOW fit (6.25, 3.74, 15.44).

The defaults (r 0.25, alpha 5, a 0.7, b 2.2; 25,000 customers; 39 weeks to calibrate and 39
to forecast) are the size of published retail fits, with strong heterogeneity in both rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.errors import NBAValidationError
from nba.types import FloatArray, IntArray

WEEK = pd.Timedelta(weeks=1)
START = pd.Timestamp("2024-01-01T00:00:00Z")


class SyntheticBGNBDError(NBAValidationError):
    """A setting of the BG/NBD log generator that cannot be used; names the field."""


@dataclass(frozen=True)
class BGNBDTruth:
    """The mixing distributions behind a synthetic log (rates per week)."""

    r: float = 0.25
    alpha: float = 5.0
    a: float = 0.7
    b: float = 2.2
    spend_p: float = 6.25
    spend_q: float = 3.74
    spend_gamma: float = 15.44

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (np.isfinite(value) and value > 0):
                raise SyntheticBGNBDError(f"{name}: must be a finite number > 0, got {value}")

    @property
    def params(self) -> dict[str, float]:
        """The four BG/NBD parameters by name (what a BG/NBD fit should recover)."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}


@dataclass(frozen=True)
class SyntheticBGNBD:
    """A generated log, its windows and each customer's truth (arrays in ``customer_ids``
    order; times in weeks since ``start``)."""

    log: EventLog
    truth: BGNBDTruth
    customer_ids: pd.Index
    rate: FloatArray  # lambda, purchases per week while alive
    dropout: FloatArray  # p, the chance of dropping out after each repeat purchase
    birth: FloatArray  # week of the trial purchase
    death: FloatArray  # week of dropping out (inf: alive through the forecast window)
    start: pd.Timestamp
    calibration_end: pd.Timestamp
    forecast_end: pd.Timestamp

    def alive_at(self, when: pd.Timestamp) -> np.ndarray:
        """Who is still alive at ``when`` (born before it and not yet dropped out)."""
        weeks = (pd.Timestamp(when) - self.start) / WEEK
        return (self.birth <= weeks) & (self.death > weeks)

    def purchases_between(self, begin: pd.Timestamp, end: pd.Timestamp) -> IntArray:
        """Each customer's number of purchases in ``[begin, end)``."""
        events = self.log.between(begin, end).events
        bought = events.loc[events["event"] == "purchased", "customer_id"]
        rows = self.customer_ids.get_indexer(pd.Index(bought))
        return np.bincount(rows, minlength=len(self.customer_ids))


def simulate_bgnbd(
    n_customers: int = 25_000,
    *,
    calibration_weeks: float = 39.0,
    forecast_weeks: float = 39.0,
    truth: BGNBDTruth | None = None,
    birth_weeks: float = 0.0,
    start: pd.Timestamp | str = START,
    seed: int | np.random.Generator = 0,
) -> SyntheticBGNBD:
    """Draw ``n_customers`` BG/NBD histories over calibration + forecast windows.

    The log holds ``purchased`` events only (with ``value``), over both windows; cut it at
    ``calibration_end`` to calibrate and score the forecast on what follows.
    """
    truth = truth or BGNBDTruth()
    _check(n_customers, calibration_weeks, forecast_weeks, birth_weeks)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    horizon = calibration_weeks + forecast_weeks
    rate = rng.gamma(truth.r, 1.0 / truth.alpha, n_customers)
    dropout = rng.beta(truth.a, truth.b, n_customers)
    birth = rng.uniform(0.0, birth_weeks, n_customers) if birth_weeks > 0 else np.zeros(n_customers)
    lifetime = rng.geometric(dropout)  # the repeat purchase after which each one drops out
    rang = rng.poisson(rate * (horizon - birth))  # purchases an immortal would make
    owner = np.repeat(np.arange(n_customers), rang)
    when = birth[owner] + rng.uniform(0.0, 1.0, owner.size) * (horizon - birth[owner])
    order = np.lexsort((when, owner))
    owner, when = owner[order], when[order]
    rank = np.arange(owner.size) - np.repeat(np.cumsum(rang) - rang, rang)  # 0-based per owner
    made = np.minimum(rang, lifetime)
    keep = rank < made[owner]
    owner, when = owner[keep], when[keep]
    death = np.full(n_customers, np.inf)
    died = lifetime <= rang
    last = np.cumsum(made) - 1  # index of each customer's last kept purchase
    death[died] = when[last[died]]
    # the trial purchases, then every repeat purchase, each with a gamma-gamma spend
    owner = np.concatenate([np.arange(n_customers), owner])
    when = np.concatenate([birth, when])
    nu = rng.gamma(truth.spend_q, 1.0 / truth.spend_gamma, n_customers)
    value = rng.gamma(truth.spend_p, 1.0 / nu[owner])
    begin = pd.Timestamp(start)
    begin = begin.tz_localize("UTC") if begin.tzinfo is None else begin.tz_convert("UTC")
    ids = pd.Index([f"c{i:07d}" for i in range(n_customers)], name="customer_id")
    seconds = np.round(when * WEEK.total_seconds()).astype(np.int64)
    events = pd.DataFrame(
        {
            "customer_id": ids.to_numpy()[owner],
            "timestamp": begin + pd.to_timedelta(seconds, unit="s"),
            "event": "purchased",
            "value": np.round(value, 2),
        }
    )
    return SyntheticBGNBD(
        log=EventLog.from_frames(events, duplicates="drop"),
        truth=truth,
        customer_ids=ids,
        rate=rate,
        dropout=dropout,
        birth=birth,
        death=death,
        start=begin,
        calibration_end=begin + calibration_weeks * WEEK,
        forecast_end=begin + horizon * WEEK,
    )


def _check(n: int, calibration: float, forecast: float, births: float) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise SyntheticBGNBDError(f"n_customers: expected a positive whole number, got {n!r}")
    for name, value in (("calibration_weeks", calibration), ("forecast_weeks", forecast)):
        if not (np.isfinite(value) and value > 0):
            raise SyntheticBGNBDError(f"{name}: must be a finite number > 0, got {value}")
    if not (np.isfinite(births) and 0 <= births < calibration):
        raise SyntheticBGNBDError(
            f"birth_weeks: must be >= 0 and below calibration_weeks ({calibration}), got {births}"
        )
