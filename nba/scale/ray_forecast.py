"""The belief filter and the exact forecasts over customer partitions, one Ray task each.

:func:`filter_states_on_ray` and :func:`forecast_customers_on_ray` return what
:func:`~nba.calibration.filtering.filter_states` and
:func:`~nba.calibration.exact_forecast.forecast_customers` return, to the bit: the customers
(in the single-process order) are cut into contiguous blocks, each customer's whole history
goes to one block, and each block runs the single-process function in a task.

What a customer's numbers depend on beyond their own history is settled once, here, from the
whole log, and handed to every task: the cutoff (default: midnight after the log's last
event), when the purchase record starts (the log's first purchase: it bounds the days read),
whom to place (everyone with an event in those days), and, for forecasts, the history's
baskets per purchase day (a mean over every customer) and the plan's validation (its errors
name rows of the whole plan). The scenario is put in the object store once; each block's
events and plan are put once, for its task alone, so no task reads the whole log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.calibration.exact_forecast import (
    COLUMNS,
    baskets_per_purchase_day,
    expected_outcomes,
    forecast_cutoff,
    parse_horizon,
    plan_matrix,
)
from nba.calibration.filtering import (
    DEFAULT_LOOKBACK_DAYS,
    StateBelief,
    check_filter_settings,
    filter_states,
    filtered_customers,
    history_start_of,
    record_start_of,
)
from nba.errors import NBAError
from nba.scale import ScaleError, import_ray
from nba.scale.cluster import connect
from nba.scenario import Scenario

__all__ = ["PartitionedRun", "filter_states_on_ray", "forecast_customers_on_ray", "split_blocks"]

DAY = pd.Timedelta(days=1)
T = TypeVar("T")


@dataclass(frozen=True)
class PartitionedRun(Generic[T]):
    """A partitioned run's result, and where and how fast its tasks ran."""

    result: T
    node_ids: tuple[str, ...]  # the Ray node each partition ran on, in partition order
    seconds: float  # wall time of the tasks, from the first submitted to the last result

    @property
    def partitions(self) -> int:
        return len(self.node_ids)


@dataclass(frozen=True)
class _Window:
    """What every partition shares: the settled cutoff, record start and whom to place."""

    end: pd.Timestamp
    record_start: pd.Timestamp
    history_start: str
    ids: pd.Index
    before_cutoff: pd.DataFrame


def split_blocks(n: int, partitions: int) -> list[slice]:
    """Contiguous blocks of ``n`` rows, at most ``partitions``, none empty (one if ``n == 0``).

    :raises ScaleError: ``partitions`` is not a positive whole number.
    """
    if isinstance(partitions, bool) or not isinstance(partitions, (int, np.integer)):
        raise ScaleError(f"partitions: expected a positive whole number, got {partitions!r}")
    if partitions < 1:
        raise ScaleError(f"partitions: expected a positive whole number, got {partitions!r}")
    bounds = np.linspace(0, n, min(int(partitions), max(n, 1)) + 1).round().astype(int)
    return [slice(int(lo), int(hi)) for lo, hi in pairwise(bounds)]


def filter_states_on_ray(
    scenario: Scenario,
    log: EventLog,
    cutoff: pd.Timestamp | str,
    customer_ids: pd.Index | None = None,
    *,
    partitions: int,
    address: str | None = None,
    num_cpus: int | None = None,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    history_start: str | None = None,
    record_start: pd.Timestamp | None = None,
    consent: pd.DataFrame | None = None,
) -> PartitionedRun[StateBelief]:
    """:func:`~nba.calibration.filtering.filter_states` over ``partitions`` Ray tasks.

    :param address: a running cluster (``HOST:PORT``); ``None``: the local one
        (:func:`nba.scale.cluster.connect`, ``num_cpus`` sizing it).
    """
    split_blocks(0, partitions)  # a bad count fails before any work
    window = _window(
        scenario, log, cutoff, customer_ids, lookback_days, history_start, record_start
    )
    blocks = split_blocks(len(window.ids), partitions)
    ray = import_ray()
    connect(address, num_cpus=num_cpus)
    scenario_ref = ray.put(scenario)
    task = _remote(_filter_block)
    calls = []
    for block, events in zip(blocks, _split_rows(window, blocks), strict=True):
        ids = window.ids[block]
        calls.append(
            task.remote(
                scenario_ref,
                ray.put(EventLog(events, None, 0)),
                window.end,
                ids,
                lookback_days,
                window.history_start,
                window.record_start,
                _consent_of(consent, ids),
            )
        )
    began = time.perf_counter()
    parts: list[tuple[StateBelief, str]] = _gather(ray, calls)
    seconds = time.perf_counter() - began
    beliefs = [belief for belief, _ in parts]
    first = beliefs[0]
    levels = None if first.levels is None else np.concatenate([b.joint for b in beliefs])
    belief = StateBelief(
        window.ids,
        np.concatenate([b.probs for b in beliefs]),
        np.concatenate([b.log_likelihood for b in beliefs]),
        first.start,
        first.days,
        first.churn_stage,
        levels,
        first.rate_multipliers,
    )
    return PartitionedRun(belief, tuple(node for _, node in parts), seconds)


