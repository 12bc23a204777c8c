"""The decision log: every served decision, append-only, atomic and idempotent, for off-policy
evaluation. This module owns it whole: the schema and its versions, the timestamp format, the
writer (:class:`DecisionLog`) and the reader (:func:`read_decision_log`).

Guarantees (SQLite in WAL mode with ``synchronous=FULL``):

- **Atomic batches.** One batch, whatever its size, is one transaction, and so is every group of
  batches given to :meth:`DecisionLog.append_batches` together. After a crash or ``kill -9`` at
  any moment each batch is wholly there or wholly absent; once ``append`` returns it is on disk.
- **Idempotent.** Every batch has a ``batch_id`` (the caller's, or a random UUID), stored once in
  ``batches`` with its row count and a SHA-256 of its content; each decision row stores its batch
  and its position in it (unique together). Appending a ``batch_id`` that is already there writes
  nothing and returns 0; the same id with different content is refused
  (:class:`BatchConflictError`), nothing written.
- **Several writers.** Processes may append to one file at once: a transaction takes the write
  lock up front (``BEGIN IMMEDIATE``), waits for it (SQLite's busy timeout) and is retried on
  ``SQLITE_BUSY`` until ``timeout`` seconds have passed (then :class:`DecisionLogBusyError`).
  Threads may share one :class:`DecisionLog`: its connection is used under a lock (SQLite admits
  one writer at a time anyway); a forked child opens its own connection on first use.
- **Versioned schema.** ``meta.schema_version``; an older log is migrated in place when opened
  for writing (provenance columns, then batches), one transaction; readers never change a file.

Rows keep what off-policy evaluation needs: the context (features), the action, its logging
propensity, the policy's probabilities over all actions and the model version. Rewards arrive
later as **outcomes** keyed by ``customer_id`` and ``decided_at`` (see :func:`write_outcomes`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import pandas as pd

from nba.errors import NBAError, NBAValidationError

if TYPE_CHECKING:
    from nba.ope.data import LoggedBandit
    from nba.types import BoolArray, FloatArray, IntArray

__all__ = [
    "OUTCOMES_TABLE",
    "SCHEMA_VERSION",
    "STAMP_FORMAT",
    "BatchConflictError",
    "BatchRecord",
    "DecisionLog",
    "DecisionLogBusyError",
    "DecisionLogError",
    "DecisionRecords",
    "LoggedBatch",
    "Missing",
    "check_decision_log",
    "format_stamp",
    "parse_stamps",
    "read_decision_log",
    "write_outcomes",
]

# ---------------------------------------------------------------------------------- the schema
SCHEMA_VERSION = 3  # 1: decisions and meta; 2: + provenance columns; 3: + batches, pending runs
STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # every timestamp in the log: UTC, microseconds
OUTCOMES_TABLE = "outcomes"
_ARRAYS = (pd.Series, pd.Index, np.ndarray, list, tuple)
_BATCH_ID_LIMIT = 200  # characters
_CHUNK = 65_536  # rows converted to Python values at a time while streaming into SQLite
_BOUND_ROWS = 1_024  # batches up to this size share one executemany per group, every value bound
_IN_LIMIT = 512  # batch ids looked up per query (SQLite's oldest limit on parameters is 999)

_DECISIONS = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    model_version TEXT NOT NULL,
    action INTEGER NOT NULL,
    action_name TEXT NOT NULL,
    propensity REAL NOT NULL CHECK (propensity > 0 AND propensity <= 1),
    explored INTEGER NOT NULL,
    features BLOB NOT NULL,
    probabilities BLOB NOT NULL,
    model_name TEXT,
    model_number TEXT,
    run_id TEXT,
    batch INTEGER REFERENCES batches(id),
    position INTEGER
)"""
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_BATCHES = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    row_count INTEGER NOT NULL,
    content_sha256 TEXT NOT NULL,
    logged_at TEXT NOT NULL
)"""
_BATCH_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS decisions_batch_position ON decisions (batch, position)"
)
_PENDING = """
CREATE TABLE IF NOT EXISTS pending_runs (
    key TEXT PRIMARY KEY,
    as_of TEXT NOT NULL,
    started_at TEXT NOT NULL
)"""
_OUTCOMES = f"""
CREATE TABLE IF NOT EXISTS {OUTCOMES_TABLE} (
    customer_id TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    reward REAL NOT NULL,
    PRIMARY KEY (customer_id, decided_at)
)"""
_PROVENANCE = ("model_name", "model_number", "run_id")
_ADDED_COLUMNS = {  # columns of ``decisions`` that older versions lack, in the order added
    "model_name": "TEXT",
    "model_number": "TEXT",
    "run_id": "TEXT",
    "batch": "INTEGER REFERENCES batches(id)",
    "position": "INTEGER",
}
_TABLES = {"decisions", "meta", "batches", "pending_runs", OUTCOMES_TABLE, "sqlite_sequence"}
_COLUMNS = (  # of ``decisions`` written per row, in the INSERT's order
    "customer_id",
    "decided_at",
    "model_version",
    "action",
    "action_name",
    "propensity",
    "explored",
    "features",
    "probabilities",
    "model_name",
    "model_number",
    "run_id",
    "batch",
    "position",
)


class DecisionLogError(NBAValidationError):
    """A log file this version cannot use, or a batch that cannot be logged as given."""


class BatchConflictError(DecisionLogError):
    """A ``batch_id`` already logged with different content: a reused key, never a retry."""

    def __init__(self, message: str, batch_id: str) -> None:
        super().__init__(message)
        self.batch_id = batch_id


class DecisionLogBusyError(NBAError, TimeoutError):
    """Other writers held the log's write lock for longer than the timeout."""


