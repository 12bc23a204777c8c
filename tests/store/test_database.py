"""The store's file: older schema versions migrate to records bit for bit; bad records refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog
from nba.scenario import Scenario
from nba.store import CustomerStore, StoreError
from nba.store.database import SCHEMA_VERSION
from tests.store.conftest import NOW, halves, new_store, to_legacy


@pytest.mark.parametrize("version", [2, 1])
def test_an_older_store_migrates_to_records_bit_for_bit(
    tmp_path: Path, retail: Scenario, log: EventLog, version: int
) -> None:
    early, late = halves(log)
    later = NOW + pd.Timedelta(days=2)
    with new_store(tmp_path, retail) as store:
        store.ingest(late, now=NOW)
        store.ingest(early, now=NOW)
        expected = [store.read(None, when) for when in (NOW, later)]
    to_legacy(tmp_path / "customers.db", version)
    with sqlite3.connect(tmp_path / "customers.db") as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(customers)")]
    assert "record" not in columns and ("consented" in columns) == (version == 2)
    with CustomerStore.open(tmp_path / "customers.db", retail) as store:
        for (state, joint), when in zip(expected, (NOW, later), strict=True):
            got_state, got_joint = store.read(None, when)
            if version == 1:  # no consent record survives a version-1 store
                assert (got_state["belief_consent"] == "no_record").all()
                assert got_state["customer_id"].equals(state["customer_id"])
            else:
                pd.testing.assert_frame_equal(got_state, state, check_exact=True)
                np.testing.assert_array_equal(got_joint, joint)
        assert store.integrity() == "ok"
    with sqlite3.connect(tmp_path / "customers.db") as db:
        version_now = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert version_now == (SCHEMA_VERSION,) and "customers_v2" not in tables


def test_a_record_of_the_wrong_size_is_refused_by_row(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    with new_store(tmp_path, retail) as store:
        store.ingest(log, now=NOW)
        third = store.customer_ids()[2]
    with sqlite3.connect(tmp_path / "customers.db") as db:
        db.execute("UPDATE customers SET record = X'00' WHERE customer_id = ?", (third,))
    with CustomerStore.open(tmp_path / "customers.db", retail) as store:
        with pytest.raises(StoreError, match=r"record: stored blob 2 has 1 bytes, expected \d+"):
            store.read(None, NOW)
