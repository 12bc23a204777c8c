"""Each customer's stored row as one fixed-width little-endian record (schema version 3).

A customer's summary (:class:`nba.store.observed.Summary`), belief time, log-likelihood and
float32 joint belief are packed into one ``record`` blob, laid out by a numpy structured dtype
(:func:`record_dtype`). Why: reading the whole base is then one column of equal-sized blobs,
joined and read with a single ``numpy.frombuffer`` (1M customers in well under a second), where
fourteen SQL columns cost a Python object per value. Missing times are :data:`NEVER` in the
record (the former nullable columns' NULL). Nothing is pickled: the layout is plain numbers,
and a blob of the wrong size is refused by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nba.store.observed import NEVER, Summary

#: the scalar int64 fields of a record, in order (then habit and log_likelihood as float64)
INT_FIELDS = (
    "first_ts",
    "last_ts",
    "n_events",
    "opted_out_ts",
    "pressure",
    "pressure_day",
    "habit_day",
    "belief_ts",
)


def record_dtype(n_channels: int, belief_shape: Sequence[int]) -> np.dtype:
    """The packed (unaligned, little-endian) layout of one customer's record."""
    fields: list[tuple[Any, ...]] = [(name, "<i8") for name in INT_FIELDS]
    fields += [("habit", "<f8"), ("log_likelihood", "<f8")]
    fields += [("last_sent", "<i8", (n_channels,)), ("consented", "<i8", (n_channels,))]
    fields.append(("belief", "<f4", tuple(int(x) for x in belief_shape)))
    return np.dtype(fields)


@dataclass
class Records:
    """N customers' records unpacked: the summary, belief times, log-likelihoods and beliefs
    (every array its own writable copy)."""

    summary: Summary
    belief_ts: np.ndarray  # (N,) int64
    log_likelihood: np.ndarray  # (N,) float64
    joint: np.ndarray  # (N, *belief shape) float32


def pack(
    dtype: np.dtype,
    summary: Summary,
    belief_ts: np.ndarray,
    log_likelihood: np.ndarray,
    joint: np.ndarray,
) -> list[bytes]:
    """One record blob per customer."""
    table = np.zeros(len(belief_ts), dtype=dtype)
    for name in INT_FIELDS:
        if name != "belief_ts":
            table[name] = getattr(summary, name)
    table["belief_ts"] = belief_ts
    table["habit"] = summary.habit
    table["log_likelihood"] = log_likelihood
    table["last_sent"] = summary.last_sent
    table["consented"] = summary.consented
    table["belief"] = joint
    raw, size = table.tobytes(), dtype.itemsize
    return [raw[k : k + size] for k in range(0, len(raw), size)]


def unpack(dtype: np.dtype, blobs: Sequence[bytes]) -> Records:
    """The records of ``blobs`` (``numpy.frombuffer`` over their concatenation)."""
    from nba.store.database import StoreError

    data = b"".join(blobs)
    size = dtype.itemsize
    if len(data) != size * len(blobs):
        bad = next(i for i, blob in enumerate(blobs) if len(blob) != size)
        raise StoreError(
            f"record: stored blob {bad} has {len(blobs[bad])} bytes, expected {size} "
            "(the store's record layout)"
        )
    table = np.frombuffer(data, dtype=dtype)
    return from_table(table)


def from_table(table: np.ndarray) -> Records:
    """Writable, contiguous, native-endian copies of a record table's fields."""

    def ints(name: str) -> np.ndarray:
        return np.array(table[name], dtype=np.int64)

    summary = Summary(
        first_ts=ints("first_ts"),
        last_ts=ints("last_ts"),
        n_events=ints("n_events"),
        opted_out_ts=ints("opted_out_ts"),
        pressure=ints("pressure"),
        pressure_day=ints("pressure_day"),
        habit=np.array(table["habit"], dtype=np.float64),
        habit_day=ints("habit_day"),
        last_sent=ints("last_sent"),
        consented=ints("consented"),
    )
    return Records(
        summary=summary,
        belief_ts=ints("belief_ts"),
        log_likelihood=np.array(table["log_likelihood"], dtype=np.float64),
        joint=np.array(table["belief"], dtype=np.float32),
    )


def from_columns(rows: Sequence[tuple[Any, ...]], dtype: np.dtype) -> list[bytes]:
    """Records of rows in the version-1/2 column layout (``customer_id`` first, then
    :data:`LEGACY_COLUMNS`), for the migration to version 3."""
    n = len(rows)
    n_channels = dtype["last_sent"].shape[0]
    columns = list(zip(*rows, strict=True)) if rows else [()] * (len(LEGACY_COLUMNS) + 1)

    def ints(k: int) -> np.ndarray:
        return np.array([NEVER if v is None else v for v in columns[k]], dtype=np.int64)

    none = np.full(n_channels, NEVER, dtype="<i8").tobytes()  # a version-1 row: no consent

    def blobs(k: int, dtype: str, width: int) -> np.ndarray:
        joined = b"".join(none if v is None else v for v in columns[k])
        return np.frombuffer(joined, dtype=dtype).reshape(n, width)

    summary = Summary(
        first_ts=ints(1),
        last_ts=ints(2),
        n_events=ints(3),
        opted_out_ts=ints(4),
        pressure=ints(5),
        pressure_day=ints(6),
        habit=np.array(columns[7], dtype=np.float64),
        habit_day=ints(8),
        last_sent=blobs(9, "<i8", n_channels).astype(np.int64),
        consented=blobs(13, "<i8", n_channels).astype(np.int64),
    )
    shape = dtype["belief"].shape
    size = int(np.prod(shape)) * 4
    bad = [i for i, blob in enumerate(columns[11]) if len(blob) != size]
    if bad:
        from nba.store.database import StoreError

        raise StoreError(
            f"belief: stored blob {bad[0]} has {len(columns[11][bad[0]])} bytes, expected {size}"
        )
    joint = np.frombuffer(b"".join(columns[11]), dtype="<f4").reshape(n, *shape)
    return pack(
        dtype, summary, ints(10), np.array(columns[12], dtype=np.float64), joint.astype(np.float32)
    )


#: the version-1/2 ``customers`` columns after ``customer_id`` (``consented`` is NULL in v1)
LEGACY_COLUMNS = (
    "first_ts",
    "last_ts",
    "n_events",
    "opted_out_ts",
    "pressure",
    "pressure_day",
    "habit",
    "habit_day",
    "last_sent",
    "belief_ts",
    "belief",
    "log_likelihood",
    "consented",
)
