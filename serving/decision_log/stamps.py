"""The log's one timestamp format: UTC text with microseconds, written and read here only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from nba.serving.decision_log.errors import DecisionLogError

__all__ = ["STAMP_FORMAT", "format_stamp", "parse_stamps"]

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # every timestamp in the log: UTC, microseconds
_ARRAYS = (pd.Series, pd.Index, np.ndarray, list, tuple)


def format_stamp(value: Any) -> Any:
    """Timestamps as the log stores them (UTC, ``STAMP_FORMAT``); naive times are taken as UTC.

    A scalar gives a ``str``; a Series, index, array or list gives an object array of ``str``
    (each distinct instant formatted once: a batch shares a handful).
    """
    if isinstance(value, _ARRAYS):
        codes, uniques = _stamp_codes(value)
        return uniques[codes]
    if isinstance(value, datetime):
        text = _quick_stamp(value)
        if text is not None:
            return text
    stamp = pd.Timestamp(value)
    if stamp is pd.NaT:
        raise DecisionLogError("decided_at: no time")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime(STAMP_FORMAT)


def _quick_stamp(value: datetime) -> str | None:
    """``format_stamp`` of one timestamp without pandas' ``strftime`` (a logged request's
    ``decided_at``); ``None`` for what pandas should convert: a moment off UTC, a year outside
    1000-9999. Its own fields are the UTC ones when it is naive or at offset 0 (nanoseconds
    cut, as ``strftime`` cuts them), whatever the unit of a pandas timestamp."""
    if value.tzinfo is not None and value.utcoffset():
        return None
    if not 1000 <= value.year <= 9999:
        return None
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
        f"{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}Z"
    )


def _stamp_codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, formatted distinct instants)``: a batch shares a handful of decision times."""
    index = pd.DatetimeIndex(pd.to_datetime(pd.Index(values), utc=True))
    codes, uniques = pd.factorize(index)
    if (codes < 0).any():
        raise DecisionLogError(f"decided_at[{int(np.flatnonzero(codes < 0)[0])}]: no time")
    return codes, np.asarray(uniques.strftime(STAMP_FORMAT), dtype=object)


def parse_stamps(values: Any) -> pd.DatetimeIndex:
    """Timestamps read from the log (``STAMP_FORMAT`` text) as a UTC index."""
    return pd.DatetimeIndex(pd.to_datetime(pd.Index(values), format=STAMP_FORMAT, utc=True))


def _now() -> str:
    return format_stamp(pd.Timestamp.now(tz="UTC"))
