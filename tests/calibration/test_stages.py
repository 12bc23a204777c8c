from __future__ import annotations

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.calibration.stages import ACTIVE, AWARE, LAPSED, LOYAL, StageRules, panel_counts


def test_assign_by_recency_and_frequency() -> None:
    rules = StageRules(active_days=30, loyal_purchases=4, fitted_from="test")
    stage = rules.assign(np.array([np.nan, 5.0, 5.0, 31.0]), np.array([0, 1, 4, 9]))
    assert stage.tolist() == [AWARE, ACTIVE, LOYAL, LAPSED]


def regular_buyers(gap_days: int, customers: int = 60, days: int = 400) -> EventLog:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [
        {"customer_id": f"c{c}", "timestamp": start + pd.Timedelta(days=d + c % gap_days)}
        for c in range(customers)
        for d in range(0, days, gap_days)
    ]
    frame = pd.DataFrame(rows).assign(event="purchased", value=10.0)
    return EventLog.from_frames(frame)


def test_thresholds_come_from_the_purchase_gaps() -> None:
    log = regular_buyers(gap_days=10)
    rules = StageRules.fit(log, pd.Timestamp("2025-02-01", tz="UTC"))
    assert rules.active_days == 10
    assert rules.loyal_purchases is not None and rules.loyal_purchases >= 2
    few = StageRules.fit(
        regular_buyers(gap_days=10, customers=2, days=50), pd.Timestamp("2025-02-01", tz="UTC")
    )
    assert few.active_days == 90 and few.fitted_from.startswith("assumed")


def test_panel_counts_days_purchases_and_moves() -> None:
    log = regular_buyers(gap_days=10, customers=5, days=400)
    rules = StageRules(active_days=15, loyal_purchases=None, fitted_from="test")
    ids = log.customer_ids
    start, end = pd.Timestamp("2024-06-01", tz="UTC"), pd.Timestamp("2024-07-01", tz="UTC")
    panel = panel_counts(log, rules, ids, start, end)
    assert panel.stage_days.sum(axis=1).tolist() == [30.0] * 5
    # a purchase every 10 days keeps everyone active, buying on 3 of 30 days
    assert (panel.stage_days[:, ACTIVE] == 30).all()
    assert (panel.stage_purchases[:, ACTIVE] == 3).all()
    assert panel.moves_quiet[:, ACTIVE, LAPSED].sum() == 0
    assert panel.moves_quiet.sum() + panel.moves_bought.sum() == 5 * 29
