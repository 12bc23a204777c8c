"""The observed state from events follows the twin's own rules, day by day."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.contact_rules import ContactRuleArrays, advance_contact_history
from nba.scenario import Scenario
from nba.store.observed import DAY_NS, ObservedRules, state_at, summarise
from nba.store.rows import CODE, NO_NUMBER, NO_TEXT


def _history(rows: list[tuple[str, int, str, str]]) -> pd.DataFrame:
    """(customer, whole day, event, channel) rows at the start of their day (stored form)."""
    return pd.DataFrame(
        {
            "customer_id": [r[0] for r in rows],
            "ts": [r[1] * DAY_NS for r in rows],
            "event": [CODE[r[2]] for r in rows],
            "channel": [r[3] for r in rows],
            "action": NO_TEXT,
            "value": NO_NUMBER,
            "propensity": NO_NUMBER,
        }
    )


def test_pressure_and_clocks_match_the_twin_stepping_day_by_day(retail: Scenario) -> None:
    """Random send days on random channels: the summary aged to a later day gives the pressure
    and the per-cap clocks that the twin's advance_contact_history reaches from a rested start."""
    rng = np.random.default_rng(0)
    rules = ContactRuleArrays.from_scenario(retail)
    observed = ObservedRules.from_scenario(retail)
    channel_action = {retail.actions[a - 1].channel: a for a in range(len(retail.actions), 0, -1)}
    n, days = 60, 40
    action = np.zeros((n, days), dtype=np.int64)
    sends = rng.random((n, days)) < 0.3
    channels = list(channel_action)
    picks = rng.integers(0, len(channels), size=(n, days))
    rows = []
    for i, d in zip(*np.nonzero(sends), strict=True):
        channel = channels[picks[i, d]]
        action[i, d] = channel_action[channel]
        rows.append((f"c{i}", 100 + int(d), "sent", channel))
    ids = pd.Index([f"c{i}" for i in range(n)], dtype=object)
    summary = summarise(_history(rows), ids, observed)
    pressure = np.zeros(n, dtype=np.int64)
    clocks = np.tile(rules.cap_windows, (n, 1))
    for d in range(days):
        pressure, clocks = advance_contact_history(rules, pressure, clocks, action[:, d])
        as_of = (100 + d + 1) * DAY_NS  # the start of the next day
        state = state_at(summary, as_of, observed)
        done = ~sends[:, d + 1 :].any(axis=1)  # no send after today: the summary is final
        np.testing.assert_array_equal(state["pressure"][done], pressure[done])
        np.testing.assert_array_equal(state["days_since"][done], clocks[done])
    np.testing.assert_array_equal(state["pressure"], pressure)
    np.testing.assert_array_equal(state["days_since"], clocks)
    assert pressure.max() > 0 and (clocks < rules.cap_windows).any()  # the rules were exercised


def test_habit_forms_on_redemption_days_and_fades(retail: Scenario) -> None:
    observed = ObservedRules.from_scenario(retail)
    gain, decay = retail.discount_habit.gain, retail.discount_habit.decay
    history = _history(
        [("a", 10, "redeemed", ""), ("a", 10, "redeemed", ""), ("a", 20, "redeemed", "")]
    )
    summary = summarise(history, pd.Index(["a"], dtype=object), observed)
    expected = gain * (1 - decay) ** 9  # formed on day 10 (once per day), faded days 11..19
    expected = expected + (1 - expected) * gain  # formed again on day 20
    assert summary.habit[0] == pytest.approx(expected)
    later = state_at(summary, 31 * DAY_NS, observed)  # days 21..30 fade
    assert later["habit_probability"][0] == pytest.approx(expected * (1 - decay) ** 10)
    assert later["discount_habit"][0] == (expected * (1 - decay) ** 10 >= 0.5)


def test_opt_out_is_permanent_and_unknown_channels_add_no_pressure(retail: Scenario) -> None:
    observed = ObservedRules.from_scenario(retail)
    history = _history(
        [("a", 5, "unsubscribed", ""), ("a", 9, "sent", "email"), ("b", 9, "sent", "fax")]
    )
    summary = summarise(history, pd.Index(["a", "b", "c"], dtype=object), observed)
    state = state_at(summary, 10 * DAY_NS, observed)
    assert state["opted_out"].tolist() == [True, False, False]
    assert state["pressure"].tolist() == [2, 0, 0]  # email weighs 2; 'fax' is not a channel
    assert state["days_since"][2].tolist() == retail_windows(retail)  # never contacted


def retail_windows(scenario: Scenario) -> list[int]:
    return [cap.window_days for cap in scenario.contact_rules.caps]


def test_clocks_count_whole_24_hour_periods_as_a_request_does(retail: Scenario) -> None:
    """A send at noon is one day old at noon the next day, not at midnight (serving's rule)."""
    observed = ObservedRules.from_scenario(retail)
    history = _history([("a", 10, "sent", "email")])
    history["ts"] += DAY_NS // 2
    summary = summarise(history, pd.Index(["a"], dtype=object), observed)
    messaging = [cap.name for cap in retail.contact_rules.caps].index("messaging")
    at = [
        state_at(summary, t, observed)["days_since"][0, messaging]
        for t in (11 * DAY_NS, 12 * DAY_NS, 12 * DAY_NS + DAY_NS // 2)
    ]
    assert at == [1, 1, 2]
