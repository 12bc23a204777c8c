"""Journey stages from recency and frequency, and their daily transitions in a purchase panel.

Rules (thresholds are fitted and reported): no purchase yet -> ``aware``; last purchase at most
``active_days`` ago -> ``active``, or ``loyal`` with at least ``loyal_purchases`` purchases in the
past year; older -> ``lapsed``. ``churned`` (gone for good) is never observed directly: customers
reach it through the lapse-to-churn rate. ``active_days`` is the 90th percentile of the gaps
between a customer's purchases (a customer quieter than nine in ten of their usual gaps has
lapsed); ``loyal_purchases`` the 75th percentile of yearly purchases among active customers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.types import FloatArray, IntArray

STAGES = ("aware", "active", "loyal", "lapsed", "churned")
AWARE, ACTIVE, LOYAL, LAPSED, CHURNED = range(5)
DEFAULT_ACTIVE_DAYS = 90
MIN_GAPS = 200  # repeat-purchase gaps needed before the lapse threshold is fitted


@dataclass(frozen=True)
class StageRules:
    """Recency and frequency thresholds of the journey stages."""

    active_days: int
    loyal_purchases: int | None
    fitted_from: str

    @classmethod
    def fit(cls, log: EventLog, reference: pd.Timestamp) -> StageRules:
        """Thresholds from the purchase history before ``reference``."""
        bought = log.events[
            (log.events["event"] == "purchased") & (log.events["timestamp"] < reference)
        ]
        bought = bought.sort_values(["customer_id", "timestamp"], kind="stable")
        same = bought["customer_id"].to_numpy()[1:] == bought["customer_id"].to_numpy()[:-1]
        days = (bought["timestamp"] - reference).dt.total_seconds().to_numpy() / 86_400.0
        gaps = np.diff(days)[same]
        gaps = gaps[gaps >= 1.0]  # same-day baskets are one shopping trip
        if len(gaps) < MIN_GAPS:
            return cls(DEFAULT_ACTIVE_DAYS, None, f"assumed (only {len(gaps)} repeat gaps)")
        active_days = int(np.clip(np.ceil(np.percentile(gaps, 90)), 7, 365))
        year = bought[bought["timestamp"] >= reference - pd.Timedelta(days=365)]
        last = year.groupby("customer_id")["timestamp"].max()
        recent = last[last >= reference - pd.Timedelta(days=active_days)].index
        counts = year.groupby("customer_id").size().reindex(recent)
        loyal = int(max(2, np.ceil(np.percentile(counts, 75)))) if len(counts) else None
        return cls(active_days, loyal, f"fitted from {len(gaps)} repeat-purchase gaps")

    def assign(self, recency_days: FloatArray, frequency: FloatArray) -> IntArray:
        """Stage index from days since the last purchase (NaN: never) and yearly purchases."""
        recency = np.asarray(recency_days, dtype=float)
        stage = np.full(recency.shape, LAPSED, dtype=np.int64)
        stage[np.isnan(recency)] = AWARE
        active = recency <= self.active_days
        stage[active] = ACTIVE
        if self.loyal_purchases is not None:
            stage[active & (np.asarray(frequency) >= self.loyal_purchases)] = LOYAL
        return stage

    def to_dict(self) -> dict[str, Any]:
        return {"stages": list(STAGES), **asdict(self)}


@dataclass(frozen=True)
class PanelCounts:
    """Customer-level counts from a daily panel (for bootstrap by customer)."""

    stage_days: FloatArray  # (N, K) days spent in each stage
    stage_purchases: FloatArray  # (N, K) purchase days in each stage
    moves_quiet: FloatArray  # (N, K, K) stage moves on days without purchase
    moves_bought: FloatArray  # (N, K, K) stage moves on purchase days


def panel_counts(
    log: EventLog,
    rules: StageRules,
    customer_ids: pd.Index,
    start: pd.Timestamp,
    end: pd.Timestamp,
    chunk: int = 20_000,
) -> PanelCounts:
    """Daily stages by the rules over ``[start, end)``, counted per customer.

    Purchases are reduced to purchase days; the stage of a day is judged on the history
    before it, so a purchase moves the customer on the next day, as in the twin.
    """
    n_days = max(int((end - start).days), 0)
    lookback = 365
    origin = start - pd.Timedelta(days=lookback)
    bought = log.events[
        (log.events["event"] == "purchased")
        & (log.events["timestamp"] >= origin)
        & (log.events["timestamp"] < end)
    ]
    row = customer_ids.get_indexer(bought["customer_id"])
    day = ((bought["timestamp"] - origin).dt.total_seconds() // 86_400).astype(int).to_numpy()
    keep = row >= 0
    row, day = row[keep], day[keep]
    before = (
        log.events[(log.events["event"] == "purchased") & (log.events["timestamp"] < origin)]
        .groupby("customer_id")["timestamp"]
        .max()
    )
    earlier = ((before - origin).dt.total_seconds() // 86_400).reindex(customer_ids).to_numpy()

    k = len(STAGES)
    n = len(customer_ids)
    out = PanelCounts(np.zeros((n, k)), np.zeros((n, k)), np.zeros((n, k, k)), np.zeros((n, k, k)))
    total = lookback + n_days
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        part = (row >= lo) & (row < hi)
        purchase = np.zeros((hi - lo, total), dtype=bool)
        purchase[row[part] - lo, day[part]] = True
        # last purchase day strictly before each day (-inf: never)
        days = np.arange(total, dtype=float)
        marked = np.where(purchase, days[None, :], -np.inf)
        last_through = np.maximum.accumulate(marked, axis=1)
        prior = np.concatenate([np.full((hi - lo, 1), -np.inf), last_through[:, :-1]], axis=1)
        prior = np.maximum(prior, np.nan_to_num(earlier[lo:hi], nan=-np.inf)[:, None])
        recency = np.where(np.isfinite(prior), days[None, :] - prior, np.nan)
        cumulative = np.concatenate([np.zeros((hi - lo, 1)), np.cumsum(purchase, axis=1)], axis=1)
        start_col = np.maximum(np.arange(total) - 365, 0)
        frequency = cumulative[:, np.arange(total)] - cumulative[:, start_col]
        stage = rules.assign(recency, frequency)[:, lookback:]
        bought_today = purchase[:, lookback:]
        rows = np.arange(hi - lo)[:, None]
        for s in range(k):
            in_stage = stage == s
            out.stage_days[lo:hi, s] = in_stage.sum(axis=1)
            out.stage_purchases[lo:hi, s] = (in_stage & bought_today).sum(axis=1)
        if n_days > 1:
            src, dst, flag = stage[:, :-1], stage[:, 1:], bought_today[:, :-1]
            flat = src * k + dst
            cell = rows * (k * k) + flat  # one bin per (customer, from, to)
            for target, mask in ((out.moves_quiet, ~flag), (out.moves_bought, flag)):
                counts = np.bincount(cell[mask], minlength=(hi - lo) * k * k)
                target[lo:hi] = counts.reshape(hi - lo, k, k)
    return out
