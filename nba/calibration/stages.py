"""Journey stages from recency and frequency, and their daily transitions in a purchase panel.

Rules (thresholds are fitted and reported): no purchase yet -> ``aware``; last purchase at most
``active_days`` ago -> ``active``, or ``loyal`` with at least ``loyal_purchases`` purchases in the
past year; older -> ``lapsed``. ``churned`` (gone for good) is never observed directly: with a
purchase panel its rates are fitted from how returns decay (lapsed) and from the histories'
likelihood (the rest, :mod:`nba.calibration.fit`); otherwise they are priors.
``active_days`` is the 90th percentile of the gaps between a customer's purchases (a customer
quieter than nine in ten of their usual gaps has lapsed); ``loyal_purchases`` the 75th
percentile of yearly purchases among active customers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap
from nba.calibration.events import EventLog, EventLogError
from nba.scenario import Scenario
from nba.types import FloatArray, IntArray

STAGES = ("aware", "active", "loyal", "lapsed", "churned")
AWARE, ACTIVE, LOYAL, LAPSED, CHURNED = range(5)
DEFAULT_ACTIVE_DAYS = 90
MIN_GAPS = 200  # repeat-purchase gaps needed before the lapse threshold is fitted
LAPSE_BIN_DAYS = 14  # lapsed days are counted by time since lapsing in bins of this width
LAPSE_BINS = 26  # ... up to a year; older lapses share the last bin
MIN_LAPSED_RETURNS = 30  # returns from lapsed needed before the lapsed churn rate is fitted


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

    def to_dict(self, names: Sequence[str] = STAGES) -> dict[str, Any]:
        """The thresholds, and the scenario's names of the stages they assign (in STAGES order)."""
        return {"stages": list(names), **asdict(self)}


def stage_roles(template: Scenario, stages: Mapping[str, str] | None = None) -> dict[str, str]:
    """The template's stage that plays each rule stage (:data:`STAGES`), in STAGES order.

    The rules observe five stages (never bought, bought recently, bought often, bought long
    ago, gone); a business calls them what it likes (a subscription's ``trial`` is retail's
    ``aware``). ``stages`` maps a rule stage to the template's name for it; a rule stage it
    leaves out keeps its own name, except ``churned``, which defaults to the template's churn
    stage.
    """
    given = dict(stages or {})
    unknown = sorted(set(given) - set(STAGES))
    if unknown:
        raise EventLogError(f"stages: {unknown} are not rule stages; expected some of {STAGES}")
    given.setdefault(STAGES[CHURNED], template.churn_stage)
    roles = {role: given.get(role, role) for role in STAGES}
    missing = [name for name in roles.values() if name not in template.stage_names]
    if missing:
        raise EventLogError(
            f"stages: template {template.name!r} has no stage {missing}; map the rule stages "
            f"{list(STAGES)} to its stages {template.stage_names}"
        )
    if len(set(roles.values())) < len(roles):
        raise EventLogError(f"stages: two rule stages share one template stage in {roles}")
    return roles


