"""The event-log schema a twin is calibrated from, and its validating loader.

An event log is one row per thing that happened to a customer:

==============  =====================================================================  ========
column          meaning                                                                required
==============  =====================================================================  ========
``customer_id`` identifier (string or integer, read as string)                         yes
``timestamp``   when it happened (ISO 8601; naive times are read as UTC)                yes
``event``       one of :data:`EVENT_TYPES`                                              yes
``channel``     the contact channel (``sent``, ``held_out``, ``opened``, ...); for      no
                ``consented``, the channel the customer granted marketing consent on
``action``      the campaign, offer or experiment arm                                  no
``value``       money for ``purchased`` / ``redeemed``; >= 0                           no
``propensity``  for ``sent`` / ``held_out``: the logging probability of that choice    no
==============  =====================================================================  ========

``held_out`` records a deliberate non-contact (a control group); with ``propensity`` it makes
randomized uplift identifiable. ``consented`` records a grant of marketing consent on one
channel (one event per channel; ``unsubscribed`` stays the marketing opt-out that withdraws every
channel needing consent); calibration does not read it, the customer-state store does (a
``consented`` event needs its channel). An optional customer table has ``customer_id`` plus any
attribute columns (numbers, booleans or categories) used to find personas.

Problems raise :class:`EventLogError` naming the row and the field. Duplicate rows are an error
by default (``duplicates="drop"`` drops them and the count is kept and reported).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError

EVENT_TYPES = (
    "sent",
    "held_out",
    "opened",
    "clicked",
    "visited",
    "purchased",
    "redeemed",
    "unsubscribed",
    "consented",  # last: the store keeps events by their index in this tuple
)
CONTACT_EVENTS = ("sent", "held_out")
REQUIRED = ("customer_id", "timestamp", "event")
OPTIONAL = ("channel", "action", "value", "propensity")


class EventLogError(NBAValidationError):
    """An event log or customer table that cannot be used; names the row and field."""


@dataclass(frozen=True)
class EventLog:
    """Validated events (sorted by time) and an optional customer table."""

    events: pd.DataFrame
    customers: pd.DataFrame | None = None
    dropped_duplicates: int = 0

    @classmethod
    def from_frames(
        cls,
        events: pd.DataFrame,
        customers: pd.DataFrame | None = None,
        duplicates: Literal["error", "drop"] = "error",
    ) -> EventLog:
        """Validate and normalise; see the module docstring for the schema."""
        clean, dropped = validate_events(events, duplicates=duplicates)
        table = validate_customers(customers) if customers is not None else None
        return cls(clean, table, dropped)

    @property
    def customer_ids(self) -> pd.Index:
        """Every customer that appears in the events or the customer table."""
        ids = pd.Index(self.events["customer_id"].unique())
        if self.customers is not None:
            ids = ids.union(pd.Index(self.customers["customer_id"]))
        return ids

    def between(self, start: pd.Timestamp | None, end: pd.Timestamp | None) -> EventLog:
        """Events with ``start <= timestamp < end`` (either bound may be open)."""
        keep = np.ones(len(self.events), dtype=bool)
        if start is not None:
            keep &= (self.events["timestamp"] >= utc_time(start, "start")).to_numpy()
        if end is not None:
            keep &= (self.events["timestamp"] < utc_time(end, "end")).to_numpy()
        return EventLog(self.events[keep].reset_index(drop=True), self.customers, 0)

    def for_customers(self, ids: pd.Index | np.ndarray) -> EventLog:
        """The events and customer rows of ``ids`` only."""
        wanted = pd.Index(ids).astype(str)
        events = self.events[self.events["customer_id"].isin(wanted)].reset_index(drop=True)
        customers = None
        if self.customers is not None:
            mask = self.customers["customer_id"].isin(wanted)
            customers = self.customers[mask].reset_index(drop=True)
        return EventLog(events, customers, 0)


def load_events(
    path: str | Path,
    customers: str | Path | None = None,
    duplicates: Literal["error", "drop"] = "error",
) -> EventLog:
    """Read events (and a customer table) from CSV or parquet and validate them."""
    return EventLog.from_frames(
        _read_table(Path(path), "events"),
        _read_table(Path(customers), "customers") if customers is not None else None,
        duplicates=duplicates,
    )


def save_events(log: EventLog, path: str | Path, customers: str | Path | None = None) -> None:
    """Write an event log (parquet or CSV by suffix), e.g. an adapter's output."""
    _write_table(log.events, Path(path))
    if customers is not None and log.customers is not None:
        _write_table(log.customers, Path(customers))


