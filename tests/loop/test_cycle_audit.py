"""The cycle's audit on a twin that is right: no drift, however few customers the batch holds.

A batch holds the customers who did something in it; buyers are among them because they
bought. Forecasting only for them once counted their purchases against too few forecasts
(z = 128 on a right twin at 100,000 customers): the audit forecasts every stored customer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.features import FeatureBuilder
from nba.loop.context import Context, CycleSettings
from nba.loop.ledger import Ledger
from nba.loop.steps import audit_step, ingest_step
from nba.policies import JourneyMapPolicy
from nba.store import CustomerStore
from nba.twin import CustomerTwin
from nba.twin_events import day_events

START = pd.Timestamp("2026-11-02T00:00:00Z")  # a Monday: the twin's day 0


def _days(twin: CustomerTwin, ids: np.ndarray, first: int, days: int) -> pd.DataFrame:
    journey, features = JourneyMapPolicy(twin), FeatureBuilder(twin.arrays)
    frames = []
    for day in range(first, first + days):
        actions, _ = journey.act(features.build(twin.state, twin.day), twin.action_masks())
        result = twin.step(actions)
        frames.append(day_events(twin.arrays, result, ids, START + pd.Timedelta(days=day)))
    return pd.concat(frames, ignore_index=True)


def test_a_right_twin_passes_the_audit_on_a_sparse_batch(tmp_path: Path) -> None:
    n = 6_000
    ids = np.char.add("c-", np.arange(n).astype(str))
    twin = CustomerTwin("retail", seed=1)
    twin.reset(n)
    history = _days(twin, ids, 0, 14)
    store = tmp_path / "customers.db"
    with CustomerStore.create(store, twin.scenario, consent_required=False) as opened:
        opened.ingest(EventLog.from_frames(history), now=START + pd.Timedelta(days=14))
    batch = _days(twin, ids, 14, 3)
    events = tmp_path / "new.parquet"
    batch.to_parquet(events, index=False)
    assert batch["customer_id"].nunique() < 0.8 * n  # most customers did nothing
    settings = CycleSettings(store=store, events=events, model="nba-retail")
    as_of = START + pd.Timedelta(days=17)
    ledger = Ledger(tmp_path / "cycles", "k", {"as_of": as_of.isoformat()})
    context = Context(settings, ledger, "sqlite:///unused.db", as_of)
    ledger.record_step("ingest", {"values": ingest_step(context).values})
    audit = audit_step(context)
    assert audit.stop is None and audit.outcome == "passed", audit.values
    assert audit.values["customers"] > 0.9 * n
    assert abs(audit.values["z"]) < 4
