"""What the scorer returns for one customer, and the decision times exploration draws from.

A :class:`Decision` is the single-customer answer (``PolicyScorer.score``); a batch answers one
DataFrame row per customer with the same fields. Decision times are nanoseconds since the epoch
mod 2**64 whatever the timestamp's resolution, so a customer's exploration draw is the same on
every entry point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.types import FloatArray

_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


@dataclass
class Decision:
    """The decision for one customer."""

    customer_id: str
    action: int
    action_name: str
    channel: str | None
    offer: str | None
    propensity: float
    value_estimate: float
    model_version: str
    explored: bool
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    suppressed: dict[str, str] | None = None
    holdout: bool = False  # in the persistent control group: the control decided


class TracedDecision(NamedTuple):
    """A single-path decision with the context a decision log records for it."""

    decision: Decision
    decided_at: pd.Timestamp  # UTC
    features: FloatArray  # (F,) the network's input row
    probabilities: FloatArray  # (A,) the policy's probabilities over every action


def nanoseconds(moment: pd.Timestamp) -> int:
    """A decision time in nanoseconds since the epoch, mod 2**64 (any pandas resolution)."""
    try:
        return moment.value % 2**64
    except OverflowError:  # outside nanoseconds' years 1677-2262: from the coarser unit
        ticks = int(moment.asm8.view(np.int64))
        return (ticks * _NS_PER_UNIT[moment.unit]) % 2**64


def decision_times(as_of: pd.Series | pd.Timestamp, n: int) -> npt.NDArray[np.uint64]:
    """(n,) decision times in nanoseconds mod 2**64, as :func:`nanoseconds` gives each."""
    if isinstance(as_of, pd.Series):
        times = pd.DatetimeIndex(as_of)
        ticks = times.asi8.view(np.uint64)
        return ticks * np.uint64(_NS_PER_UNIT[times.unit])
    return np.full(n, nanoseconds(as_of), dtype=np.uint64)
