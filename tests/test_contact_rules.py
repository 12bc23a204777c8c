from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from nba import optimal
from nba.contact_rules import (
    RULE_NAMES,
    action_mask,
    advance_contact_history,
    check_rules,
    effective_consent,
    explanations,
    rule_masks,
)
from nba.errors import NBAValidationError
from nba.kernel import build_kernel
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import StateSpace, rested_state
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


# ------------------------------------------------------------------ rules as declarations
def _excluding(retail_dict: dict[str, Any], **rule: Any) -> Scenario:
    retail_dict["contact_rules"]["exclusions"] = [rule]
    return Scenario.from_dict(retail_dict)


@pytest.fixture
def no_email_winback(retail_dict: dict[str, Any]) -> Scenario:
    """Retail plus a rule kind it lacks: no winback e-mail to a lapsed customer."""
    return _excluding(
        retail_dict,
        name="no_email_winback",
        stages=["lapsed"],
        offers=["winback"],
        channels=["email"],
    )


def test_rules_come_as_an_ordered_named_set(retail: Scenario, no_email_winback: Scenario) -> None:
    assert RULE_NAMES == ("consent", "exclusion", "cap", "global_cap", "quiet_day")
    retail_rules = ScenarioArrays.from_scenario(retail).rules
    assert [r.name for r in retail_rules.rules] == ["consent", "cap", "global_cap", "quiet_day"]
    rules = ScenarioArrays.from_scenario(no_email_winback).rules
    assert [r.name for r in rules.rules] == list(RULE_NAMES)


def test_an_exclusion_blocks_its_offers_in_its_stages_only(no_email_winback: Scenario) -> None:
    arrays = ScenarioArrays.from_scenario(no_email_winback)
    stages = no_email_winback.stage_names
    n = len(stages)
    state = rested_state(arrays, np.zeros(n, dtype=np.int64), np.arange(n))
    consent = np.ones((n, len(no_email_winback.channels)), dtype=bool)
    masks = rule_masks(arrays.rules, state, np.zeros(n, dtype=np.int64), consent)
    winback = _action(no_email_winback, "email_winback")
    lapsed = stages.index("lapsed")
    expected = np.ones((n, arrays.n_actions), dtype=bool)
    expected[lapsed, winback] = False  # the call centre's winback is another channel
    np.testing.assert_array_equal(masks["exclusion"], expected)
    np.testing.assert_array_equal(masks.allowed, expected)
    rows = np.arange(n)
    blocked = masks.blocked_by(rows, np.full(n, winback))
    assert blocked.tolist() == [-1] * lapsed + [1] + [-1] * (n - lapsed - 1)
    why = explanations(no_email_winback, arrays.rules)[1][winback]
    assert (
        why == "exclusion: ['no_email_winback'] rule out email_winback for customers in ['lapsed']"
    )
    with pytest.raises(NBAValidationError, match="stage"):  # a rule never guesses its input
        check_rules(arrays.rules, consent, state.pressure, state.days_since, np.zeros(n, int))


def test_the_first_blocking_rule_in_precedence_order_is_named(
    retail: Scenario, arrays: ScenarioArrays
) -> None:
    kwargs = _customers(arrays, 3)
    sms = retail.channel_names.index("sms")
    kwargs["consent"][0, sms] = False  # consent and quiet day
    kwargs["days_since"][:2] = 1  # caps open for rows 0 and 1
    kwargs["weekday"][:] = WEEKDAYS.index("sun")  # sms is quiet on Sundays
    masks = check_rules(arrays.rules, **kwargs)
    sms_reminder = _action(retail, "sms_reminder")
    blocked = masks.blocked_by(np.arange(3), np.full(3, sms_reminder))
    assert [masks.names[k] for k in blocked] == ["consent", "cap", "quiet_day"]
    skipped = masks.blocked_by(np.arange(3), np.full(3, sms_reminder), skip="consent")
    assert [masks.names[k] for k in skipped] == ["cap", "cap", "quiet_day"]
    assert (masks.blocked_by(np.arange(3), np.zeros(3, dtype=np.int64)) == -1).all()


def test_one_consent_rule_for_arrays_and_plain_values(arrays: ScenarioArrays) -> None:
    granted = np.array([[True, True, False], [True, True, False]])
    requires = np.array([True, False, True])
    opted_out = np.array([False, True])
    together = effective_consent(granted, opted_out, requires)
    np.testing.assert_array_equal(together, [[True, True, False], [False, True, False]])
    for row in range(2):
        one = effective_consent(granted[row].tolist(), bool(opted_out[row]), requires.tolist())
        assert one == tuple(together[row].tolist())


def test_the_optimum_respects_an_exclusion(
    no_email_winback: Scenario, retail_optimum: optimal.PolicySolution
) -> None:
    kernel = build_kernel(no_email_winback)
    space = StateSpace(ScenarioArrays.from_scenario(no_email_winback))
    lapsed = space.all_states().stage == no_email_winback.stage_names.index("lapsed")
    winback = _action(no_email_winback, "email_winback")
    assert not kernel.masks[:, lapsed, winback].any() and kernel.masks[:, ~lapsed, winback].any()
    solution = optimal.solve(kernel)
    assert (retail_optimum.policy[:, lapsed] == winback).any()  # the rule binds
    assert not (solution.policy[:, lapsed] == winback).any()
    assert solution.value < retail_optimum.value


def test_training_masks_read_the_stage_where_exclusions_do(no_email_winback: Scenario) -> None:
    from nba.features import FeatureBuilder
    from nba.training.masking import RuleMask, rule_mask_spec
    from nba.twin import CustomerTwin

    twin = CustomerTwin(no_email_winback)
    features = FeatureBuilder(twin.arrays)
    states = twin.space.all_states()
    rule_mask = RuleMask(rule_mask_spec(no_email_winback))
    for weekday in (0, 6):
        obs = features.build(
            states, np.zeros(len(states), dtype=np.int64), weekday=np.full(len(states), weekday)
        )
        np.testing.assert_array_equal(rule_mask(obs), twin.tables.masks[weekday])


def test_training_masks_refuse_a_rule_over_an_input_they_do_not_tabulate(
    retail: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nba import contact_rules
    from nba.training.masking import rule_mask_spec

    def no_habit(rules: Any, inputs: Any) -> np.ndarray:
        return np.broadcast_to(~inputs.component("habit")[:, None], (inputs.n, rules.n_actions))

    toy = contact_rules.ContactRule("no_habit", ("habit",), no_habit, lambda *_: "no_habit")
    monkeypatch.setattr(contact_rules, "RULES", (*contact_rules.RULES, toy))
    with pytest.raises(NBAValidationError, match=r"\['no_habit'\] read inputs"):
        rule_mask_spec(retail)
