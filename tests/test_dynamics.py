from __future__ import annotations

import numpy as np
import pytest

from nba.dynamics import CASE_BOUGHT, categorical, outcome_model
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import StateSpace


@pytest.fixture(scope="module")
def all_pairs(retail: Scenario):
    arrays = ScenarioArrays.from_scenario(retail)
    space = StateSpace(arrays)
    rng = np.random.default_rng(0)
    index = rng.choice(space.size, size=3000, replace=False)
    states = space.decode(np.repeat(index, arrays.n_actions))
    actions = np.tile(np.arange(arrays.n_actions), index.shape[0])
    return arrays, space, states, actions


def test_probabilities_are_distributions(all_pairs) -> None:
    arrays, _, states, actions = all_pairs
    out = outcome_model(arrays, states, actions)
    np.testing.assert_allclose(out.case_probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(out.next_stage.sum(axis=2), 1.0, atol=1e-12)
    for table in (out.case_probs, out.next_stage, out.habit_next, out.opt_out_next):
        assert (table >= 0).all() and (table <= 1).all()
    assert np.isfinite(out.expected_reward(arrays.scenario.margin_rate)).all()


def test_outcomes_ignore_cap_clocks(all_pairs) -> None:
    """Tabulating outcomes per response key relies on this."""
    arrays, _, states, actions = all_pairs
    reference = outcome_model(arrays, states, actions)
    shuffled = states.copy()
    shuffled.days_since = np.ones_like(states.days_since)
    other = outcome_model(arrays, shuffled, actions)
    np.testing.assert_array_equal(reference.case_probs, other.case_probs)
    np.testing.assert_array_equal(reference.next_stage, other.next_stage)


def test_no_action_means_nothing_noticed_and_no_cost(all_pairs) -> None:
    arrays, _, states, actions = all_pairs
    idle = actions == 0
    out = outcome_model(arrays, states.take(np.flatnonzero(idle)), actions[idle])
    np.testing.assert_array_equal(out.case_probs[:, 2:], 0.0)
    np.testing.assert_array_equal(out.contact_cost, 0.0)
    np.testing.assert_array_equal(out.opt_out_next[:, 0], states.opted_out[idle])


def test_churned_is_absorbing_and_buys_nothing(all_pairs) -> None:
    arrays, _, states, actions = all_pairs
    out = outcome_model(arrays, states, actions)
    churned = states.stage == arrays.churn_stage
    assert churned.any()
    assert (out.next_stage[churned][:, :, arrays.churn_stage] == 1.0).all()
    assert (out.case_probs[churned][:, CASE_BOUGHT] == 0.0).all()


def test_discounts_build_a_habit_that_lowers_full_price_buying(retail: Scenario) -> None:
    arrays = ScenarioArrays.from_scenario(retail)
    space = StateSpace(arrays)
    states = space.decode(np.arange(space.size))
    active = (states.stage == retail.stage_names.index("active")) & (states.pressure == 0)
    base = states.take(np.flatnonzero(active & ~states.habit))
    habitual = base.copy()
    habitual.habit[:] = True
    idle = np.zeros(len(base), dtype=np.int64)
    p_buy = lambda s: outcome_model(arrays, s, idle).case_probs[:, CASE_BOUGHT].sum(1)  # noqa: E731
    assert (p_buy(habitual) < p_buy(base)).all()
    discount = np.full(len(base), retail.action_names.index("sms_discount_20"))
    assert (outcome_model(arrays, base, discount).habit_next[:, 3] > 0).all()


def test_categorical_matches_probabilities() -> None:
    rng = np.random.default_rng(1)
    probs = np.array([[0.2, 0.0, 0.5, 0.3]] * 200_000)
    draws = categorical(probs, rng.random(probs.shape[0]))
    frequencies = np.bincount(draws, minlength=4) / draws.shape[0]
    np.testing.assert_allclose(frequencies, probs[0], atol=0.005)
    assert frequencies[1] == 0.0