@dataclass(frozen=True)
class PanelCounts:
    """Customer-level counts from a daily panel (for bootstrap by customer)."""

    stage_days: FloatArray  # (N, K) days spent in each stage
    stage_purchases: FloatArray  # (N, K) purchase days in each stage
    moves_quiet: FloatArray  # (N, K, K) stage moves on days without purchase
    moves_bought: FloatArray  # (N, K, K) stage moves on purchase days
    lapsed_days: FloatArray | None = None  # (N, LAPSE_BINS) lapsed days by time since lapsing
    lapsed_returns: FloatArray | None = None  # (N, LAPSE_BINS) purchase days among them
    lapse: LapseFit | None = None  # the lapsed churn fit, once made


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
    row, day, earlier = _purchase_days(log, customer_ids, origin, end)

    k = len(STAGES)
    n = len(customer_ids)
    out = PanelCounts(
        np.zeros((n, k)),
        np.zeros((n, k)),
        np.zeros((n, k, k)),
        np.zeros((n, k, k)),
        np.zeros((n, LAPSE_BINS)),
        np.zeros((n, LAPSE_BINS)),
    )
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
        lapsed = stage == LAPSED
        # days since lapsing: 0 on the first day past ``active_days`` without a purchase
        age = recency[:, lookback:] - rules.active_days - 1
        age_bin = np.clip(np.nan_to_num(age, nan=0.0) // LAPSE_BIN_DAYS, 0, LAPSE_BINS - 1)
        cells = (rows * LAPSE_BINS + age_bin.astype(np.int64))[lapsed]
        size = (hi - lo) * LAPSE_BINS
        out.lapsed_days[lo:hi] = np.bincount(cells, minlength=size).reshape(hi - lo, -1)
        returned = (rows * LAPSE_BINS + age_bin.astype(np.int64))[lapsed & bought_today]
        out.lapsed_returns[lo:hi] = np.bincount(returned, minlength=size).reshape(hi - lo, -1)
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


def _purchase_days(
    log: EventLog, customer_ids: pd.Index, origin: pd.Timestamp, end: pd.Timestamp
) -> tuple[IntArray, IntArray, FloatArray]:
    """Customer row and day (from ``origin``) of each purchase in ``[origin, end)``, and each
    customer's last purchase day before ``origin`` (negative; NaN: none)."""
    purchased = log.events[log.events["event"] == "purchased"]
    bought = purchased[(purchased["timestamp"] >= origin) & (purchased["timestamp"] < end)]
    row = customer_ids.get_indexer(bought["customer_id"])
    day = ((bought["timestamp"] - origin).dt.total_seconds() // 86_400).astype(int).to_numpy()
    keep = row >= 0
    before = purchased[purchased["timestamp"] < origin].groupby("customer_id")["timestamp"].max()
    earlier = ((before - origin).dt.total_seconds() // 86_400).reindex(customer_ids).to_numpy()
    return row[keep], day[keep], earlier


@dataclass(frozen=True)
class LapseFit:
    """Lapsed customers' churn rate, from how their return rate decays with time lapsed.

    In the twin a lapsed customer buys with daily probability ``h`` (per persona) while alive
    and, on a day without purchase, churns with probability ``c``. Among customers still lapsed
    ``a`` days after lapsing, the share alive is ``pi(a) = q^a / S(a)`` with ``q = (1-h)(1-c)``
    and ``S(a) = q^a + (1-h) c (1 - q^a) / (1 - q)``, so the daily return rate is ``h pi(a)``.
    ``c`` and the ``h`` are fitted by maximum likelihood (grid search, ``c = 0`` included) on
    the panel's lapsed days and returns by time since lapsing, per bootstrap replicate.
    """

    churn: FloatArray  # (B + 1,) daily lapsed -> churned rate
    alive: FloatArray  # (P, LAPSE_BINS) share alive among the still-lapsed (point estimate)
    returns: int  # returns from lapsed the fit saw

    @classmethod
    def fit(cls, panel: PanelCounts, persona: IntArray, boot: Bootstrap) -> LapseFit | None:
        """None when the panel has too few returns from lapsed to see a decay."""
        if panel.lapsed_days is None or panel.lapsed_returns is None:
            return None
        returns = int(panel.lapsed_returns.sum())
        if returns < MIN_LAPSED_RETURNS:
            return None
        n_personas = int(persona.max()) + 1
        days = boot.group_sums(panel.lapsed_days, persona, n_personas)  # (B+1, P, bins)
        bought = boot.group_sums(panel.lapsed_returns, persona, n_personas)
        age = (np.arange(LAPSE_BINS) + 0.5) * LAPSE_BIN_DAYS - 0.5
        churn_grid = np.concatenate([[0.0], np.geomspace(1e-5, 0.2, 120)])
        h_grid = np.geomspace(1e-4, 0.9, 200)
        rate = h_grid[None, :, None] * _alive(h_grid[None, :, None], churn_grid[:, None, None], age)
        rate = np.clip(rate, 1e-12, 1.0 - 1e-12)  # (C, H, bins)
        log_hit, log_miss = np.log(rate), np.log1p(-rate)
        churn = np.zeros(days.shape[0])
        best_h = np.zeros(n_personas)
        for b in range(days.shape[0]):
            fit = np.einsum("chk,pk->chp", log_hit, bought[b])
            fit += np.einsum("chk,pk->chp", log_miss, days[b] - bought[b])
            profile = fit.max(axis=1)  # best h per persona for each c: (C, P)
            c = int(np.argmax(profile.sum(axis=1)))
            churn[b] = churn_grid[c]
            if b == 0:
                best_h = h_grid[np.argmax(fit[c], axis=0)]
        alive = _alive(best_h[:, None], churn[0], age[None, :])
        return cls(churn=churn, alive=alive, returns=returns)

    def alive_days(self, panel: PanelCounts, persona: IntArray) -> FloatArray:
        """(N, K) stage days with lapsed days counted only while alive (expected)."""
        assert panel.lapsed_days is not None  # fit() checked
        days = panel.stage_days.copy()
        days[:, LAPSED] = (panel.lapsed_days * self.alive[persona]).sum(axis=1)
        return days

    def attach(self, panel: PanelCounts) -> PanelCounts:
        return replace(panel, lapse=self)


def _alive(h: FloatArray, c: FloatArray | float, age: FloatArray) -> FloatArray:
    """Share alive among customers lapsed for ``age`` days without a return (see LapseFit)."""
    q = (1.0 - h) * (1.0 - c)
    stay = q**age
    gone = (1.0 - h) * c * (1.0 - stay) / np.maximum(1.0 - q, 1e-12)
    total = stay + gone
    return np.where(total > 0, stay / np.where(total > 0, total, 1.0), 1.0)