# ---------------------------------------------------------------------------- timestamps
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


# ---------------------------------------------------------------------------------- writing
@dataclass(frozen=True, eq=False)
class LoggedBatch:
    """One batch of decisions to log: the arguments of :meth:`DecisionLog.append` as a value,
    so that several (one per HTTP request, say) can be committed in one transaction."""

    customer_id: Any  # (n,) ids
    decided_at: Any  # one timestamp for the batch, or (n,) of them
    model_version: str
    actions: Any  # (n,) action indices
    action_names: Any  # (n,)
    propensities: Any  # (n,) in (0, 1]
    explored: Any  # (n,) bool
    features: Any  # (n, F)
    probabilities: Any  # (n, A)
    feature_names: Sequence[str] | None = None
    batch_id: str | None = None


@dataclass(frozen=True)
class BatchRecord:
    """A logged batch, as ``batches`` holds it."""

    batch_id: str
    rows: int
    content_sha256: str
    logged_at: pd.Timestamp


class _Prepared:
    """A validated batch: columns in storage types, its content hash, and rows on demand."""

    def __init__(self, batch: LoggedBatch) -> None:
        self.batch_id = _batch_id(batch.batch_id)
        ids = np.asarray(batch.customer_id)
        if ids.ndim != 1:
            raise DecisionLogError(f"customer_id: expected shape (n,), got {ids.shape}")
        n = self.n = len(ids)
        self.ids = ids
        stamps = batch.decided_at
        if isinstance(stamps, _ARRAYS):
            self.stamp_codes, self.stamp_values = _stamp_codes(stamps)
            _check_length("decided_at", len(self.stamp_codes), n)
        else:
            self.stamp_codes = np.zeros(n, dtype=np.intp)
            self.stamp_values = np.asarray([format_stamp(stamps)], dtype=object)
        self.model_version = str(batch.model_version)
        self.provenance = tuple(
            None
            if getattr(batch.model_version, part, None) is None
            else str(getattr(batch.model_version, part))
            for part in ("name", "version", "run_id")
        )
        self.actions = np.asarray(batch.actions).astype(np.int64, copy=False)
        self.name_codes, names = pd.factorize(np.asarray(batch.action_names, dtype=object))
        self.name_values = np.asarray([str(name) for name in names], dtype=object)
        self.propensities = np.asarray(batch.propensities, dtype=np.float64)
        self.explored = np.asarray(batch.explored).astype(bool, copy=False)
        for name, column in (
            ("actions", self.actions),
            ("action_names", self.name_codes),
            ("propensities", self.propensities),
            ("explored", self.explored),
        ):
            _check_length(name, column.shape[0] if column.ndim == 1 else -1, n)
        outside = ~((self.propensities > 0) & (self.propensities <= 1))
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise DecisionLogError(
                f"propensities[{row}]: {self.propensities[row]} is outside (0, 1]"
            )
        self.features = _blobs("features", batch.features, n)
        self.probabilities = _blobs("probabilities", batch.probabilities, n)
        self.feature_names = _names_json(batch.feature_names)
        self.sha256 = self._digest()

    def _digest(self) -> str:
        """SHA-256 of everything the rows store, so a retry can be told from a reused id."""
        digest = hashlib.sha256()

        def part(data: bytes | np.ndarray) -> None:
            if isinstance(data, np.ndarray):  # hashed in place: no copy of a 1M-row matrix
                data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)

        part(f"{self.n}|{self.model_version}|{_json_of(self.provenance)}".encode())
        part((self.feature_names or "").encode())
        for start in range(0, self.n, _CHUNK):
            ids = np.asarray([str(i) for i in self.ids[start : start + _CHUNK].tolist()], str)
            part(ids.dtype.str.encode())
            part(ids.tobytes())
        part("\x00".join(self.stamp_values.tolist()).encode())
        part(np.asarray(self.stamp_codes, dtype=np.int64))
        part("\x00".join(self.name_values.tolist()).encode())
        part(np.asarray(self.name_codes, dtype=np.int64))
        part(self.actions)
        part(self.propensities)
        part(self.explored)
        part(self.features.dtype.str.encode())
        part(self.features)
        part(self.probabilities.dtype.str.encode())
        part(self.probabilities)
        return digest.hexdigest()

    def insert(self, batch: int) -> tuple[str, Iterator[tuple[Any, ...]]]:
        """The INSERT statement and its row tuples for ``executemany``, streamed a chunk at a
        time (memory stays flat whatever the batch's size).

        Values shared by every row (model version and provenance, the batch, a single decision
        time) are written into the statement as SQL literals instead of being bound once per
        row: a third fewer parameters, a third less time on a 1M-row batch.
        """
        name, number, run_id = self.provenance
        shared: dict[str, Any] = {
            "model_version": self.model_version,
            "model_name": name,
            "model_number": number,
            "run_id": run_id,
            "batch": batch,
        }
        if len(self.stamp_values) == 1:
            shared["decided_at"] = self.stamp_values[0]
        literals = {column: _literal(value) for column, value in shared.items()}
        fixed = {column: text for column, text in literals.items() if text is not None}
        varying = [column for column in _COLUMNS if column not in fixed]
        statement = (
            f"INSERT INTO decisions ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join(fixed.get(column, '?') for column in _COLUMNS)})"
        )

        def rows() -> Iterator[tuple[Any, ...]]:
            for start in range(0, self.n, _CHUNK):
                stop = min(start + _CHUNK, self.n)
                yield from zip(*self._chunk(start, stop, varying, shared), strict=True)

        return statement, rows()

    def bound_rows(self, batch: int) -> Iterable[tuple[Any, ...]]:
        """Rows for :data:`_INSERT` (every value bound), to share one ``executemany`` with the
        other small batches of a group: one compiled statement however many batches."""
        name, number, run_id = self.provenance
        shared = {
            "model_version": self.model_version,
            "model_name": name,
            "model_number": number,
            "run_id": run_id,
            "batch": batch,
        }
        return zip(*self._chunk(0, self.n, list(_COLUMNS), shared), strict=True)

    def _chunk(
        self, start: int, stop: int, columns: list[str], shared: dict[str, Any]
    ) -> list[Any]:
        """Rows ``start:stop`` of ``columns`` as Python values (``bytes`` for float32 rows)."""
        sliced = slice(start, stop)
        convert: dict[str, Callable[[], Any]] = {
            "customer_id": lambda: [str(i) for i in self.ids[sliced].tolist()],
            "decided_at": lambda: self.stamp_values[self.stamp_codes[sliced]].tolist(),
            "action": lambda: self.actions[sliced].tolist(),
            "action_name": lambda: self.name_values[self.name_codes[sliced]].tolist(),
            "propensity": lambda: self.propensities[sliced].tolist(),
            "explored": lambda: self.explored[sliced].astype(np.int64).tolist(),
            "features": lambda: self.features[sliced].tolist(),
            "probabilities": lambda: self.probabilities[sliced].tolist(),
            "position": lambda: range(start, stop),
        }
        return [
            convert[column]() if column in convert else [shared[column]] * (stop - start)
            for column in columns
        ]


