"""Events between the event log's frame and the store's rows (integers, sentinel-coded text).

The stored form (:data:`COLUMNS`) is what the ``events`` table holds and what
:mod:`nba.store.observed` reads: ``ts`` in UTC nanoseconds, ``event`` as its index in
:data:`~nba.calibration.events.EVENT_TYPES`, missing text as ``''`` and missing numbers as
``-1`` (the whole row is the table's key, and SQLite's keys treat NULLs as all different).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.events import EVENT_TYPES, EventLog

COLUMNS = ("customer_id", "ts", "event", "channel", "action", "value", "propensity")
NO_TEXT = ""
NO_NUMBER = -1.0
CODE = {name: i for i, name in enumerate(EVENT_TYPES)}


def nanoseconds(stamps: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC nanoseconds since the epoch of timezone-aware times, whatever their unit."""
    index = pd.DatetimeIndex(stamps).tz_convert("UTC").as_unit("ns")
    return np.asarray(index.asi8, dtype=np.int64)


def encode(events: pd.DataFrame) -> pd.DataFrame:
    """The stored form of validated events (:attr:`EventLog.events`)."""
    return pd.DataFrame(
        {
            "customer_id": events["customer_id"].astype(str).to_numpy(dtype=object),
            "ts": nanoseconds(events["timestamp"]),
            "event": pd.Categorical(events["event"], categories=EVENT_TYPES).codes.astype(np.int64),
            "channel": _text(events["channel"]),
            "action": _text(events["action"]),
            "value": events["value"].astype(float).fillna(NO_NUMBER).to_numpy(),
            "propensity": events["propensity"].astype(float).fillna(NO_NUMBER).to_numpy(),
        }
    )


def from_records(rows: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
    """Stored rows as fetched from the ``events`` table, as a frame of the stored form."""
    if not rows:
        return empty()
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    frame["ts"] = frame["ts"].astype(np.int64)
    frame["event"] = frame["event"].astype(np.int64)
    return frame


def empty() -> pd.DataFrame:
    """No events, in the stored form."""
    return pd.DataFrame(
        {
            "customer_id": np.array([], dtype=object),
            "ts": np.array([], dtype=np.int64),
            "event": np.array([], dtype=np.int64),
            "channel": np.array([], dtype=object),
            "action": np.array([], dtype=object),
            "value": np.array([], dtype=float),
            "propensity": np.array([], dtype=float),
        }
    )


def records(frame: pd.DataFrame) -> Iterator[tuple[Any, ...]]:
    """Rows for ``executemany`` (plain Python values: sqlite3 does not bind numpy scalars)."""
    columns = [frame[c].to_numpy().tolist() for c in COLUMNS]
    return zip(*columns, strict=True)


def to_log(frame: pd.DataFrame) -> EventLog:
    """Stored rows back in the event log's canonical form (for the filter)."""
    events = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].astype(str),
            "timestamp": pd.to_datetime(frame["ts"].to_numpy(dtype=np.int64), utc=True),
            "event": pd.Categorical.from_codes(
                frame["event"].to_numpy(dtype=np.int64), categories=pd.Index(EVENT_TYPES)
            ),
            "channel": _missing_text(frame["channel"]),
            "action": _missing_text(frame["action"]),
            "value": frame["value"].where(frame["value"] != NO_NUMBER),
            "propensity": frame["propensity"].where(frame["propensity"] != NO_NUMBER),
        }
    )
    return EventLog(events.reset_index(drop=True))


def _text(column: pd.Series) -> np.ndarray:
    return column.astype("string").fillna(NO_TEXT).to_numpy(dtype=object)


def _missing_text(column: pd.Series) -> pd.Series:
    text = column.astype("string")
    return text.where(text != NO_TEXT)
