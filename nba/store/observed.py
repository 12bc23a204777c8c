"""A customer's observed state from their events, by the twin's own rules.

The twin moves the observed parts of a state one day at a time
(:func:`nba.contact_rules.advance_contact_history`, :mod:`nba.dynamics`); here the same rules
read a history of timestamped events. Days are UTC calendar days; the state *as of* a time
``t`` is the state at the start of instant ``t``: events stamped before ``t`` are in it.

- **Pressure** (the leaky bucket): a day with sends on channels the scenario knows adds the
  channels' pressure weights (several sends in a day each add theirs), a day without drains
  ``pressure_drain``, clipped to ``0 .. pressure_capacity``. As of ``t`` the complete days
  before ``t``'s day count, plus the sends of ``t``'s own day so far (the day is not over, so it
  has not drained yet). A send on a channel the scenario does not have adds nothing.
- **Days since the last contact** per cap rule: whole 24-hour periods from the latest send on
  any of the rule's channels to ``t``, floored, clipped to ``1 .. window`` (never contacted: the
  window), exactly as a scoring request's ``last_contact_*`` timestamps are read.
- **Opt-out**: an ``unsubscribed`` event, and it is permanent.
- **Consent**: a ``consented`` event grants its channel from its time on (the first such event
  per channel counts; a grant is withdrawn only by the opt-out, as in the twin).
- **Discount habit**: the event schema has no "discounted" flag on a purchase; a ``redeemed``
  event (a discount redemption) marks the day's purchase as discounted. The twin forms a habit
  with probability ``gain`` on such a day and loses it with probability ``decay`` on every other
  day; the store keeps that probability (starting from no habit, as the filter does) and the
  request's ``discount_habit`` flag is ``probability >= 0.5``.

:func:`summarise` keeps, per customer, what these rules need to give the state at any time
after the last event (:func:`state_at`): the pressure and habit after their last eventful day,
that day, the last send per channel and the opt-out time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.scenario import Scenario
from nba.store.rows import CODE
from nba.types import FloatArray, IntArray

DAY_NS = 86_400 * 10**9
NEVER = np.iinfo(np.int64).min
HABIT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ObservedRules:
    """The scenario's numbers the observed state follows."""

    channels: tuple[str, ...]
    channel_pressure: IntArray  # (C,)
    capacity: int
    drain: int
    habit_gain: float
    habit_decay: float
    cap_names: tuple[str, ...]
    cap_windows: IntArray  # (G,)
    cap_members: tuple[tuple[int, ...], ...]  # channel indices of each cap rule

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> ObservedRules:
        channels = tuple(scenario.channel_names)
        rules = scenario.contact_rules
        return cls(
            channels=channels,
            channel_pressure=np.array([c.pressure for c in scenario.channels], dtype=np.int64),
            capacity=int(rules.pressure_capacity),
            drain=int(rules.pressure_drain),
            habit_gain=float(scenario.discount_habit.gain),
            habit_decay=float(scenario.discount_habit.decay),
            cap_names=tuple(cap.name for cap in rules.caps),
            cap_windows=np.array([cap.window_days for cap in rules.caps], dtype=np.int64),
            cap_members=tuple(tuple(channels.index(c) for c in cap.channels) for cap in rules.caps),
        )

    @property
    def capped_channels(self) -> list[str]:
        """Channels some cap rule covers (the request's ``last_contact_*`` fields), sorted."""
        return sorted({self.channels[c] for members in self.cap_members for c in members})


@dataclass
class Summary:
    """What the store keeps of N customers' observed histories (one row each)."""

    first_ts: IntArray
    last_ts: IntArray
    n_events: IntArray
    opted_out_ts: IntArray  # NEVER: not opted out
    pressure: IntArray  # after the last contact day
    pressure_day: IntArray  # that day (NEVER: no contact)
    habit: FloatArray  # P(discount habit) after the last redemption day
    habit_day: IntArray  # that day (NEVER: no redemption)
    last_sent: IntArray  # (N, C) time of the last send per channel (NEVER: none)
    consented: IntArray  # (N, C) time of the first consent per channel (NEVER: none)