_INSERT = f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_NATIVE_INT64, _NATIVE_FLOAT64 = struct.Struct("=q"), struct.Struct("=d")  # numpy's byte order
_LITTLE_ENDIAN = sys.byteorder == "little"  # the one-row hash spells numpy's "<U" and "=q"
_ZERO_CODE = bytes(8)  # an int64 0: the one row's code for its decision time and action name
_NOT_ONE = object()


class _PreparedRow:
    """A one-row batch (what ``nba serve``'s ``/decide`` logs) prepared in plain Python.

    The per-batch numpy and pandas work of :class:`_Prepared` (factorising, stamp codes, a
    dozen small arrays) costs more than SQLite does for one row, so this path builds the row
    tuple directly and hashes the very bytes :meth:`_Prepared._digest` hashes (the same
    ``content_sha256``: a retry is recognised whichever path logged it). :meth:`build` returns
    ``None`` for anything unusual and the general path takes it, errors included.
    """

    n = 1

    def __init__(self, batch_id: str, row: tuple[Any, ...], sha256: str, names: str | None):
        self.batch_id, self.row, self.sha256, self.feature_names = batch_id, row, sha256, names

    @classmethod
    def build(cls, batch: LoggedBatch) -> _PreparedRow | None:
        customer = _one(batch.customer_id)
        if type(customer) is int:
            customer = str(customer)
        if (
            not _LITTLE_ENDIAN
            or type(customer) is not str
            or "\x00" in customer  # numpy's text arrays drop trailing NULs: theirs to say
            or isinstance(batch.decided_at, _ARRAYS)
        ):
            return None
        action, name = _one(batch.actions), _one(batch.action_names)
        propensity, explored = _one(batch.propensities), _one(batch.explored)
        if (
            type(action) not in (int, bool)
            or type(name) is not str
            or type(propensity) not in (float, int)
            or not 0 < propensity <= 1
            or type(explored) not in (bool, int)
        ):
            return None
        features = _one_blob(batch.features)
        probabilities = _one_blob(batch.probabilities)
        if features is None or probabilities is None:
            return None
        stamp = format_stamp(batch.decided_at)
        model_version = str(batch.model_version)
        provenance = tuple(
            None
            if getattr(batch.model_version, part, None) is None
            else str(getattr(batch.model_version, part))
            for part in ("name", "version", "run_id")
        )
        names = _names_json(batch.feature_names)
        batch_id = _batch_id(batch.batch_id)
        action, propensity, explored = int(action), float(propensity), bool(explored)
        ids = customer.encode("utf-32-le", "surrogatepass").ljust(4, b"\x00")  # numpy's <U
        parts = (
            f"1|{model_version}|{_json_of(provenance)}".encode(),
            (names or "").encode(),
            f"<U{len(ids) // 4}".encode(),
            ids,
            stamp.encode(),
            _ZERO_CODE,
            name.encode(),
            _ZERO_CODE,
            _NATIVE_INT64.pack(action),
            _NATIVE_FLOAT64.pack(propensity),
            b"\x01" if explored else b"\x00",
            f"|V{len(features)}".encode(),
            features,
            f"|V{len(probabilities)}".encode(),
            probabilities,
        )
        digest = hashlib.sha256(
            b"".join(len(part).to_bytes(8, "little") + part for part in parts)
        ).hexdigest()
        row = (
            customer,
            stamp,
            model_version,
            action,
            name,
            propensity,
            int(explored),
            features,
            probabilities,
            *provenance,
            0,  # the batch: set by bound_rows
            0,  # position
        )
        return cls(batch_id, row, digest, names)

    def bound_rows(self, batch: int) -> Iterable[tuple[Any, ...]]:
        return ((*self.row[:-2], batch, 0),)

    def insert(self, batch: int) -> tuple[str, Iterable[tuple[Any, ...]]]:
        return _INSERT, self.bound_rows(batch)


