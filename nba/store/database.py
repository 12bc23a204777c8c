"""The store's embedded database: one SQLite file, its tables, and the scenario it is bound to.

Why SQLite: it ships with Python (no new dependency), it is ACID (a batch is one transaction, so a
crash or ``kill -9`` mid-batch leaves the last committed state), and one writer at a time is our
model (ingest is a batch job; readers see the last commit through WAL without blocking it).
``synchronous=FULL`` makes each acknowledged batch survive a power cut too: one fsync per batch.

Tables (times are UTC nanoseconds since the epoch):

- ``meta``: key/value text: schema version, the scenario's YAML and fingerprint, the layout of
  the stored arrays (channels, belief shape), the store's first purchase, and whether a
  customer without a consent record has no consent (``consent_required``).
- ``events``: every event ever ingested, clustered by customer and time. The primary key is the
  whole event (id, time, type, channel, action, value, propensity: the columns the event log
  dedupes on), so the same event twice is one row; missing text is stored as ``''`` and a
  missing number as ``-1`` (the log refuses empty text and negative numbers, so neither
  collides with a real value).
- ``customers``: one row per customer: its id and one fixed-width ``record`` blob
  (:mod:`nba.store.records`): a summary of the observed history (enough to give the observed
  state at any time after the last event, :mod:`nba.store.observed`), the first consent time
  per channel, the belief's time and log-likelihood, and the belief over the latent parts in
  float32 (shape in ``meta``), read back with ``numpy.frombuffer``. Nothing is pickled.

Older stores are migrated when opened, in one transaction: version 1 (before consent) and
version 2 (one SQL column per summary field, NULL for a missing time, ``consented`` NULL in rows
a version-1 store wrote) are rewritten as version-3 records.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from nba.errors import NBAValidationError
from nba.scenario import Scenario
from nba.store.records import LEGACY_COLUMNS, from_columns, record_dtype

SCHEMA_VERSION = "3"
#: "1": no consent column yet; "2": a column per summary field (both migrated on open)
READABLE_VERSIONS = ("1", "2", SCHEMA_VERSION)
APPLICATION = "nba.store"
MIGRATION_CHUNK = 100_000  # customers rewritten per step of a migration

CUSTOMERS_DDL = (
    "CREATE TABLE customers (customer_id TEXT PRIMARY KEY, record BLOB NOT NULL) WITHOUT ROWID"
)
DDL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE events (
        customer_id TEXT NOT NULL,
        ts INTEGER NOT NULL,
        event INTEGER NOT NULL,
        channel TEXT NOT NULL,
        action TEXT NOT NULL,
        value REAL NOT NULL,
        propensity REAL NOT NULL,
        PRIMARY KEY (customer_id, ts, event, channel, action, value, propensity)
    ) WITHOUT ROWID""",
    CUSTOMERS_DDL,
)


class StoreError(NBAValidationError):
    """A store that cannot be used as asked: names the file, the field and the problem."""


class UnknownCustomerError(StoreError):
    """Customer ids the store has never seen an event for."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in manual-transaction mode with the store's pragmas (WAL, full sync)."""
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        connection.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {str(path)!r}: not a customer store ({exc})") from None
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA cache_size=-65536")  # 64 MiB: a batch's pages stay in memory
    connection.execute("PRAGMA temp_store=MEMORY")
    return connection


def create_schema(
    connection: sqlite3.Connection,
    scenario: Scenario,
    layout: Mapping[str, object],
    settings: Mapping[str, str] | None = None,
) -> None:
    """Tables and metadata (plus ``settings``) of a new store, in one transaction."""
    meta = {
        **(settings or {}),
        "application": APPLICATION,
        "schema_version": SCHEMA_VERSION,
        "scenario_name": scenario.name,
        "scenario_yaml": scenario.to_yaml(),
        "scenario_fingerprint": scenario.fingerprint(),
        "layout": json.dumps(layout, sort_keys=True),
    }
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in DDL:
            connection.execute(statement)
        connection.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def read_meta(connection: sqlite3.Connection, path: Path) -> dict[str, str]:
    """The store's metadata; a SQLite file that is not a store (or a newer one) is refused."""
    try:
        rows = connection.execute("SELECT key, value FROM meta").fetchall()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"store {str(path)!r}: not a customer store ({exc})") from None
    meta = dict(rows)
    if meta.get("application") != APPLICATION:
        raise StoreError(f"store {str(path)!r}: not a customer store (no {APPLICATION} metadata)")
    if meta.get("schema_version") not in READABLE_VERSIONS:
        raise StoreError(
            f"store {str(path)!r}: schema version {meta.get('schema_version')!r}, this nba "
            f"reads version {SCHEMA_VERSION!r}"
        )
    return meta


def stored_scenario(meta: dict[str, str], path: Path, expected: Scenario | None) -> Scenario:
    """The scenario the store was built with; a different ``expected`` one is refused by name."""
    scenario = Scenario.from_yaml(meta["scenario_yaml"])
    if scenario.fingerprint() != meta["scenario_fingerprint"]:
        raise StoreError(
            f"store {str(path)!r}: the stored scenario does not match its recorded fingerprint"
        )
    if expected is not None and expected.fingerprint() != meta["scenario_fingerprint"]:
        raise StoreError(
            f"scenario: store {str(path)!r} was built for scenario {meta['scenario_name']!r} "
            f"(fingerprint {meta['scenario_fingerprint'][:12]}), not {expected.name!r} "
            f"(fingerprint {expected.fingerprint()[:12]}); open it without a scenario or "
            "build a new store"
        )
    return scenario


def migrate(connection: sqlite3.Connection, meta: dict[str, str]) -> None:
    """Bring a version-1 or -2 store to the current schema (one transaction; ``meta`` updated).

    The customers are rewritten as records (:func:`nba.store.records.from_columns`) in chunks,
    so a large store is migrated in bounded memory; values are unchanged bit for bit.
    """
    version = meta.get("schema_version")
    if version == SCHEMA_VERSION:
        return
    layout = json.loads(meta["layout"])
    dtype = record_dtype(len(layout["channels"]), layout["belief_shape"])
    connection.execute("BEGIN IMMEDIATE")
    try:
        if version == "1":
            connection.execute("ALTER TABLE customers ADD COLUMN consented BLOB")
        connection.execute("ALTER TABLE customers RENAME TO customers_v2")
        connection.execute(CUSTOMERS_DDL)
        old = connection.execute(
            f"SELECT customer_id, {', '.join(LEGACY_COLUMNS)} FROM customers_v2"
        )
        while rows := old.fetchmany(MIGRATION_CHUNK):
            blobs = from_columns(rows, dtype)
            connection.executemany(
                "INSERT INTO customers VALUES (?, ?)",
                zip([r[0] for r in rows], blobs, strict=True),
            )
        connection.execute("DROP TABLE customers_v2")
        set_meta(connection, "schema_version", SCHEMA_VERSION)
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    meta["schema_version"] = SCHEMA_VERSION


def set_meta(connection: sqlite3.Connection, key: str, value: str) -> None:
    """Write one metadata value (inside the caller's transaction)."""
    connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def with_ids(connection: sqlite3.Connection, ids: list[str]) -> None:
    """Fill the temporary table ``wanted(customer_id)`` that queries join to select customers."""
    connection.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (customer_id TEXT PRIMARY KEY)")
    connection.execute("DELETE FROM wanted")
    connection.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((i,) for i in ids))
