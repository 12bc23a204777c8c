"""The decision log: every served decision, append-only, atomic and idempotent, for off-policy
evaluation. This package owns it whole, one module a job: the schema, its versions and their
migration (``schema``), the timestamp format (``stamps``), a batch's validation and content hash
(``batch``, and ``row`` for the one-row fast path), the writer (``writer``:
:class:`DecisionLog`) and the reader (``reader``: :func:`read_decision_log`). Every public name
is importable from here.

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

from nba.serving.decision_log.batch import BatchRecord, LoggedBatch
from nba.serving.decision_log.batch import _Prepared as _Prepared
from nba.serving.decision_log.errors import (
    BatchConflictError,
    DecisionLogBusyError,
    DecisionLogError,
)
from nba.serving.decision_log.reader import (
    DecisionRecords,
    Missing,
    read_decision_log,
    write_outcomes,
)
from nba.serving.decision_log.row import _PreparedRow as _PreparedRow
from nba.serving.decision_log.schema import OUTCOMES_TABLE, SCHEMA_VERSION, check_decision_log
from nba.serving.decision_log.stamps import STAMP_FORMAT, format_stamp, parse_stamps
from nba.serving.decision_log.stamps import _quick_stamp as _quick_stamp
from nba.serving.decision_log.writer import DecisionLog

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