def validate_events(
    frame: pd.DataFrame, duplicates: Literal["error", "drop"] = "error"
) -> tuple[pd.DataFrame, int]:
    """The events in canonical form (typed, UTC, sorted) and the number of duplicates dropped."""
    if not isinstance(frame, pd.DataFrame):
        raise EventLogError(f"events: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise EventLogError(f"events: missing column(s) {missing}; required are {list(REQUIRED)}")
    if frame.empty:
        raise EventLogError("events: no rows")
    out = pd.DataFrame(index=frame.index)
    out["customer_id"] = _identifiers(frame, "events")
    out["timestamp"] = _timestamps(frame["timestamp"], "events", "timestamp")
    event = frame["event"].astype("string").str.strip().str.lower()
    unknown = ~event.isin(EVENT_TYPES) | event.isna()
    if unknown.any():
        row = frame.index[int(np.flatnonzero(unknown.to_numpy())[0])]
        raise EventLogError(
            f"events row {row!r}, event: unknown type {frame['event'].loc[row]!r}; "
            f"expected one of {list(EVENT_TYPES)}"
        )
    out["event"] = pd.Categorical(event, categories=EVENT_TYPES)
    for column in ("channel", "action"):
        text = frame[column].astype("string").str.strip() if column in frame else None
        out[column] = text.replace("", pd.NA) if text is not None else pd.NA
        out[column] = out[column].astype("string")
    for column in ("value", "propensity"):
        out[column] = _numbers(frame, column) if column in frame else np.nan
    bad = out["propensity"].notna() & ~out["propensity"].between(0.0, 1.0, inclusive="right")
    if bad.any():
        row = out.index[int(np.flatnonzero(bad.to_numpy())[0])]
        raise EventLogError(
            f"events row {row!r}, propensity: {out.at[row, 'propensity']} is outside (0, 1]"
        )
    needs_channel = (out["event"] == "sent") | (out["event"] == "consented")
    no_channel = needs_channel & out["channel"].isna()
    if no_channel.any():
        row = out.index[int(np.flatnonzero(no_channel.to_numpy())[0])]
        kind = out.at[row, "event"]
        raise EventLogError(f"events row {row!r}, channel: a {kind!r} event needs its channel")
    repeated = out.duplicated(keep="first")
    dropped = int(repeated.sum())
    if dropped and duplicates == "error":
        rows = list(out.index[repeated.to_numpy()][:5])
        raise EventLogError(
            f"events: {dropped} duplicate row(s), e.g. rows {rows}; pass duplicates='drop' to "
            "drop them (the count is reported)"
        )
    out = out[~repeated.to_numpy()]
    out = out.sort_values(["timestamp", "customer_id"], kind="stable").reset_index(drop=True)
    return out, dropped


def validate_customers(frame: pd.DataFrame) -> pd.DataFrame:
    """The customer table with string ids, one row per customer."""
    if not isinstance(frame, pd.DataFrame):
        raise EventLogError(f"customers: expected a DataFrame, got {type(frame).__name__}")
    if "customer_id" not in frame.columns:
        raise EventLogError("customers: missing column 'customer_id'")
    out = frame.copy()
    out["customer_id"] = _identifiers(frame, "customers")
    repeated = out["customer_id"].duplicated()
    if repeated.any():
        row = out.index[int(np.flatnonzero(repeated.to_numpy())[0])]
        raise EventLogError(
            f"customers row {row!r}, customer_id: {out.at[row, 'customer_id']!r} appears twice"
        )
    return out.reset_index(drop=True)


def _identifiers(frame: pd.DataFrame, table: str) -> pd.Series:
    ids = frame["customer_id"]
    empty = ids.isna() | (ids.astype("string").str.strip() == "")
    if empty.any():
        row = frame.index[int(np.flatnonzero(empty.to_numpy())[0])]
        raise EventLogError(f"{table} row {row!r}, customer_id: missing or empty")
    if pd.api.types.is_float_dtype(ids) and (ids == ids.round()).all():
        ids = ids.astype(np.int64)  # CSV readers turn integer ids with gaps into floats
    return ids.astype(str)


def _timestamps(values: pd.Series, table: str, column: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values
    else:
        parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna()
    if bad.any():
        row = values.index[int(np.flatnonzero(bad.to_numpy())[0])]
        raise EventLogError(f"{table} row {row!r}, {column}: cannot read {values.loc[row]!r}")
    if parsed.dt.tz is None:
        parsed = parsed.dt.tz_localize("UTC")
    return parsed.dt.tz_convert("UTC")


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    unreadable = values.isna() & frame[column].notna()
    if unreadable.any():
        row = frame.index[int(np.flatnonzero(unreadable.to_numpy())[0])]
        raise EventLogError(
            f"events row {row!r}, {column}: not a number ({frame[column].loc[row]!r})"
        )
    finite = values.dropna()
    infinite = ~np.isfinite(finite.to_numpy(dtype=float))
    if infinite.any():
        row = finite.index[int(np.flatnonzero(infinite)[0])]
        raise EventLogError(f"events row {row!r}, {column}: infinite")
    negative = values < 0
    if negative.any():
        row = frame.index[int(np.flatnonzero(negative.to_numpy())[0])]
        raise EventLogError(f"events row {row!r}, {column}: {values.loc[row]} is negative")
    return values.astype(float)


def utc_time(moment: pd.Timestamp | str, field: str = "timestamp") -> pd.Timestamp:
    """``moment`` as a UTC timestamp (naive times are read as UTC); ``field`` names it in errors."""
    try:
        stamp = pd.Timestamp(moment)
    except (TypeError, ValueError):
        raise EventLogError(f"{field}: cannot read {moment!r} as a time") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _read_table(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise EventLogError(f"{what}: no file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".gz", ".txt"):
        return pd.read_csv(path, dtype={"customer_id": str}, low_memory=False)
    raise EventLogError(f"{what}: {path.name} is neither .csv nor .parquet")


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    from nba.io import csv_bytes, write_bytes_atomic

    if path.suffix.lower() == ".parquet":
        write_bytes_atomic(path, frame.to_parquet(index=False))
    else:  # text a spreadsheet would run as a formula gets a leading quote (ids alike in both)
        write_bytes_atomic(path, csv_bytes(frame))
