from __future__ import annotations

import numpy as np
import pytest

from nba.contact_rules import action_mask, advance_contact_history, check_rules
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.types import WEEKDAYS


@pytest.fixture(scope="module")
def arrays(retail: Scenario) -> ScenarioArrays:
    return ScenarioArrays.from_scenario(retail)


def _customers(arrays: ScenarioArrays, n: int = 1) -> dict[str, np.ndarray]:
    channels = arrays.persona_consent.shape[1]
    return {
        "consent": np.ones((n, channels), dtype=bool),
        "pressure": np.zeros(n, dtype=np.int64),
        "days_since": np.tile(arrays.rules.cap_windows, (n, 1)),
        "weekday": np.zeros(n, dtype=np.int64),
    }


def _action(retail: Scenario, name: str) -> int:
    return retail.action_names.index(name)


def test_rested_consenting_customer_on_monday_may_get_anything(
    arrays: ScenarioArrays,
) -> None:
    mask = action_mask(arrays.rules, **_customers(arrays))
    assert mask.all()


def test_no_action_is_always_allowed(arrays: ScenarioArrays) -> None:
    kwargs = _customers(arrays, 4)
    kwargs["consent"][:] = False
    kwargs["pressure"][:] = arrays.rules.pressure_capacity
    kwargs["days_since"][:] = 1
    kwargs["weekday"][:] = 6
    mask = action_mask(arrays.rules, **kwargs)
    assert mask[:, 0].all() and not mask[:, 1:].any()


def test_each_rule_blocks_what_it_should(retail: Scenario, arrays: ScenarioArrays) -> None:
    channels = retail.channel_names
    kwargs = _customers(arrays, 4)
    kwargs["consent"][0, channels.index("email")] = False
    kwargs["pressure"][1] = arrays.rules.pressure_capacity - 1  # room for weight 1 only
    kwargs["days_since"][2, [c.name for c in retail.contact_rules.caps].index("direct")] = 6
    kwargs["weekday"][3] = WEEKDAYS.index("sun")
    checks = check_rules(arrays.rules, **kwargs)

    email_actions = [i for i, a in enumerate(retail.actions, 1) if a.channel == "email"]
    assert not checks.consent[0, email_actions].any() and checks.consent[1:, email_actions].all()

    weights = np.r_[0, arrays.rules.channel_pressure[arrays.rules.action_channel[1:]]]
    np.testing.assert_array_equal(checks.pressure[1], weights <= 1)

    direct = [_action(retail, "direct_mail_catalogue"), _action(retail, "call_centre_winback")]
    assert not checks.caps[2, direct].any()
    assert checks.caps[2, _action(retail, "email_content")]

    quiet_on_sunday = [_action(retail, "sms_reminder"), _action(retail, "call_centre_winback")]
    assert not checks.quiet[3, quiet_on_sunday].any()
    assert checks.quiet[3, _action(retail, "email_content")]
    np.testing.assert_array_equal(
        checks.allowed, checks.consent & checks.pressure & checks.caps & checks.quiet
    )


def test_contact_history_advances(retail: Scenario, arrays: ScenarioArrays) -> None:
    rules = arrays.rules
    pressure = np.array([0, 3, 5])
    days = np.array([[7, 2], [3, 1], [7, 2]])
    actions = np.array(
        [_action(retail, "call_centre_winback"), 0, _action(retail, "email_content")]
    )
    new_pressure, new_days = advance_contact_history(rules, pressure, days, actions)
    # call centre weighs 4; a quiet day drains 1; e-mail weighs 2 but pressure stops at capacity
    np.testing.assert_array_equal(new_pressure, [4, 2, rules.pressure_capacity])
    # cap clocks: direct restarts for the call, ages (clipped) otherwise; messaging for e-mail
    np.testing.assert_array_equal(new_days, [[1, 2], [4, 2], [7, 1]])
