from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nba.calibration.adapters.hillstrom import (
    INPUT_COLUMNS,
    OUTCOMES,
    RESPONSE_WINDOW_DAYS,
    SEND_TIME,
    read_hillstrom,
)
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.snapshot import take_snapshot
from nba.ope.hillstrom import load_hillstrom


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


def test_the_one_reader_names_the_file_the_column_and_the_row(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="no such file"):
        read_hillstrom(tmp_path / "absent.csv")
    good = {c: [0] for c in (*INPUT_COLUMNS, *OUTCOMES)} | {"segment": ["Mens E-Mail"]}
    pd.DataFrame(good).drop(columns=["spend"]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(EventLogError, match=r"missing column\(s\) \['spend'\]"):
        read_hillstrom(tmp_path / "short.csv")
    rows = pd.DataFrame(good | {"segment": ["Mens E-Mail"]})
    rows = pd.concat([rows, rows.assign(segment="Kids E-Mail")], ignore_index=True)
    rows.to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(EventLogError, match="row 1, segment: unknown arm 'Kids E-Mail'"):
        read_hillstrom(tmp_path / "odd.csv")
    with pytest.raises(EventLogError, match="unknown arm"):  # the OPE loader reads through it
        load_hillstrom(tmp_path / "odd.csv")
