"""The decision log: every served decision, append-only and crash-safe, for off-policy evaluation.

SQLite in WAL mode with ``synchronous=FULL``: a batch is one transaction, so after a crash each
batch is either wholly there or wholly absent, never half-written. Rows keep what off-policy
evaluation needs: the context (features), the action, its logging propensity, the policy's
probabilities over all actions and the model version.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError

SCHEMA = """
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
    run_id TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def check_decision_log(path: str | Path) -> None:
    """Refuse a file that is not a decision log, without creating or changing anything.

    Opened read-only: the check must not turn a mistyped path into an empty log. SQLite errors
    (not a database, encrypted, locked) propagate for the caller to name its own option.
    """
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        found = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'decisions'"
        ).fetchone()
    finally:
        connection.close()
    if found is None:
        raise NBAValidationError(f"{str(path)!r} is a SQLite file without a decisions table")


class DecisionLog:
    """Append-only decision store (one SQLite file)."""

    def __init__(self, path: str | Path, chunk_rows: int = 50_000) -> None:
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(self.path, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        self._connection.executescript(SCHEMA)
        self._add_provenance_columns()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(
        self,
        customer_id: np.ndarray,
        decided_at: pd.Series | pd.Timestamp,
        model_version: str,
        actions: np.ndarray,
        action_names: np.ndarray,
        propensities: np.ndarray,
        explored: np.ndarray,
        features: np.ndarray,
        probabilities: np.ndarray,
        feature_names: list[str] | None = None,
    ) -> int:
        """Append one batch in transactions of ``chunk_rows``; returns the rows written.

        A ``model_version`` that carries provenance (what ``PolicyScorer.load`` makes, a
        :class:`~nba.serving.provenance.ModelVersion`) also fills ``model_name``,
        ``model_number`` and ``run_id``: the registry version and run actually used.
        """
        provenance = tuple(
            getattr(model_version, part, None) for part in ("name", "version", "run_id")
        )
        if isinstance(decided_at, pd.Series):
            stamps = decided_at.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy()
        else:
            stamps = np.full(
                len(customer_id), pd.Timestamp(decided_at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )
        features32 = np.ascontiguousarray(features, dtype=np.float32)
        probabilities32 = np.ascontiguousarray(probabilities, dtype=np.float32)
        if feature_names is not None:
            self._set_meta("feature_names", json.dumps(feature_names))
        n = len(customer_id)
        for start in range(0, n, self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            rows = (
                (
                    str(customer_id[i]),
                    stamps[i],
                    str(model_version),
                    int(actions[i]),
                    str(action_names[i]),
                    float(propensities[i]),
                    int(bool(explored[i])),
                    features32[i].tobytes(),
                    probabilities32[i].tobytes(),
                    *provenance,
                )
                for i in range(start, stop)
            )
            with self._transaction():
                self._connection.executemany(
                    "INSERT INTO decisions (customer_id, decided_at, model_version, action, "
                    "action_name, propensity, explored, features, probabilities, "
                    "model_name, model_number, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        return n

    def read(self) -> pd.DataFrame:
        """Every logged decision; ``features`` and ``probabilities`` as float32 arrays."""
        frame = pd.read_sql_query("SELECT * FROM decisions ORDER BY id", self._connection)
        for column in ("features", "probabilities"):
            frame[column] = [np.frombuffer(blob, dtype=np.float32) for blob in frame[column]]
        frame["explored"] = frame["explored"].astype(bool)
        return frame

    def __len__(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def _add_provenance_columns(self) -> None:
        """Logs written before provenance columns existed get them (empty for old rows)."""
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(decisions)")}
        for column in ("model_name", "model_number", "run_id"):
            if column not in columns:
                try:
                    self._connection.execute(f"ALTER TABLE decisions ADD COLUMN {column} TEXT")
                except sqlite3.OperationalError as exc:  # another writer added it first
                    if "duplicate column" not in str(exc):
                        raise

    def _set_meta(self, key: str, value: str) -> None:
        with self._transaction():
            self._connection.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")