def summarise(history: pd.DataFrame, ids: pd.Index, rules: ObservedRules) -> Summary:
    """The summary of each of ``ids`` from their events (stored form, any order)."""
    n = len(ids)
    row = ids.get_indexer(pd.Index(history["customer_id"]))
    ts = history["ts"].to_numpy(dtype=np.int64)
    event = history["event"].to_numpy(dtype=np.int64)
    order = np.lexsort((ts, row))
    row, ts, event = row[order], ts[order], event[order]
    channel = pd.Index(rules.channels).get_indexer(pd.Index(history["channel"].to_numpy()[order]))
    counts = np.bincount(row, minlength=n)
    ends = np.cumsum(counts)
    seen = counts > 0
    first_ts = np.full(n, NEVER, dtype=np.int64)
    last_ts = np.full(n, NEVER, dtype=np.int64)
    first_ts[seen] = ts[(ends - counts)[seen]]
    last_ts[seen] = ts[ends[seen] - 1]

    unsubscribed = event == CODE["unsubscribed"]
    opted_out_ts = np.full(n, NEVER, dtype=np.int64)
    first_unsub = np.unique(row[unsubscribed], return_index=True)  # sorted by time: the first
    opted_out_ts[first_unsub[0]] = ts[unsubscribed][first_unsub[1]]

    sent = (event == CODE["sent"]) & (channel >= 0)
    last_sent = np.full((n, len(rules.channels)), NEVER, dtype=np.int64)
    np.maximum.at(last_sent, (row[sent], channel[sent]), ts[sent])

    granted = (event == CODE["consented"]) & (channel >= 0)
    consented = np.full((n, len(rules.channels)), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(consented, (row[granted], channel[granted]), ts[granted])
    consented[consented == np.iinfo(np.int64).max] = NEVER

    day = ts // DAY_NS
    pressure, pressure_day = _leaky_bucket(
        row[sent], day[sent], rules.channel_pressure[channel[sent]], n, rules
    )
    redeemed = event == CODE["redeemed"]
    habit, habit_day = _habit(row[redeemed], day[redeemed], n, rules)
    return Summary(
        first_ts,
        last_ts,
        counts,
        opted_out_ts,
        pressure,
        pressure_day,
        habit,
        habit_day,
        last_sent,
        consented,
    )


def state_at(summary: Summary, as_of: int, rules: ObservedRules) -> dict[str, np.ndarray]:
    """The observed state as of ``as_of`` (UTC ns), for customers whose last event is before it.

    Returns ``pressure``, ``habit_probability``, ``discount_habit``, ``opted_out``,
    ``days_since`` (N, G), ``last_contact`` (N, C) (NEVER: none) and ``consented`` (N, C): the
    channels granted before ``as_of`` (a later grant does not count yet).
    """
    today = as_of // DAY_NS
    quiet = np.where(summary.pressure_day == NEVER, 0, today - 1 - summary.pressure_day)
    pressure = np.maximum(summary.pressure - rules.drain * np.maximum(quiet, 0), 0)
    idle = np.where(summary.habit_day == NEVER, 0, today - 1 - summary.habit_day)
    habit = summary.habit * (1.0 - rules.habit_decay) ** np.maximum(idle, 0)
    days_since = np.empty((len(pressure), len(rules.cap_windows)), dtype=np.int64)
    for g, (members, window) in enumerate(
        zip(rules.cap_members, rules.cap_windows.tolist(), strict=True)
    ):
        latest = summary.last_sent[:, list(members)].max(axis=1)
        never = latest == NEVER
        elapsed = (as_of - np.where(never, as_of, latest)) // DAY_NS
        days_since[:, g] = np.where(never, window, np.clip(elapsed, 1, window))
    return {
        "pressure": pressure,
        "habit_probability": habit,
        "discount_habit": habit >= HABIT_THRESHOLD,
        "opted_out": (summary.opted_out_ts != NEVER) & (summary.opted_out_ts < as_of),
        "days_since": days_since,
        "last_contact": summary.last_sent,
        "consented": (summary.consented != NEVER) & (summary.consented < as_of),
    }


def _eventful_days(
    row: IntArray, day: IntArray, weight: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """(row, day, summed weight) of each distinct (customer, day), input sorted by row, time."""
    if row.size == 0:
        return row, day, weight
    starts = np.flatnonzero(np.r_[True, (row[1:] != row[:-1]) | (day[1:] != day[:-1])])
    return row[starts], day[starts], np.add.reduceat(weight, starts)


def _leaky_bucket(
    row: IntArray, day: IntArray, weight: IntArray, n: int, rules: ObservedRules
) -> tuple[IntArray, IntArray]:
    """Pressure after each customer's last contact day, and that day (NEVER: none)."""
    row, day, weight = _eventful_days(row, day, weight)
    pressure = np.zeros(n, dtype=np.int64)
    last = np.full(n, NEVER, dtype=np.int64)
    for who, k in _by_rank(row, n):
        gap = np.where(last[who] == NEVER, 0, day[k] - last[who] - 1)
        drained = np.maximum(pressure[who] - rules.drain * gap, 0)
        pressure[who] = np.minimum(drained + weight[k], rules.capacity)
        last[who] = day[k]
    return pressure, last


def _habit(
    row: IntArray, day: IntArray, n: int, rules: ObservedRules
) -> tuple[FloatArray, IntArray]:
    """P(discount habit) after each customer's last redemption day, and that day."""
    row, day, _ = _eventful_days(row, day, np.zeros(row.size, dtype=np.int64))
    habit = np.zeros(n)
    last = np.full(n, NEVER, dtype=np.int64)
    for who, k in _by_rank(row, n):
        gap = np.where(last[who] == NEVER, 0, day[k] - last[who] - 1)
        kept = habit[who] * (1.0 - rules.habit_decay) ** gap
        habit[who] = kept + (1.0 - kept) * rules.habit_gain
        last[who] = day[k]
    return habit, last


def _by_rank(row: IntArray, n: int) -> list[tuple[IntArray, IntArray]]:
    """For j = 0, 1, ...: the customers with a j-th entry and its position (row-sorted input),
    so a sequential rule runs vectorised over customers, one step per entry rank."""
    counts = np.bincount(row, minlength=n)
    offsets = np.cumsum(counts) - counts
    steps = []
    for j in range(int(counts.max(initial=0))):
        who = np.flatnonzero(counts > j)
        steps.append((who, offsets[who] + j))
    return steps
