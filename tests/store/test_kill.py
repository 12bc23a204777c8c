"""A ``kill -9`` in the middle of a batch leaves the previous commit, and re-ingesting the batch
gives what an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.scenario import Scenario
from nba.store import CustomerStore
from nba.store.synthetic import synthetic_events
from tests.store.conftest import NOW, new_store

ROOT = Path(__file__).resolve().parents[2]
BATCH = {"n_events": 200_000, "n_customers": 20_000, "days": 60, "seed": 9}

# The child ingests the large batch and is held inside its transaction, after the events and
# the customers are written and before the commit; a small page cache makes SQLite spill the
# uncommitted pages into the WAL file first, so recovery has to ignore them.
CHILD = f"""
import sys, time
from nba.scenarios import load_scenario
from nba.store import customer_store
from nba.store.synthetic import synthetic_events
retail = load_scenario("retail")
batch = synthetic_events(retail, **{BATCH!r})
original = customer_store.CustomerStore._write_customers
def held(self, *args):
    original(self, *args)
    print("inside", flush=True)
    time.sleep(600)
customer_store.CustomerStore._write_customers = held
store = customer_store.CustomerStore.open(sys.argv[1], retail)
store._db.execute("PRAGMA cache_size=-256")
store.ingest(batch, now=sys.argv[2])
print("committed", flush=True)
"""


def test_kill_9_mid_batch_leaves_the_previous_state(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    path = tmp_path / "customers.db"
    with CustomerStore.create(path, retail) as store:
        store.ingest(log, now=NOW)
        ids = store.customer_ids()
        before = store.state(ids, NOW)
    wal = path.with_name(path.name + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), NOW.isoformat()],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "inside"
        assert wal.stat().st_size > wal_before  # uncommitted pages reached the file
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    batch = synthetic_events(retail, **BATCH)  # type: ignore[arg-type]
    with CustomerStore.open(path, retail) as store:
        assert store.integrity() == "ok"
        assert (store.n_events, len(store)) == (len(log.events), len(ids))
        pd.testing.assert_frame_equal(store.state(ids, NOW), before)
        report = store.ingest(batch, now=NOW)
        assert report.events_added == len(batch.events)
        resumed_ids = store.customer_ids()
        resumed = store.state(resumed_ids, NOW), store.belief(resumed_ids, NOW)[1]
    with new_store(tmp_path, retail, "uninterrupted.db") as clean:
        clean.ingest(log, now=NOW)
        clean.ingest(batch, now=NOW)
        assert list(clean.customer_ids()) == list(resumed_ids)
        pd.testing.assert_frame_equal(clean.state(resumed_ids, NOW), resumed[0])
        np.testing.assert_array_equal(clean.belief(resumed_ids, NOW)[1], resumed[1])
