"""Channel capacity shared by a base decided in partitions: two passes, one global cut.

A scarce channel's limit holds for the whole base, so partitions decided apart (on Ray
workers) cannot each allocate it. Two passes give exactly the single-process allocation of
:mod:`nba.serving.capacity` over the partitions concatenated in order:

1. each partition is scored with a :class:`CapacityRecorder`: it keeps the few rows that can
   matter (per scarce channel the partition's best ``sum(limits)`` positive gains: any other
   row has ``sum(limits)`` better ones in its own partition, so it is out of the global top
   too; exploring, the best ``limit`` rows the channel is allowed for) and how many of each
   scarce channel the holdout's control decisions use;
2. :func:`global_plan` puts the kept rows together in partition order (so ties fall as in one
   batch: first rows win), subtracts the control's use from the limits, and allocates once
   (:func:`~nba.serving.capacity.allocate`; exploring, :func:`~nba.serving.capacity.open_to`);
3. each partition is scored again with the :class:`CapacityPlan`: a row takes the channel the
   plan gave it (or its unlimited fallback), and explores only what the plan opened to it.

The kept rows are those :func:`~nba.serving.capacity.allocate` itself would consider, in the
same order, so the linear programme, and so the plan, are the single batch's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nba.types import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:
    from nba.serving.scorer import PolicyScorer


@dataclass
class PartSummary:
    """What pass 1 keeps of one partition: candidate rows' ids and gains (one column per scarce
    channel, in channel-index order), rows each channel is allowed for, and the holdout
    control's contacts on every channel."""

    channels: list[int] = field(default_factory=list)  # the gains' columns (channel indices)
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))
    gains: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    eligible: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    control_use: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class CapacityRecorder:
    """Pass 1: records a partition's candidates instead of deciding its capacity.

    The batch decides with its own local allocation meanwhile; those decisions are discarded.
    """

    def __init__(self) -> None:
        self.summary = PartSummary()

    def note_control_use(self, used: IntArray) -> None:
        """The control's contacts per channel (all channels, by channel index)."""
        self.summary.control_use = np.asarray(used, dtype=np.int64)

    def record(
        self, ids: np.ndarray, gains: FloatArray, channels: Sequence[int], limits: Sequence[int]
    ) -> None:
        order = np.argsort(channels, kind="stable")  # columns by channel index
        keep = _kept_rows(gains, limits)
        self.summary.channels = sorted(channels)
        self.summary.ids = np.asarray(ids, dtype=object)[keep]
        self.summary.gains = gains[np.ix_(keep, order)]
        self.summary.eligible = np.isfinite(gains[:, order]).sum(axis=0).astype(np.int64)


@dataclass(frozen=True)
class CapacityPlan:
    """Pass 2: each candidate's scarce channel (``assigned``, a channel index, -1 for none)
    and, exploring, the customers each channel is open to (``None``: everyone it is allowed
    for)."""

    assigned: pd.Series  # customer id -> channel index, or -1
    opened: dict[int, pd.Index | None]  # channel index -> who it is open to

    def assignment(self, ids: np.ndarray, channels: Sequence[int]) -> IntArray:
        """(N,) each row's scarce channel as a position in ``channels`` (a batch's order)."""
        found = self.assigned.reindex(pd.Index(np.asarray(ids, dtype=object)))
        channel = found.fillna(-1).to_numpy(dtype=np.int64)
        position = np.full(max([*channels, int(channel.max(initial=-1))]) + 2, -1, np.int64)
        position[np.asarray(channels, dtype=np.int64) + 1] = np.arange(len(channels))
        out: IntArray = position[channel + 1]  # -1 (none) reads slot 0: -1
        return out

    def opened_to(self, ids: np.ndarray, gains: FloatArray, channels: Sequence[int]) -> BoolArray:
        """(N, K) which rows each scarce channel (columns in ``channels`` order) is open to."""
        opened = np.isfinite(gains)
        keys = pd.Index(np.asarray(ids, dtype=object))
        for k, channel in enumerate(channels):
            chosen = self.opened.get(channel)
            if chosen is not None:
                opened[:, k] &= keys.isin(chosen)
        return opened