def forecast_customers_on_ray(
    scenario: Scenario,
    events: EventLog,
    horizon_days: int | str,
    plan: pd.DataFrame | None = None,
    *,
    partitions: int,
    address: str | None = None,
    num_cpus: int | None = None,
    cutoff: pd.Timestamp | str | None = None,
    customer_ids: pd.Index | None = None,
    history_start: str | None = None,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
) -> PartitionedRun[pd.DataFrame]:
    """:func:`~nba.calibration.exact_forecast.forecast_customers` over ``partitions`` Ray
    tasks (what ``nba forecast`` runs), the same table to the bit."""
    split_blocks(0, partitions)
    days = parse_horizon(horizon_days)
    start = forecast_cutoff(events, cutoff)
    window = _window(scenario, events, start, customer_ids, lookback_days, history_start, None)
    ids = window.ids
    plans: list[pd.DataFrame | None]
    blocks = split_blocks(len(ids), partitions)
    if plan is None:
        plans = [None] * len(blocks)
    else:  # validated whole, so that its errors are the single-process ones
        who = plan["customer_id"].astype(str) if "customer_id" in plan else pd.Series([], dtype=str)
        plan_matrix(scenario, plan, ids[ids.isin(who)], start, days)
        plans = list(_split_plan(plan, ids, blocks))
    bought = events.events[
        (events.events["event"] == "purchased") & (events.events["timestamp"] < start)
    ]
    baskets = baskets_per_purchase_day(bought)  # a mean over the whole history

    ray = import_ray()
    connect(address, num_cpus=num_cpus)
    scenario_ref = ray.put(scenario)
    task = _remote(_forecast_block)
    calls = [
        task.remote(
            scenario_ref,
            ray.put(EventLog(rows, None, 0)),
            start,
            ids[block],
            days,
            None if part is None else ray.put(part),
            lookback_days,
            window.history_start,
            window.record_start,
        )
        for block, rows, part in zip(blocks, _split_rows(window, blocks), plans, strict=True)
    ]
    began = time.perf_counter()
    parts: list[tuple[np.ndarray, str]] = _gather(ray, calls)
    seconds = time.perf_counter() - began
    out = np.concatenate([values for values, _ in parts], axis=1)
    table = pd.DataFrame(
        {
            "customer_id": ids.astype(str),
            "window_start": start,
            "window_end": start + days * DAY,
            "expected_purchases": out[0],
            "expected_baskets": out[0] * baskets,
            "expected_spend": out[1],
            "p_alive_start": out[2],
            "p_alive_end": out[3],
        },
        columns=list(COLUMNS),
    )
    return PartitionedRun(table, tuple(node for _, node in parts), seconds)


