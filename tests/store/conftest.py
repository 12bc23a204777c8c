"""Shared store fixtures: the reference scenario and small synthetic event batches."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.store import CustomerStore
from nba.store.observed import NEVER
from nba.store.records import record_dtype
from nba.store.synthetic import START, synthetic_events

NOW = START + pd.Timedelta(days=61)


@pytest.fixture(scope="session")
def retail() -> Scenario:
    return load_scenario("retail")


@pytest.fixture(scope="session")
def log(retail: Scenario) -> EventLog:
    """3,000 events of 200 customers over 60 days."""
    return synthetic_events(retail, 3_000, 200, days=60, seed=3)


def halves(log: EventLog) -> tuple[EventLog, EventLog]:
    """The log's earlier and later halves (by time)."""
    middle = log.events["timestamp"].iloc[len(log.events) // 2]
    return log.between(None, middle), log.between(middle, None)


def new_store(folder: Path, scenario: Scenario, name: str = "customers.db") -> CustomerStore:
    return CustomerStore.create(folder / name, scenario)


def consent_of(log: EventLog, scenario: Scenario) -> pd.DataFrame:
    """The log's ``consented`` channels per customer, as ``filter_states(consent=)`` takes them
    (read by pandas here, independently of the store's reading)."""
    granted = log.events[log.events["event"] == "consented"]
    table = pd.crosstab(granted["customer_id"], granted["channel"].astype(str)) > 0
    return table.reindex(columns=list(scenario.channel_names), fill_value=False).astype(bool)


#: the ``customers`` table of schema versions 1 and 2 (version 1 without ``consented``)
LEGACY_CUSTOMERS = """CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    n_events INTEGER NOT NULL,
    opted_out_ts INTEGER,
    pressure INTEGER NOT NULL,
    pressure_day INTEGER,
    habit REAL NOT NULL,
    habit_day INTEGER,
    last_sent BLOB NOT NULL,
    belief_ts INTEGER NOT NULL,
    belief BLOB NOT NULL,
    log_likelihood REAL NOT NULL,
    consented BLOB
) WITHOUT ROWID"""


def to_legacy(path: Path, version: int) -> None:
    """Rewrite a closed store's customers in the version-1 or -2 column layout, as those
    versions wrote them (NULL for a missing time; no ``consented`` column in version 1)."""
    with sqlite3.connect(path) as db:
        layout = json.loads(db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()[0])
        dtype = record_dtype(len(layout["channels"]), layout["belief_shape"])
        rows = db.execute("SELECT customer_id, record FROM customers").fetchall()
        table = np.frombuffer(b"".join(r[1] for r in rows), dtype=dtype)

        def nullable(name: str) -> list[int | None]:
            return [None if v == NEVER else v for v in table[name].tolist()]

        columns = [
            [r[0] for r in rows],
            table["first_ts"].tolist(),
            table["last_ts"].tolist(),
            table["n_events"].tolist(),
            nullable("opted_out_ts"),
            table["pressure"].tolist(),
            nullable("pressure_day"),
            table["habit"].tolist(),
            nullable("habit_day"),
            [np.ascontiguousarray(v, dtype="<i8").tobytes() for v in table["last_sent"]],
            table["belief_ts"].tolist(),
            [np.ascontiguousarray(v, dtype="<f4").tobytes() for v in table["belief"]],
            table["log_likelihood"].tolist(),
            [np.ascontiguousarray(v, dtype="<i8").tobytes() for v in table["consented"]],
        ]
        db.execute("DROP TABLE customers")
        db.execute(LEGACY_CUSTOMERS)
        db.executemany(
            f"INSERT INTO customers VALUES ({', '.join('?' * 14)})", zip(*columns, strict=True)
        )
        if version == 1:
            db.execute("ALTER TABLE customers DROP COLUMN consented")
            db.execute("DELETE FROM meta WHERE key = 'consent_required'")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
