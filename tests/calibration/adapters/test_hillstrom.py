from __future__ import annotations

import pandas as pd

from nba.calibration.adapters.hillstrom import RESPONSE_WINDOW_DAYS, SEND_TIME
from nba.calibration.events import EventLog
from nba.calibration.snapshot import take_snapshot


def test_arms_outcomes_and_history_match_the_published_figures(hillstrom_log: EventLog) -> None:
    events = hillstrom_log.events
    counts = events["event"].value_counts()
    assert counts["sent"] + counts["held_out"] == 64_000
    assert set(events.loc[events["event"] == "sent", "action"]) == {"mens", "womens"}
    assert events.loc[events["event"].isin(["sent", "held_out"]), "propensity"].eq(1 / 3).all()
    snapshot = take_snapshot(hillstrom_log, SEND_TIME, RESPONSE_WINDOW_DAYS).customers
    # the data set's README figures: visit 14.68%, conversion 0.90%, spend 1.05
    assert round(snapshot["visited"].mean() * 100, 2) == 14.68
    assert round((snapshot["purchases"] > 0).mean() * 100, 2) == 0.90
    assert round(snapshot["spend"].mean(), 2) == 1.05
    by_arm = snapshot.groupby(snapshot["action"].fillna("none"))["visited"].mean()
    assert round(by_arm["mens"], 3) == 0.183 and round(by_arm["none"], 3) == 0.106
    # history: one purchase per customer, recency months before the send
    assert (snapshot["frequency"] == 1).all()
    months = snapshot["recency_days"] / 30.4375
    table = hillstrom_log.customers.set_index("customer_id")
    pd.testing.assert_series_equal(
        months.round().astype(int), table["recency_months"].reindex(months.index), check_names=False
    )
