"""Lift against the persistent holdout: treated vs control, per KPI and segment, with intervals.

Membership is sticky (:mod:`nba.holdout`), so a period's comparison is between customers, not
decisions: every customer decided in the period counts once, in the group of their first
decision there, with their outcomes summed over the period. Randomization makes the difference
of the groups' means an unbiased estimate of what the model adds per customer.

KPIs per customer (from events in the calibration schema, :mod:`nba.calibration.events`):
``revenue`` (purchase values, net of discount), ``purchases``, ``conversion`` (any purchase),
``contacts`` (sends) and, with a scenario, ``value`` = (revenue + discount given) x margin -
discount given - contact cost: the twin's reward without referrals, which no log records.

Intervals: Welch's normal interval for the difference, the delta method for the relative lift
(difference / control mean), or a seeded percentile bootstrap of customers within each group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.types import FloatArray

__all__ = [
    "KPIS",
    "LiftError",
    "cumulative_lift",
    "customer_outcomes",
    "lift",
    "period_customers",
]

KPIS = ("value", "revenue", "purchases", "conversion", "contacts")
Interval = Literal["welch", "bootstrap"]
ALL = "all"  # the segment label of the whole population
_BOOT_CHUNK = 64  # bootstrap replicates drawn at a time (memory: chunk x group size indices)


class LiftError(NBAValidationError):
    """Decisions or outcomes that cannot give a lift; the message names the field."""


# ------------------------------------------------------------------------------ inputs
def _utc(value: Any, name: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise LiftError(f"{name}: not a date or time: {value!r}") from None
    if stamp is pd.NaT:
        raise LiftError(f"{name}: not a date or time: {value!r}")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _require(frame: pd.DataFrame, columns: Sequence[str], table: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise LiftError(f"{table}: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise LiftError(f"{table}.{missing[0]}: missing column")


def period_customers(
    decisions: pd.DataFrame,
    start: Any = None,
    end: Any = None,
    by: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per customer decided in [start, end): ``holdout`` and the ``by`` columns of
    their first decision there, and ``first_decided`` (indexed by ``customer_id`` as text)."""
    columns = _by_columns(by)
    _require(decisions, ["customer_id", "decided_at", "holdout", *columns], "decisions")
    frame = pd.DataFrame(
        {
            "customer_id": decisions["customer_id"].astype(str).to_numpy(),
            "decided_at": pd.to_datetime(decisions["decided_at"], utc=True).to_numpy(),
            "holdout": decisions["holdout"].fillna(False).astype(bool).to_numpy(),
        }
    )
    for column in columns:
        frame[column] = decisions[column].to_numpy()
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True)
    lo, hi = _utc(start, "start"), _utc(end, "end")
    if lo is not None and hi is not None and hi <= lo:
        raise LiftError(f"end: {hi.isoformat()} is not after start {lo.isoformat()}")
    keep = np.ones(len(frame), dtype=bool)
    if lo is not None:
        keep &= (frame["decided_at"] >= lo).to_numpy()
    if hi is not None:
        keep &= (frame["decided_at"] < hi).to_numpy()
    frame = frame[keep]
    if frame.empty:
        window = f"[{lo.isoformat() if lo else '-inf'}, {hi.isoformat() if hi else '+inf'})"
        raise LiftError(f"decisions: none in the period {window}")
    first = frame.sort_values("decided_at", kind="stable").drop_duplicates("customer_id")
    first = first.rename(columns={"decided_at": "first_decided"}).set_index("customer_id")
    return first