def _one(values: Any) -> Any:
    """The single value of a one-element list, tuple or 1-D array (as numpy's ``tolist`` gives
    it, so values convert as in :class:`_Prepared`); otherwise a marker no check accepts."""
    if isinstance(values, np.ndarray):
        return values.tolist()[0] if values.shape == (1,) else _NOT_ONE
    if type(values) in (list, tuple) and len(values) == 1:
        value = values[0]
        return value if type(value) in (str, int, float, bool) else _NOT_ONE
    return _NOT_ONE


def _one_blob(values: Any) -> bytes | None:
    """A (1, k) matrix as the k float32 values' bytes (what :func:`_blobs` stores), k >= 1."""
    try:
        matrix = np.ascontiguousarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if matrix.ndim != 2 or matrix.shape[0] != 1 or matrix.shape[1] < 1:
        return None
    return matrix.tobytes()


@functools.lru_cache(maxsize=64)
def _json_of(provenance: tuple[str | None, ...]) -> str:
    return json.dumps(provenance)


def _names_json(names: Sequence[str] | None) -> str | None:
    """The feature names as ``meta`` stores them (a batch per request names the same ones)."""
    if names is None:
        return None
    try:
        return _names_text(names if type(names) is tuple else tuple(names))
    except TypeError:  # names that cannot be a cache key
        return json.dumps([str(name) for name in names])


@functools.lru_cache(maxsize=64)
def _names_text(names: tuple[Any, ...]) -> str:
    return json.dumps([str(name) for name in names])


def _prepare(batch: LoggedBatch) -> _Prepared | _PreparedRow:
    return _PreparedRow.build(batch) or _Prepared(batch)


def _literal(value: Any) -> str | None:
    """``value`` as an SQLite literal, or ``None`` where it must stay a bound parameter.

    Strings quote by doubling ``'`` (SQLite's only escape inside a literal); text holding NUL
    is bound instead.
    """
    if value is None:
        return "NULL"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    return None


def _batch_id(value: str | None) -> str:
    if value is None:
        return uuid.uuid4().hex
    if not isinstance(value, str) or not value.strip():
        raise DecisionLogError(f"batch_id: expected a non-empty string, got {value!r:.60}")
    if len(value) > _BATCH_ID_LIMIT:
        raise DecisionLogError(f"batch_id: longer than {_BATCH_ID_LIMIT} characters")
    return value


def _check_length(name: str, length: int, n: int) -> None:
    if length != n:
        raise DecisionLogError(f"{name}: expected {n} rows (one per customer_id), got {length}")


