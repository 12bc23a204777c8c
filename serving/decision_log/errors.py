"""The decision log's errors: refused files or batches, reused batch ids, a busy write lock."""

from __future__ import annotations

from nba.errors import NBAError, NBAValidationError

__all__ = ["BatchConflictError", "DecisionLogBusyError", "DecisionLogError"]


class DecisionLogError(NBAValidationError):
    """A log file this version cannot use, or a batch that cannot be logged as given."""


class BatchConflictError(DecisionLogError):
    """A ``batch_id`` already logged with different content: a reused key, never a retry."""

    def __init__(self, message: str, batch_id: str) -> None:
        super().__init__(message)
        self.batch_id = batch_id


class DecisionLogBusyError(NBAError, TimeoutError):
    """Other writers held the log's write lock for longer than the timeout."""