def global_plan(
    parts: Sequence[PartSummary], limits: Mapping[int, int], exploring: bool
) -> CapacityPlan:
    """One allocation for all partitions (in their order) from their pass-1 summaries.

    ``limits`` maps channel index to limit in the order a batch's allocation takes its columns
    (:func:`~nba.serving.capacity.scarce_limits`'): with ties, which optimal plan the
    programme returns depends on that order.
    """
    from nba.serving.capacity import allocate

    channels = list(limits)
    k = len(channels)
    used = np.zeros(k, np.int64)
    for part in parts:
        if part.control_use.size:
            used += part.control_use[channels]
    left = np.maximum(np.array([limits[c] for c in channels], dtype=np.int64) - used, 0)
    ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, dtype=object)
    gains = np.vstack([_columns(p, channels) for p in parts]) if parts else np.zeros((0, k))
    index = pd.Index(ids, dtype=object)
    if not exploring:
        assigned = allocate(gains, left.tolist())
        channel = np.where(assigned >= 0, np.asarray(channels)[np.maximum(assigned, 0)], -1)
        return CapacityPlan(pd.Series(channel, index=index), dict.fromkeys(channels))
    eligible = np.zeros(k, np.int64)
    for part in parts:
        if part.eligible.size:
            eligible += part.eligible[[part.channels.index(c) for c in channels]]
    opened: dict[int, pd.Index | None] = {}
    for j, channel_index in enumerate(channels):
        if eligible[j] <= left[j]:
            opened[channel_index] = None
            continue
        rows = np.flatnonzero(np.isfinite(gains[:, j]))
        order = np.argsort(-gains[rows, j], kind="stable")[: int(left[j])]
        opened[channel_index] = pd.Index(ids[rows[order]], dtype=object)
    return CapacityPlan(pd.Series(np.full(len(ids), -1), index=index), opened)


def _columns(part: PartSummary, channels: list[int]) -> FloatArray:
    """A summary's gains with columns in ``channels`` order (a partition without scarce
    candidates has none)."""
    if not len(part.ids):
        return np.zeros((0, len(channels)))
    position = [part.channels.index(c) for c in channels]
    out: FloatArray = part.gains[:, position]
    return out


def _kept_rows(gains: FloatArray, limits: Sequence[int]) -> IntArray:
    """Rows that can be in the global allocation or the global opening, in order."""
    total = int(sum(limits))
    useful = np.where(np.isfinite(gains) & (gains > 0), gains, 0.0)
    keep = np.zeros(gains.shape[0], dtype=bool)
    for channel, limit in enumerate(limits):
        top = np.argsort(-useful[:, channel], kind="stable")[:total]
        keep[top[useful[top, channel] > 0]] = True
        rows = np.flatnonzero(np.isfinite(gains[:, channel]))
        best = np.argsort(-gains[rows, channel], kind="stable")[: int(limit)]
        keep[rows[best]] = True
    kept: IntArray = np.flatnonzero(keep)
    return kept


def summarize_partition(scorer: PolicyScorer, frame: pd.DataFrame, **options: Any) -> PartSummary:
    """Pass 1 for one partition (``options`` as :meth:`PolicyScorer.score_batch` takes them)."""
    recorder = CapacityRecorder()
    scorer.score_batch(frame, capacity_plan=recorder, **options)
    return recorder.summary


def plan_for(
    scorer: PolicyScorer,
    parts: Sequence[PartSummary],
    capacity: Mapping[str, int | None] | None = None,
) -> CapacityPlan:
    """The base's plan from its partitions' summaries, under ``scorer``'s limits."""
    from nba.serving.capacity import scarce_limits

    names = scorer.policy.scenario.channel_names
    limits = {names.index(c): v for c, v in scarce_limits(scorer.policy.scenario, capacity).items()}
    return global_plan(parts, limits, scorer.exploration.kind != "greedy")


def decide_partitions(
    scorer: PolicyScorer, frames: Sequence[pd.DataFrame], **options: Any
) -> list[pd.DataFrame]:
    """Every partition decided as one batch of them all would be, one partition at a time
    (the in-process engine; :mod:`nba.scale` runs the same passes on Ray)."""
    parts = [summarize_partition(scorer, frame, **options) for frame in frames]
    plan = plan_for(scorer, parts, options.get("capacity"))
    return [scorer.score_batch(frame, capacity_plan=plan, **options) for frame in frames]
