"""The twin's day as a company would log it: what happened, and only what is recorded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.policies import RandomPolicy
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin, StepResult
from nba.twin_events import COLUMNS, EVENT_HOURS, day_events

N, DAYS = 3_000, 20
MONDAY = pd.Timestamp("2026-01-05", tz="UTC")


def _no_letter_opens() -> Scenario:
    retail = load_scenario("retail")
    channels = [c.model_dump(mode="json") for c in retail.channels]
    for channel in channels:
        channel["reports_opens"] = channel["name"] != "direct_mail"
    return retail.updated({"channels": channels})


def _simulate(scenario: Scenario | str) -> tuple[CustomerTwin, list[StepResult], pd.DataFrame]:
    twin = CustomerTwin(scenario, seed=3)
    twin.reset(N)
    ids = np.char.add("c-", np.arange(N).astype(str))
    policy, features = RandomPolicy(seed=4), FeatureBuilder(twin.arrays)
    results, frames = [], []
    for day in range(DAYS):
        actions, _ = policy.act(features.build(twin.state, twin.day), twin.action_masks())
        result = twin.step(actions)
        results.append(result)
        frames.append(day_events(twin.arrays, result, ids, MONDAY + pd.Timedelta(days=day)))
    return twin, results, pd.concat(frames, ignore_index=True)


def test_every_send_purchase_redemption_and_opt_out_is_logged_once() -> None:
    twin, results, events = _simulate("retail")
    counts = events["event"].value_counts()
    assert counts["sent"] == sum(int(r.contacted.sum()) for r in results)
    assert counts["opened"] == sum(int(r.noticed.sum()) for r in results)  # retail: all report
    assert counts["purchased"] == sum(int(r.bought.sum()) for r in results)
    assert counts["redeemed"] == sum(int((r.bought & (r.discount_cost > 0)).sum()) for r in results)
    assert counts.get("unsubscribed", 0) == sum(int(r.opted_out.sum()) for r in results)
    assert counts["redeemed"] > 0 and counts["opened"] > 0
    revenue = sum(float(r.revenue.sum()) for r in results)
    bought = events["event"] == "purchased"
    assert events.loc[bought, "value"].sum() == pytest.approx(revenue)
    first = results[0]
    sent = events[(events["event"] == "sent") & (events["timestamp"].dt.day == MONDAY.day)]
    executed = first.executed[first.contacted]
    pairs = ["-"] + [f"{a.channel}/{a.offer}" for a in twin.scenario.actions]  # 0: no action
    logged = (sent["channel"] + "/" + sent["action"]).to_numpy()
    expected = np.array(pairs)[executed]
    assert len(expected) == len(logged) and (np.sort(logged) == np.sort(expected)).all()


def test_a_channel_that_reports_no_opens_logs_none() -> None:
    scenario = _no_letter_opens()
    assert scenario.fingerprint() != load_scenario("retail").fingerprint()
    _, _, events = _simulate(scenario)
    opens = events[events["event"] == "opened"]
    assert len(opens) > 0 and "direct_mail" not in set(opens["channel"])
    letters = events[(events["event"] == "sent") & (events["channel"] == "direct_mail")]
    assert len(letters) > 0  # letters were sent (and some noticed), just never reported


def test_the_log_validates_and_keeps_each_days_order() -> None:
    _, _, events = _simulate("retail")
    log = EventLog.from_frames(events)
    assert len(log.events) == len(events)
    hour = events["timestamp"].dt.hour
    assert (hour == events["event"].map(EVENT_HOURS)).all()
    day = (events["timestamp"] - MONDAY).dt.days
    assert day.min() == 0 and day.max() == DAYS - 1


def test_mismatched_ids_are_refused_by_name() -> None:
    twin = CustomerTwin("retail", seed=0)
    twin.reset(5)
    result = twin.step(np.zeros(5, dtype=np.int64))
    with pytest.raises(NBAValidationError, match=r"^customer_ids:"):
        day_events(twin.arrays, result, ["a", "b"], MONDAY)
    quiet = day_events(twin.arrays, result, list("abcde"), MONDAY.tz_localize(None))
    assert set(quiet["event"]) <= {"purchased"} and tuple(quiet.columns) == COLUMNS
