"""The decision log behind ``nba serve``: one writer thread commits the rows of many requests
in one transaction (group commit), worker processes take turns on a file lock beside the log,
and each request is answered only once its rows are committed."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import logging
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nba.serving.http.settings import ServiceError
from nba.serving.http.strict_json import _cut

if TYPE_CHECKING:
    from nba.serving.scorer import Decision, PolicyScorer

__all__ = ["GroupCommitLog"]

logger = logging.getLogger("nba.serve")


@dataclass
class _Pending:
    batch: Any
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


class GroupCommitLog:
    """One writer thread that commits the rows of many requests in one transaction.

    Requests :meth:`commit` their batch and await it; the thread takes every batch queued while
    the previous transaction was committing, lingers while more keep arriving (``linger_gap``
    apart, ``linger`` at most: an fsync costs milliseconds on a busy disk, a request a fraction
    of one) but only until the group is as large as the last groups were (a steady set of
    clients is all there: waiting longer only adds latency), takes what queued while it waited
    for other workers' turn, appends them in one transaction, then wakes their requests, one
    wake-up per event loop. Throughput is then bounded by transactions, not by requests, and no
    request is answered before its rows are committed.
    """

    def __init__(
        self,
        path: str,
        max_batches: int = 4096,
        timeout: float = 10.0,
        linger: float = 0.002,
        linger_gap: float = 0.0005,
        shared: bool = False,
    ) -> None:
        from nba.serving.decision_log import DecisionLog

        self.path = path
        self.max_batches = max_batches
        self.linger, self.linger_gap = linger, linger_gap
        self._log = DecisionLog(path, timeout=timeout)
        # workers take turns on an empty sidecar beside SQLite's own -wal and -shm files
        self._lock_file = (
            os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT, 0o644) if shared else None
        )
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nba-decision-log", daemon=True)
        self._thread.start()

    async def commit(self, batch: Any) -> None:
        """Return once ``batch`` is committed (or was already, under its batch id).

        :raises ServiceError: 409 when the batch id was logged with other decisions, 503 when
            the log could not be written.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(batch, loop.create_future(), loop)
        self._queue.put(pending)
        await pending.future

    def close(self) -> None:
        """Commit what is queued, then stop the thread and close the file."""
        self._queue.put(None)
        self._thread.join()
        self._log.close()
        if self._lock_file is not None:
            os.close(self._lock_file)

    def _run(self) -> None:
        recent: collections.deque[int] = collections.deque([1], maxlen=16)  # group sizes
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group, stopping = self._gather(first, max(recent))
            recent.append(len(group))
            try:
                with self._turn():
                    if not stopping:  # what came while other workers committed joins in
                        stopping = self._drain(group)
                    outcomes = self._write(group)
            except Exception:  # the workers' lock failed: the requests must hear of it
                logger.exception("decision log %s: the writers' lock failed", self.path)
                failed = ServiceError(503, "decision log: the decision could not be recorded")
                outcomes = [(pending, failed) for pending in group]
            settled: dict[asyncio.AbstractEventLoop, list[tuple[Any, BaseException | None]]] = {}
            for pending, error in outcomes:
                settled.setdefault(pending.loop, []).append((pending.future, error))
            for loop, results in settled.items():  # one wake-up per event loop, not per request
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # its event loop is closed: nobody waits any more
                    pass

    def _gather(self, first: _Pending, usual: int) -> tuple[list[_Pending], bool]:
        """``first`` and what follows it: everything queued, then what arrives ``linger_gap``
        apart (``linger`` at most) until the group is as large as groups lately have been.
        ``True`` with it when the writer is asked to stop."""
        group = [first]
        deadline = time.monotonic() + self.linger
        while len(group) < self.max_batches:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if len(group) >= usual:  # as many as lately: waiting would only delay them
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:  # a request or two more per fsync is worth a few hundred us
                    item = self._queue.get(timeout=min(self.linger_gap, left))
                except queue.Empty:
                    break
            if item is None:
                return group, True
            group.append(item)
        return group, False

    def _drain(self, group: list[_Pending]) -> bool:
        """Add what is queued to ``group`` without waiting; ``True`` when asked to stop."""
        while len(group) < self.max_batches:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            group.append(item)
        return False

    @contextlib.contextmanager
    def _turn(self) -> Any:
        """Writers in other worker processes wait on a file lock, woken the moment it frees,
        rather than in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms between tries."""
        if self._lock_file is None:
            yield
            return
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _write(self, group: list[_Pending]) -> list[tuple[_Pending, BaseException | None]]:
        """Commit ``group`` in one transaction; what to tell each request.

        A reused batch id fails only its own requests (409), the rest are committed again
        without them; a batch the log refuses is found by committing one at a time.
        """
        from nba.serving.decision_log import BatchConflictError, DecisionLogError

        outcome: list[tuple[_Pending, BaseException | None]] = []
        remaining = group
        while remaining:
            try:
                self._log.append_batches([pending.batch for pending in remaining])
            except BatchConflictError as exc:
                reused = [p for p in remaining if p.batch.batch_id == exc.batch_id]
                remaining = [p for p in remaining if p.batch.batch_id != exc.batch_id]
                conflict = ServiceError(
                    409,
                    f"X-Request-ID: {_cut(exc.batch_id)!r} already logged other decisions; "
                    "a retry must repeat the request (with its as_of), a new request needs a "
                    "new id",
                )
                outcome += [(pending, conflict) for pending in reused]
                continue
            except DecisionLogError:
                if len(remaining) > 1:  # find the one it refuses; the others go in alone
                    for pending in remaining:
                        outcome += self._write([pending])
                    return outcome
                logger.exception("decision log %s: a decision was refused", self.path)
                outcome.append((remaining[0], ServiceError(500, "internal error")))
                return outcome
            except Exception:  # the requests must hear of it, never hang
                logger.exception(
                    "decision log %s: a commit of %d requests failed", self.path, len(remaining)
                )
                failed = ServiceError(503, "decision log: the decision could not be recorded")
                outcome += [(pending, failed) for pending in remaining]
                return outcome
            outcome += [(pending, None) for pending in remaining]
            return outcome
        return outcome


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in outcomes:
        if future.done():  # the request was cancelled (client gone): nothing to wake
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _BatchCollector:
    """Stands in for a decision log in :meth:`PolicyScorer.score_batch`: keeps what it would
    append, for the group-commit writer to write under the request's batch id."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] | None = None

    def append(self, *args: Any, **fields: Any) -> int:
        from nba.serving.decision_log import LoggedBatch

        names = [item.name for item in dataclasses.fields(LoggedBatch)]
        self.fields = {**dict(zip(names, args, strict=False)), **fields}
        return len(self.fields["customer_id"])


def _logged_batch(batch_id: str, fields: Mapping[str, Any]) -> Any:
    """The decision log's batch for one request's rows (the keyword arguments of ``append``)."""
    from nba.serving.decision_log import LoggedBatch

    return LoggedBatch(**{**fields, "batch_id": batch_id})


def _single_batch(batch_id: str, scorer: PolicyScorer, traced: Any) -> Any:
    """The one-row log batch of a single-path decision."""
    from nba.serving.decision_log import LoggedBatch

    decision: Decision = traced.decision
    return LoggedBatch(  # one-element lists: the log's one-row path takes them without numpy
        customer_id=[decision.customer_id],
        decided_at=traced.decided_at,
        model_version=decision.model_version,
        actions=[decision.action],
        action_names=[decision.action_name],
        propensities=[decision.propensity],
        explored=[decision.explored],
        features=traced.features[None, :],
        probabilities=np.asarray(traced.probabilities)[None, :],
        feature_names=scorer.features.names,
        batch_id=batch_id,
    )