# ------------------------------------------------------------------ the driver's share
def _window(
    scenario: Scenario,
    log: EventLog,
    cutoff: pd.Timestamp | str,
    customer_ids: pd.Index | None,
    lookback_days: int,
    history_start: str | None,
    record_start: pd.Timestamp | None,
) -> _Window:
    """What :func:`filter_states` derives from the whole log, derived once (its own helpers)."""
    end = utc_time(cutoff, "cutoff")
    history_start = history_start or history_start_of(scenario)
    check_filter_settings(lookback_days, history_start, 1)
    before_cutoff = log.events[log.events["timestamp"] < end]
    if before_cutoff.empty and record_start is None:
        raise EventLogError(f"events: nothing before the cutoff {end}")
    begins = record_start_of(before_cutoff, end, record_start)
    days = min(max(int(np.ceil((end - begins) / DAY)), 1), lookback_days)
    read = before_cutoff[before_cutoff["timestamp"] >= end - days * DAY]
    ids = filtered_customers(read, customer_ids)
    return _Window(end, begins, history_start, ids, before_cutoff)


def _block_of(who: pd.Series, ids: pd.Index, blocks: list[slice]) -> np.ndarray:
    """Block of each row's customer (-1: not placed)."""
    position = ids.get_indexer(pd.Index(who.astype(str)))
    starts = np.array([b.start for b in blocks])
    block = np.searchsorted(starts, position, side="right") - 1
    block[position < 0] = -1
    return block


def _split_rows(window: _Window, blocks: list[slice]) -> list[pd.DataFrame]:
    """Each block's events before the cutoff, in the log's order, in one pass over the log."""
    return _split(window.before_cutoff, window.ids, blocks)


def _split_plan(plan: pd.DataFrame, ids: pd.Index, blocks: list[slice]) -> list[pd.DataFrame]:
    return _split(plan, ids, blocks)


def _split(frame: pd.DataFrame, ids: pd.Index, blocks: list[slice]) -> list[pd.DataFrame]:
    block = _block_of(frame["customer_id"], ids, blocks)
    order = np.argsort(block, kind="stable")
    edges = np.searchsorted(block[order], np.arange(len(blocks) + 1))
    return [frame.iloc[order[lo:hi]].reset_index(drop=True) for lo, hi in pairwise(edges)]


def _consent_of(consent: pd.DataFrame | None, ids: pd.Index) -> pd.DataFrame | None:
    """A block's rows of ``consent`` (whole frames are checked by every block's filter)."""
    if consent is None or not isinstance(consent, pd.DataFrame):
        return consent
    return consent[consent.index.astype(str).isin(ids)]


@cache
def _remote(function: Callable[..., Any]) -> Any:
    """``function`` as a Ray task, spread over the nodes (made once per process)."""
    return import_ray().remote(function).options(num_cpus=1, scheduling_strategy="SPREAD")


def _gather(ray: Any, calls: list[Any]) -> list[Any]:
    """The tasks' results in order; an error of ours raised in a task is raised as itself."""
    try:
        return list(ray.get(calls))
    except ray.exceptions.RayTaskError as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, NBAError):
            raise cause from None
        raise


# ------------------------------------------------------------------ the tasks
def _node() -> str:
    return str(import_ray().get_runtime_context().get_node_id())


def _filter_block(
    scenario: Scenario,
    log: EventLog,
    end: pd.Timestamp,
    ids: pd.Index,
    lookback_days: int,
    history_start: str,
    record_start: pd.Timestamp,
    consent: pd.DataFrame | None,
) -> tuple[StateBelief, str]:
    belief = filter_states(
        scenario,
        log,
        end,
        ids,
        lookback_days=lookback_days,
        history_start=history_start,
        record_start=record_start,
        consent=consent,
    )
    return belief, _node()


def _forecast_block(
    scenario: Scenario,
    log: EventLog,
    start: pd.Timestamp,
    ids: pd.Index,
    days: int,
    plan: pd.DataFrame | None,
    lookback_days: int,
    history_start: str,
    record_start: pd.Timestamp,
) -> tuple[np.ndarray, str]:
    """(4, n) expected purchases, spend, P(alive) at the start and at the end of a block."""
    belief = filter_states(
        scenario,
        log,
        start,
        ids,
        lookback_days=lookback_days,
        history_start=history_start,
        record_start=record_start,
    )
    actions = None if plan is None else plan_matrix(scenario, plan, ids, start, days)
    result = expected_outcomes(
        scenario, belief, days, actions, start_weekday=int(start.day_of_week)
    )
    values = np.stack([result.purchases, result.spend, result.p_alive_start, result.p_alive_end])
    return values, _node()