def _by_columns(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def customer_outcomes(
    outcomes: pd.DataFrame,
    start: Any = None,
    end: Any = None,
    scenario: Any = None,
) -> pd.DataFrame:
    """Per-customer KPI totals in [start, end), indexed by ``customer_id`` as text.

    ``outcomes``: events in the calibration schema (``customer_id``, ``timestamp``,
    ``event``, ...), or a frame already per customer (``customer_id`` and KPI columns, no
    ``event``), taken as the period's totals.
    """
    if not isinstance(outcomes, pd.DataFrame):
        raise LiftError(f"outcomes: expected a DataFrame, got {type(outcomes).__name__}")
    if "event" not in outcomes.columns:
        _require(outcomes, ["customer_id"], "outcomes")
        present = [k for k in KPIS if k in outcomes.columns]
        if not present:
            raise LiftError(f"outcomes: neither events (an 'event' column) nor any KPI {KPIS}")
        table = outcomes[["customer_id", *present]].copy()
        table["customer_id"] = table["customer_id"].astype(str)
        if table["customer_id"].duplicated().any():
            raise LiftError("outcomes.customer_id: a per-customer frame repeats a customer")
        table = table.set_index("customer_id").astype(np.float64)
        bad = ~np.isfinite(table.to_numpy())
        if bad.any():
            row, col = (int(i[0]) for i in np.nonzero(bad))
            raise LiftError(f"outcomes.{table.columns[col]}[{row}]: not a finite number")
        return table
    events = _events_in(outcomes, start, end)
    return _totals(events, scenario)


def _events_in(outcomes: pd.DataFrame, start: Any, end: Any) -> pd.DataFrame:
    from nba.calibration.events import validate_events

    events, _ = validate_events(outcomes)
    lo, hi = _utc(start, "start"), _utc(end, "end")
    keep = np.ones(len(events), dtype=bool)
    if lo is not None:
        keep &= (events["timestamp"] >= lo).to_numpy()
    if hi is not None:
        keep &= (events["timestamp"] < hi).to_numpy()
    return events[keep]


def _contributions(events: pd.DataFrame, scenario: Any) -> pd.DataFrame:
    """Each event's part of each KPI (one column per KPI, zeros where it adds nothing)."""
    kind = events["event"].astype(str).to_numpy()
    value = events["value"].fillna(0.0).to_numpy(np.float64)
    bought = kind == "purchased"
    parts = {
        "revenue": np.where(bought, value, 0.0),
        "purchases": bought.astype(np.float64),
        "contacts": (kind == "sent").astype(np.float64),
    }
    if scenario is not None:
        from nba.scenarios import load_scenario

        sc = load_scenario(scenario)
        costs = {channel.name: channel.cost for channel in sc.channels}
        channel = events["channel"].astype(object).to_numpy()
        sent = kind == "sent"
        unknown = sent & ~pd.Series(channel).isin(list(costs)).to_numpy()
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise LiftError(
                f"outcomes.channel: {channel[row]!r} is not a channel of scenario {sc.name!r}"
            )
        cost = np.zeros(len(events))
        cost[sent] = [costs[c] for c in channel[sent]]
        redeemed = kind == "redeemed"
        margin = sc.margin_rate
        parts["value"] = (
            np.where(bought, value * margin, 0.0)
            + np.where(redeemed, value * margin - value, 0.0)
            - cost
        )
    return pd.DataFrame(parts, index=events.index)


def _totals(events: pd.DataFrame, scenario: Any) -> pd.DataFrame:
    parts = _contributions(events, scenario)
    parts["customer_id"] = events["customer_id"].astype(str).to_numpy()
    totals = parts.groupby("customer_id", sort=False).sum()
    totals["conversion"] = (totals["purchases"] > 0).astype(np.float64)
    return totals[[k for k in KPIS if k in totals.columns]]


# ------------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class _Comparison:
    difference: float
    difference_lower: float
    difference_upper: float
    lift: float
    lift_lower: float
    lift_upper: float
    std_error: float


def welch_difference(treated: FloatArray, control: FloatArray, z: float) -> _Comparison:
    """Difference of means (and relative lift) with Welch's standard error, +- ``z`` of it."""
    nt, nc = len(treated), len(control)
    mt, mc = float(treated.mean()), float(control.mean())
    vt = float(treated.var(ddof=1)) if nt > 1 else np.nan
    vc = float(control.var(ddof=1)) if nc > 1 else np.nan
    diff = mt - mc
    se = float(np.sqrt(vt / nt + vc / nc))
    if mc != 0:
        rel = diff / mc
        # delta method for mt / mc - 1
        se_rel = float(np.sqrt(vt / (nt * mc**2) + mt**2 * vc / (nc * mc**4)))
    else:
        rel = se_rel = np.nan
    return _Comparison(
        diff, diff - z * se, diff + z * se, rel, rel - z * se_rel, rel + z * se_rel, se
    )


def _bootstrap(
    treated: FloatArray, control: FloatArray, level: float, n_boot: int, rng: np.random.Generator
) -> _Comparison:
    point = welch_difference(treated, control, NormalDist().inv_cdf(0.5 + level / 2))
    means_t, means_c = _boot_means(treated, n_boot, rng), _boot_means(control, n_boot, rng)
    diffs = means_t - means_c
    with np.errstate(divide="ignore", invalid="ignore"):
        lifts = diffs / means_c
    alpha = (1 - level) / 2
    lo_d, hi_d = np.quantile(diffs, [alpha, 1 - alpha])
    finite = lifts[np.isfinite(lifts)]
    lo_r, hi_r = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (np.nan, np.nan)
    return _Comparison(
        point.difference,
        float(lo_d),
        float(hi_d),
        point.lift,
        float(lo_r),
        float(hi_r),
        float(diffs.std(ddof=1)),
    )


def _boot_means(values: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    n = len(values)
    means = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_CHUNK):
        stop = min(start + _BOOT_CHUNK, n_boot)
        picks = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[picks].mean(axis=1)
    return means


@dataclass
class _Comparer:
    """Treated against control for one (segment, KPI): means and the difference's interval."""

    interval: Interval
    level: float
    n_boot: int
    rng: np.random.Generator

    def row(
        self, segment: Any, kpi: str, treated: np.ndarray, control: np.ndarray
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "segment": segment,
            "kpi": kpi,
            "treated_n": len(treated),
            "control_n": len(control),
            "treated_mean": float(treated.mean()) if len(treated) else np.nan,
            "control_mean": float(control.mean()) if len(control) else np.nan,
        }
        if len(treated) < 2 or len(control) < 2:
            stats = _Comparison(*([np.nan] * 7))
        elif self.interval == "bootstrap":
            stats = _bootstrap(treated, control, self.level, self.n_boot, self.rng)
        else:
            stats = welch_difference(treated, control, NormalDist().inv_cdf(0.5 + self.level / 2))
        return row | stats.__dict__


def _chosen_kpis(kpis: Sequence[str] | None, available: list[str]) -> list[str]:
    """The KPIs asked for (default: every one the outcomes allow), each known and available."""
    chosen = list(available if kpis is None else kpis)
    if not chosen:
        raise LiftError("kpis: give at least one KPI")
    for kpi in chosen:
        if kpi not in KPIS:
            raise LiftError(f"kpis: unknown KPI {kpi!r}; expected some of {list(KPIS)}")
        if kpi not in available:
            hint = " (value needs a scenario for margin and costs)" if kpi == "value" else ""
            raise LiftError(f"kpis: {kpi!r} is not in the outcomes{hint}")
    return chosen


def lift(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    kpis: Sequence[str] | None = None,
    by: str | Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    *,
    scenario: Any = None,
    interval: Interval = "welch",
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Treated vs control mean per customer, per KPI and segment, with intervals.

    :param decisions: the decision log's rows: ``customer_id``, ``decided_at``, ``holdout``
        and any ``by`` column (``read_decisions`` in :mod:`nba.cli.lift` reads a log file).
    :param outcomes: events (calibration schema) or a per-customer KPI frame.
    :param kpis: default: every KPI the outcomes allow (``value`` needs ``scenario``).
    :param by: segment column(s) of ``decisions``; rows for each segment follow the ``all`` rows.
    :param start, end: the period [start, end) for decisions and events (open by default;
        events start at the first decision in the period when ``start`` is open).
    :param interval: ``welch`` (normal, Welch's standard error) or ``bootstrap`` (percentile,
        ``n_boot`` replicates from ``seed``).
    :returns: one row per (segment, kpi): ``treated_n``, ``control_n``, ``treated_mean``,
        ``control_mean``, ``difference`` and ``lift`` (relative to control) with their
        ``_lower`` / ``_upper`` bounds, and ``std_error`` of the difference.
    """
    if not 0 < level < 1:
        raise LiftError(f"level: expected a probability in (0, 1), got {level!r}")
    if interval not in ("welch", "bootstrap"):
        raise LiftError(f"interval: expected welch or bootstrap, got {interval!r}")
    if interval == "bootstrap" and (isinstance(n_boot, bool) or int(n_boot) < 2):
        raise LiftError(f"n_boot: expected at least 2 replicates, got {n_boot!r}")
    columns = _by_columns(by)
    customers = period_customers(decisions, start, end, columns)
    lo = _utc(start, "start")
    if lo is None:
        lo = customers["first_decided"].min()
    totals = customer_outcomes(outcomes, lo, end, scenario)
    chosen = _chosen_kpis(kpis, [k for k in KPIS if k in totals.columns])
    values = totals.reindex(customers.index, fill_value=0.0)[chosen].to_numpy(np.float64)
    held = customers["holdout"].to_numpy(bool)
    for group, mask in (("control", held), ("treated", ~held)):
        if mask.sum() < 2:
            count = int(mask.sum())
            raise LiftError(
                f"holdout: the {group} group has {count} customer(s) in the period; "
                "a lift needs at least 2 in each group"
            )
    rng = np.random.default_rng(seed)
    segments: list[tuple[Any, np.ndarray]] = [(ALL, np.ones(len(held), dtype=bool))]
    if columns:
        keys = customers[columns].astype(str).agg("|".join, axis=1).to_numpy()
        segments += [(key, keys == key) for key in sorted(set(keys.tolist()))]
    compare = _Comparer(interval, level, int(n_boot), rng)
    rows = [
        compare.row(segment, kpi, values[inside & ~held, j], values[inside & held, j])
        for segment, inside in segments
        for j, kpi in enumerate(chosen)
    ]
    table = pd.DataFrame(rows)
    finish = _utc(end, "end")
    table.attrs.update(
        start=None if lo is None else lo.isoformat(),
        end=None if finish is None else finish.isoformat(),
    )
    table.attrs.update(level=level, interval=interval)
    return table


# ------------------------------------------------------------------------------ over time
def cumulative_lift(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    kpi: str = "value",
    start: Any = None,
    end: Any = None,
    *,
    scenario: Any = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per day of the period: cumulative ``kpi`` per customer since its start, treated and
    control, with Welch bands (the cohort: customers decided in the period).

    :returns: one row per day: ``day`` (UTC midnight), ``treated_mean``, ``treated_lower``,
        ``treated_upper``, the same for ``control_``, and ``difference`` with its bounds.
    """
    if kpi not in KPIS:
        raise LiftError(f"kpi: unknown KPI {kpi!r}; expected one of {list(KPIS)}")
    if kpi == "value" and scenario is None:
        raise LiftError("kpi: 'value' needs a scenario (margin and contact costs)")
    if not isinstance(outcomes, pd.DataFrame) or "event" not in outcomes.columns:
        raise LiftError("outcomes: a cumulative lift needs events with timestamps")
    customers = period_customers(decisions, start, end)
    lo = _utc(start, "start")
    if lo is None:
        lo = customers["first_decided"].min()
    lo = lo.floor("D")
    events = _events_in(outcomes, lo, end)
    events = events[events["customer_id"].astype(str).isin(customers.index)]
    parts = _contributions(events, scenario) if len(events) else None
    hi = _utc(end, "end")
    last = events["timestamp"].max() if len(events) else customers["first_decided"].max()
    if hi is None:
        hi = last.floor("D") + pd.Timedelta(days=1)
    days = pd.date_range(lo, hi, freq="D", inclusive="left")
    n_days = len(days)
    code = pd.Index(customers.index).get_indexer(events["customer_id"].astype(str))
    offset = ((events["timestamp"] - lo) // pd.Timedelta(days=1)).to_numpy(np.int64)
    if kpi == "conversion":
        contribution = (events["event"].astype(str) == "purchased").to_numpy(np.float64)
    elif parts is not None:
        contribution = parts[kpi].to_numpy(np.float64)
    else:
        contribution = np.zeros(0)
    held = customers["holdout"].to_numpy(bool)
    if held.sum() < 2 or (~held).sum() < 2:
        raise LiftError("holdout: each group needs at least 2 customers in the period")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    order = np.argsort(offset, kind="stable")
    offset, code, contribution = offset[order], code[order], contribution[order]
    bounds = np.searchsorted(offset, np.arange(n_days + 1))
    running = np.zeros(len(customers))
    rows = []
    for d in range(n_days):
        sl = slice(bounds[d], bounds[d + 1])
        np.add.at(running, code[sl], contribution[sl])
        current = (running > 0).astype(np.float64) if kpi == "conversion" else running
        treated, control = current[~held], current[held]
        row: dict[str, Any] = {"day": days[d]}
        for name, group in (("treated", treated), ("control", control)):
            mean, se = group.mean(), group.std(ddof=1) / np.sqrt(len(group))
            row.update(
                {
                    f"{name}_mean": mean,
                    f"{name}_lower": mean - z * se,
                    f"{name}_upper": mean + z * se,
                }
            )
        stats = welch_difference(treated, control, z)
        row.update(
            difference=stats.difference,
            difference_lower=stats.difference_lower,
            difference_upper=stats.difference_upper,
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs.update(kpi=kpi, level=level)
    return table
