"""The writer: :class:`DecisionLog`, one SQLite connection per process, every write one
``BEGIN IMMEDIATE`` transaction retried on a busy lock, batches idempotent on their id."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from nba.serving.decision_log.batch import BatchRecord, LoggedBatch, _Prepared
from nba.serving.decision_log.errors import BatchConflictError, DecisionLogBusyError
from nba.serving.decision_log.row import _prepare, _PreparedRow
from nba.serving.decision_log.schema import (
    _INSERT,
    SCHEMA_VERSION,
    _schema_version,
    _upsert_meta,
    upgrade,
)
from nba.serving.decision_log.stamps import _now, format_stamp, parse_stamps

__all__ = ["DecisionLog"]

_BOUND_ROWS = 1_024  # batches up to this size share one executemany per group, every value bound
_IN_LIMIT = 512  # batch ids looked up per query (SQLite's oldest limit on parameters is 999)

_T = TypeVar("_T")
_INHERITED: list[sqlite3.Connection] = []  # a parent's connections a forked child must not close


class DecisionLog:
    """Append-only decision store (one SQLite file); see the package's guarantees.

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

        self._transaction(connection, lambda: upgrade(connection, self.path))

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
        holdout: Any = None,
    ) -> int:
        """Append one batch in one transaction; the rows written (0: ``batch_id`` was logged).

        A ``model_version`` that carries provenance (what ``PolicyScorer.load`` makes, a
        :class:`~nba.serving.provenance.ModelVersion`) also fills ``model_name``,
        ``model_number`` and ``run_id``: the registry version and run actually used.
        ``holdout``: (n,) bool, the rows in the persistent control group (:mod:`nba.holdout`;
        their action is the control policy's, propensity 1); default: none.
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
            holdout,
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