def _blobs(name: str, values: Any, n: int) -> np.ndarray:
    """(n, k) float32 rows as an (n,) array of k*4-byte records: ``tolist`` gives ``bytes``."""
    matrix = np.ascontiguousarray(values, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise DecisionLogError(f"{name}: expected shape ({n}, k), got {matrix.shape}")
    return matrix.view(np.dtype((np.void, max(matrix.shape[1], 1) * 4))).reshape(n)


_T = TypeVar("_T")
_INHERITED: list[sqlite3.Connection] = []  # a parent's connections a forked child must not close


class DecisionLog:
    """Append-only decision store (one SQLite file); see the module's guarantees.

    :param timeout: seconds a transaction waits for other writers before
        :class:`DecisionLogBusyError` (a 1M-row batch holds the lock for a few seconds).
    """

    def __init__(self, path: str | Path, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = float(timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._busy_timeout: tuple[sqlite3.Connection, int] | None = None  # last one set
        self._connection = self._open()

    # -------------------------------------------------------------------- connection
    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._retry(connection, lambda: connection.execute("PRAGMA journal_mode=WAL"))
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA journal_size_limit=67108864")  # WAL back to 64 MiB
            connection.execute("PRAGMA cache_size=-32768")  # 32 MiB of pages
            self._migrate(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _conn(self) -> sqlite3.Connection:
        """This process's connection: a forked child must not use its parent's, nor close it
        (SQLite's close could checkpoint the parent's WAL), so the child keeps it unused."""
        if os.getpid() != self._pid:
            _INHERITED.append(self._connection)
            self._pid = os.getpid()
            self._connection = self._open()
        return self._connection

    def close(self) -> None:
        with self._lock:
            if os.getpid() == self._pid:
                self._connection.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------- schema
    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Bring the file to :data:`SCHEMA_VERSION` (a no-op without the write lock if it is)."""
        if _schema_version(connection, self.path) == SCHEMA_VERSION:
            return

        def upgrade() -> None:
            version = _schema_version(connection, self.path)  # again, under the lock
            if version == SCHEMA_VERSION:
                return
            for statement in (_DECISIONS, _META, _BATCHES, _PENDING):
                connection.execute(statement)
            columns = {row[1] for row in connection.execute("PRAGMA table_info(decisions)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in columns:  # old rows: no provenance, no batch (NULL)
                    connection.execute(f"ALTER TABLE decisions ADD COLUMN {column} {kind}")
            connection.execute(_BATCH_INDEX)
            _upsert_meta(connection, "schema_version", str(SCHEMA_VERSION))

        self._transaction(connection, upgrade)

    # ---------------------------------------------------------------------- writing
    def append(
        self,
        customer_id: Any,
        decided_at: Any,
        model_version: str,
        actions: Any,
        action_names: Any,
        propensities: Any,
        explored: Any,
        features: Any,
        probabilities: Any,
        feature_names: Sequence[str] | None = None,
        batch_id: str | None = None,
    ) -> int:
        """Append one batch in one transaction; the rows written (0: ``batch_id`` was logged).

        A ``model_version`` that carries provenance (what ``PolicyScorer.load`` makes, a
        :class:`~nba.serving.provenance.ModelVersion`) also fills ``model_name``,
        ``model_number`` and ``run_id``: the registry version and run actually used.
        """
        batch = LoggedBatch(
            customer_id,
            decided_at,
            model_version,
            actions,
            action_names,
            propensities,
            explored,
            features,
            probabilities,
            feature_names,
            batch_id,
        )
        return self.append_batches([batch])[0]

    def append_batches(self, batches: Sequence[LoggedBatch]) -> list[int]:
        """Append several batches in ONE transaction (group commit); rows written per batch.

        Each batch is idempotent on its own ``batch_id`` (0 for one already logged, or given
        twice here). A conflicting one (:class:`BatchConflictError`) fails the whole group:
        nothing is written, and the error names the batch.
        """
        prepared = [_prepare(batch) for batch in batches]  # validate and hash before locking

        def write(connection: sqlite3.Connection) -> list[int]:
            stored = _stored_hashes(connection, [batch.batch_id for batch in prepared])
            written: list[int] = []
            new: list[_Prepared | _PreparedRow] = []
            for batch in prepared:
                known = stored.get(batch.batch_id)
                if known is not None:
                    if known != batch.sha256:
                        raise BatchConflictError(
                            f"batch_id: {batch.batch_id!r:.80} is already logged with different "
                            "content; a retry must send the same decisions, a new batch a new id",
                            batch.batch_id,
                        )
                    written.append(0)
                    continue
                stored[batch.batch_id] = batch.sha256  # given twice in this group: once
                new.append(batch)
                written.append(batch.n)
            if new:
                _write_new(connection, new)
            return written

        with self._lock:
            connection = self._conn()
            return self._transaction(connection, lambda: write(connection))

    # ------------------------------------------------------------- runs that may be retried
    def start_run(self, key: str, as_of: pd.Timestamp) -> tuple[pd.Timestamp, bool]:
        """The decision time of a run that may be retried: ``(as_of, False)`` pinned to ``key``
        now, or ``(the pinned time, True)`` when an earlier run with this key never finished.

        ``nba score`` decides "now" unless told otherwise; pinning that moment lets a retry
        after a crash make (and find already logged) the very same batch.
        """
        stamp = format_stamp(as_of)

        def pin(connection: sqlite3.Connection) -> tuple[str, bool]:
            found = connection.execute(
                "SELECT as_of FROM pending_runs WHERE key = ?", (key,)
            ).fetchone()
            if found:
                return str(found[0]), True
            connection.execute(
                "INSERT INTO pending_runs (key, as_of, started_at) VALUES (?, ?, ?)",
                (key, stamp, _now()),
            )
            return stamp, False

        with self._lock:
            connection = self._conn()
            pinned, resumed = self._transaction(connection, lambda: pin(connection))
        return parse_stamps([pinned])[0], resumed

    def finish_run(self, key: str) -> None:
        """Forget a run's pinned decision time (its output is written, or it failed cleanly)."""
        with self._lock:
            connection = self._conn()
            self._transaction(
                connection,
                lambda: connection.execute("DELETE FROM pending_runs WHERE key = ?", (key,)),
            )

    # ---------------------------------------------------------------------- reading
    def batch(self, batch_id: str) -> BatchRecord | None:
        """The logged batch with this id, or ``None``."""
        with self._lock:
            found = (
                self._conn()
                .execute(
                    "SELECT batch_id, row_count, content_sha256, logged_at FROM batches "
                    "WHERE batch_id = ?",
                    (batch_id,),
                )
                .fetchone()
            )
        if found is None:
            return None
        return BatchRecord(str(found[0]), int(found[1]), str(found[2]), parse_stamps([found[3]])[0])

    def read(self) -> pd.DataFrame:
        """Every logged decision with its ``batch_id``; ``features`` and ``probabilities`` as
        float32 arrays (for tests and small logs; :func:`read_decision_log` for evaluation)."""
        with self._lock:
            frame = pd.read_sql_query(
                "SELECT d.*, b.batch_id FROM decisions d LEFT JOIN batches b ON d.batch = b.id "
                "ORDER BY d.id",
                self._conn(),
            )
        for column in ("features", "probabilities"):
            frame[column] = [np.frombuffer(blob, dtype=np.float32) for blob in frame[column]]
        frame["explored"] = frame["explored"].astype(bool)
        return frame

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    # ------------------------------------------------------------------ transactions
    def _transaction(self, connection: sqlite3.Connection, work: Callable[[], _T]) -> _T:
        """``work`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT``, retried whole on SQLITE_BUSY."""

        def attempt() -> _T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return result

        return self._retry(connection, attempt)

    def _retry(self, connection: sqlite3.Connection, attempt: Callable[[], _T]) -> _T:
        """Run ``attempt`` until it does not meet a busy log, for at most ``timeout`` seconds.

        SQLite's busy handler waits for the lock inside each call; some waits it cannot take
        (a WAL being recovered or restarted) come back as SQLITE_BUSY at once, hence the loop.
        """
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        wait = int(self.timeout * 1000)  # the first try may wait it all (microseconds over)
        while True:
            if self._busy_timeout != (connection, wait):  # a PRAGMA only when it changes
                connection.execute(f"PRAGMA busy_timeout = {wait}")
                self._busy_timeout = (connection, wait)
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    raise DecisionLogBusyError(
                        f"decision log {str(self.path)!r}: still locked by other writers after "
                        f"{self.timeout:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.25)
                wait = max(int((deadline - time.monotonic()) * 1000), 0)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _stored_hashes(connection: sqlite3.Connection, batch_ids: list[str]) -> dict[str, str]:
    """``content_sha256`` of the ids already in ``batches``: one query per 512 ids, padded to a
    power of two so that a handful of statements serve every group size from SQLite's cache."""
    unique = list(dict.fromkeys(batch_ids))
    found: dict[str, str] = {}
    for start in range(0, len(unique), _IN_LIMIT):
        chunk = unique[start : start + _IN_LIMIT]
        size = 1 << (len(chunk) - 1).bit_length()
        chunk += [chunk[-1]] * (size - len(chunk))
        found.update(
            connection.execute(
                "SELECT batch_id, content_sha256 FROM batches WHERE batch_id IN "
                f"({', '.join('?' * size)})",
                chunk,
            ).fetchall()
        )
    return found


def _write_new(connection: sqlite3.Connection, new: list[_Prepared | _PreparedRow]) -> None:
    """Insert a group's new batches and their rows, in order (inside its transaction).

    Batch keys are numbered from the table's largest: the transaction holds the write lock, so
    they are the keys SQLite would choose, and the batches go in with one ``executemany``. Small
    batches' rows share one ``executemany`` of :data:`_INSERT`; a large batch streams its own.
    """
    first = int(connection.execute("SELECT COALESCE(MAX(id), 0) FROM batches").fetchone()[0]) + 1
    logged_at = _now()
    connection.executemany(
        "INSERT INTO batches (id, batch_id, row_count, content_sha256, logged_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [
            (first + k, batch.batch_id, batch.n, batch.sha256, logged_at)
            for k, batch in enumerate(new)
        ],
    )
    rows: list[tuple[Any, ...]] = []
    for k, batch in enumerate(new):
        if batch.n <= _BOUND_ROWS:
            rows.extend(batch.bound_rows(first + k))
            continue
        if rows:
            connection.executemany(_INSERT, rows)
            rows = []
        connection.executemany(*batch.insert(first + k))
    if rows:
        connection.executemany(_INSERT, rows)
    names = next(
        (batch.feature_names for batch in reversed(new) if batch.feature_names is not None), None
    )
    if names is not None:  # the last batch's names, as when each batch wrote its own
        found = connection.execute("SELECT value FROM meta WHERE key = 'feature_names'").fetchone()
        if found is None or found[0] != names:
            _upsert_meta(connection, "feature_names", names)


def _upsert_meta(connection: sqlite3.Connection, key: str, value: str) -> None:
    connection.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def _schema_version(connection: sqlite3.Connection, path: Path) -> int:
    """The file's schema version: 0 for an empty file, 1 or 2 for logs from before versions."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if "decisions" not in tables:
        if tables - _TABLES:
            raise DecisionLogError(f"{str(path)!r} is a SQLite file without a decisions table")
        return 0
    version = None
    if "meta" in tables:
        found = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(found[0]) if found else None
    if version is None:
        columns = {row[1] for row in connection.execute("PRAGMA table_info(decisions)")}
        version = 2 if set(_PROVENANCE) <= columns else 1
    if version > SCHEMA_VERSION:
        raise DecisionLogError(
            f"{str(path)!r}: decision log schema version {version} is newer than this nba "
            f"({SCHEMA_VERSION}); upgrade nba to use it"
        )
    return version


def check_decision_log(path: str | Path) -> None:
    """Refuse a file that is not a decision log, without creating or changing anything.

    Opened read-only: the check must not turn a mistyped path into an empty log. SQLite errors
    (not a database, encrypted, locked) propagate for the caller to name its own option.
    """
    with closing(_read_only(Path(path))) as connection:
        found = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'decisions'"
        ).fetchone()
        if found is None:
            raise NBAValidationError(f"{str(path)!r} is a SQLite file without a decisions table")
        _schema_version(connection, Path(path))


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)


# ---------------------------------------------------------------------------------- reading
Missing = Literal["error", "drop", "zero"]


def _input_error(message: str) -> NBAValidationError:
    """An :class:`~nba.ope.data.OPEInputError` (imported late: :mod:`nba.ope` imports us)."""
    from nba.ope.data import OPEInputError

    return OPEInputError(message)


@dataclass(frozen=True)
class DecisionRecords:
    """Logged decisions as arrays, with rewards once outcomes are joined."""

    customer_id: np.ndarray
    decided_at: pd.DatetimeIndex
    model_version: np.ndarray
    action: IntArray
    action_name: np.ndarray
    propensity: FloatArray
    explored: BoolArray
    features: np.ndarray  # (n, F) float32
    probabilities: np.ndarray  # (n, A) float32: the serving policy's, before exploration
    feature_names: list[str] | None
    reward: FloatArray | None = None

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.probabilities.shape[1])

    def check_catalogue(
        self, action_names: Sequence[str], feature_names: Sequence[str] | None = None
    ) -> None:
        """The evaluation policy must share the log's actions (index and name) and features.

        ``feature_names=None`` checks the actions only (the features were already brought into
        the policy's layout by :func:`nba.ope.target.model_features`).
        """
        from nba.ope.data import check_catalogue

        if self.n_actions != len(action_names):
            check_catalogue(
                [f"#{i}" for i in range(self.n_actions)],
                [f"#{i}" for i in range(len(action_names))],
            )
        names = np.asarray(list(action_names), dtype=object)[self.action]
        wrong = names != self.action_name.astype(object)
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise _input_error(
                f"action catalogue: logged action {int(self.action[row])} is "
                f"{self.action_name[row]!r} in the log but {names[row]!r} in the evaluation policy"
            )
        if feature_names is None:
            return
        if self.feature_names is not None and list(self.feature_names) != list(feature_names):
            raise _input_error(
                "features: the log's feature names differ from the evaluation policy's"
            )
        if self.features.shape[1] != len(feature_names):
            raise _input_error(
                f"features: the log has {self.features.shape[1]}, the policy expects "
                f"{len(feature_names)}"
            )

    def bandit(self, target: FloatArray, action_names: Sequence[str] | None = None) -> LoggedBandit:
        """A validated :class:`LoggedBandit` under an evaluation policy's probabilities."""
        from nba.ope.data import LoggedBandit

        if self.reward is None:
            raise _input_error(
                "reward: the log has no rewards; join outcomes (customer_id, decided_at, reward)"
            )
        return LoggedBandit(
            context=self.features,
            action=self.action,
            reward=self.reward,
            propensity=self.propensity,
            target=target,
            action_names=tuple(action_names) if action_names is not None else None,
            groups=self.customer_id,
        )


def read_decision_log(
    path: str | Path,
    outcomes: pd.DataFrame | str | Path | None = None,
    *,
    since: str | pd.Timestamp | None = None,
    until: str | pd.Timestamp | None = None,
    model_version: str | None = None,
    missing: Missing = "error",
) -> DecisionRecords:
    """Decisions from a log file, optionally in [since, until), with rewards joined.

    Opened read-only, so evaluating a log can never change what serving wrote; a batch being
    written meanwhile is not seen until it commits, and then whole.

    :param outcomes: DataFrame or CSV/Parquet path with ``customer_id``, ``decided_at`` and
        ``reward``; default: the log's own ``outcomes`` table when it has one. Decisions
        without an outcome are an error by default (``missing="drop"`` drops them,
        ``missing="zero"`` scores them 0, for rewards recorded only when something happened).
    """
    file = Path(path)
    if not file.is_file():
        raise _input_error(f"--log: no such decision log {str(file)!r}")
    query, params = "SELECT * FROM decisions", []
    clauses = []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            clauses.append(f"decided_at {op} ?")
            params.append(format_stamp(_timestamp(bound, "since" if op == ">=" else "until")))
    if model_version is not None:
        clauses.append("model_version = ?")
        params.append(model_version)
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    with closing(_read_only(file)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "decisions" not in tables:
            raise _input_error(f"--log: {str(file)!r} is not a decision log (no decisions table)")
        try:
            _schema_version(connection, file)
        except DecisionLogError as exc:
            raise _input_error(f"--log: {exc}") from None
        connection.execute("BEGIN")  # one snapshot for decisions, meta and outcomes
        frame = pd.read_sql_query(query + " ORDER BY id", connection, params=params)
        meta = (
            dict(connection.execute("SELECT key, value FROM meta").fetchall())
            if "meta" in tables
            else {}
        )
        stored = (
            pd.read_sql_query(f"SELECT * FROM {OUTCOMES_TABLE}", connection)
            if OUTCOMES_TABLE in tables and outcomes is None
            else None
        )
        connection.execute("COMMIT")
    records = _records(frame, meta)
    joined = _load_outcomes(outcomes) if outcomes is not None else stored
    if joined is None:
        return records
    return _with_rewards(records, joined, missing)


def write_outcomes(path: str | Path, outcomes: pd.DataFrame, timeout: float = 60.0) -> int:
    """Store outcomes beside the decisions (upsert by customer and decision time)."""
    frame = _normalise_outcomes(outcomes)
    connection = sqlite3.connect(Path(path), timeout=timeout, isolation_level=None)
    try:
        connection.execute(_OUTCOMES)
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            f"INSERT INTO {OUTCOMES_TABLE} (customer_id, decided_at, reward) VALUES (?, ?, ?) "
            "ON CONFLICT(customer_id, decided_at) DO UPDATE SET reward = excluded.reward",
            zip(
                frame["customer_id"].tolist(),
                format_stamp(frame["decided_at"]).tolist(),
                frame["reward"].astype(float).tolist(),
                strict=True,
            ),
        )
        connection.execute("COMMIT")
    finally:
        connection.close()
    return len(frame)


def _records(frame: pd.DataFrame, meta: dict[str, str]) -> DecisionRecords:
    n = len(frame)
    feature_names = json.loads(meta["feature_names"]) if "feature_names" in meta else None
    features = _matrix(frame["features"], n, "features")
    probabilities = _matrix(frame["probabilities"], n, "probabilities")
    return DecisionRecords(
        customer_id=frame["customer_id"].astype(str).to_numpy(),
        decided_at=parse_stamps(frame["decided_at"]),
        model_version=frame["model_version"].astype(str).to_numpy(),
        action=frame["action"].to_numpy(np.int64),
        action_name=frame["action_name"].astype(str).to_numpy(),
        propensity=frame["propensity"].to_numpy(np.float64),
        explored=frame["explored"].to_numpy().astype(bool),
        features=features,
        probabilities=probabilities,
        feature_names=feature_names,
    )


def _matrix(blobs: pd.Series, n: int, name: str) -> np.ndarray:
    """Concatenate per-row float32 blobs into one (n, width) array without a Python loop."""
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = np.frombuffer(b"".join(blobs.tolist()), dtype=np.float32)
    if flat.size % n:
        raise _input_error(f"{name}: rows of the log have different lengths")
    return flat.reshape(n, flat.size // n)


def _with_rewards(
    records: DecisionRecords, outcomes: pd.DataFrame, missing: Missing
) -> DecisionRecords:
    outcomes = _normalise_outcomes(outcomes)
    keys = pd.DataFrame(
        {"customer_id": records.customer_id, "decided_at": records.decided_at.as_unit("us")}
    )
    outcomes["decided_at"] = outcomes["decided_at"].dt.as_unit("us")
    merged = keys.merge(outcomes, on=["customer_id", "decided_at"], how="left", validate="m:1")
    reward = merged["reward"].to_numpy(np.float64)
    absent = np.isnan(reward)
    if absent.any() and missing == "error":
        row = int(np.flatnonzero(absent)[0])
        raise _input_error(
            f"reward: {int(absent.sum()):,} of {len(reward):,} decisions have no outcome (first: "
            f"customer {records.customer_id[row]!r} at {records.decided_at[row].isoformat()}); "
            "pass missing='drop' or 'zero'"
        )
    if missing == "zero":
        return _replace(records, np.ones(len(reward), dtype=bool), np.nan_to_num(reward))
    return _replace(records, ~absent, reward)


def _replace(records: DecisionRecords, keep: BoolArray, reward: FloatArray) -> DecisionRecords:
    return DecisionRecords(
        customer_id=records.customer_id[keep],
        decided_at=records.decided_at[keep],
        model_version=records.model_version[keep],
        action=records.action[keep],
        action_name=records.action_name[keep],
        propensity=records.propensity[keep],
        explored=records.explored[keep],
        features=records.features[keep],
        probabilities=records.probabilities[keep],
        feature_names=records.feature_names,
        reward=reward[keep],
    )


def _load_outcomes(outcomes: pd.DataFrame | str | Path) -> pd.DataFrame:
    if isinstance(outcomes, pd.DataFrame):
        return outcomes
    path = Path(outcomes)
    if not path.is_file():
        raise _input_error(f"--outcomes: no such file {str(path)!r}")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise _input_error(f"--outcomes: expected a .csv or .parquet file, got {str(path)!r}")


def _normalise_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("customer_id", "decided_at", "reward") if c not in outcomes.columns]
    if missing:
        raise _input_error(f"outcomes.{missing[0]}: missing column")
    frame = pd.DataFrame(
        {
            "customer_id": outcomes["customer_id"].astype(str).to_numpy(),
            "decided_at": pd.to_datetime(outcomes["decided_at"], utc=True).to_numpy(),
            "reward": pd.to_numeric(outcomes["reward"], errors="coerce").to_numpy(np.float64),
        }
    )
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True)
    bad = ~np.isfinite(frame["reward"].to_numpy())
    if bad.any():
        raise _input_error(f"outcomes.reward[{int(np.flatnonzero(bad)[0])}]: NaN or not a number")
    duplicated = frame.duplicated(["customer_id", "decided_at"])
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise _input_error(f"outcomes[{row}]: a second outcome for the same decision")
    return frame


def _timestamp(value: str | pd.Timestamp | datetime, name: str) -> pd.Timestamp:
    """A user's time bound (any format pandas reads) as UTC."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise _input_error(f"{name}: not a timestamp: {value!r}") from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
