"""The log's SQLite schema, its versions and their migration, and the checks that a file is a
decision log this version can use (read-only: a check never creates or changes a file)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from nba.errors import NBAValidationError
from nba.serving.decision_log.errors import DecisionLogError

__all__ = ["OUTCOMES_TABLE", "SCHEMA_VERSION", "check_decision_log", "upgrade"]

SCHEMA_VERSION = 4  # 1: decisions, meta; 2: + provenance; 3: + batches, pending runs; 4: + holdout
OUTCOMES_TABLE = "outcomes"

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
    position INTEGER,
    holdout INTEGER NOT NULL DEFAULT 0
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
    "holdout": "INTEGER NOT NULL DEFAULT 0",  # in the control group (older rows: no)
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
    "holdout",
    "batch",
    "position",
)

_INSERT = f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


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


def upgrade(connection: sqlite3.Connection, path: Path) -> None:
    """Bring the file to :data:`SCHEMA_VERSION`, inside the caller's write transaction: the
    tables, the columns older versions lack (old rows keep NULL there) and the batch index."""
    version = _schema_version(connection, path)  # again, under the lock
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
