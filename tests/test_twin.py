from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba import CustomerTwin
from nba.errors import NBAValidationError
from nba.scenario import Scenario


@pytest.fixture(scope="module")
def twin(retail: Scenario) -> CustomerTwin:
    return CustomerTwin(retail, seed=0)


def _rollout(twin: CustomerTwin, n: int, days: int, seed: int, policy_seed: int):
    """Random requested actions (many disallowed), and an independent rule checker."""
    twin.reset(n, seed=seed)
    rules, arrays = twin.arrays.rules, twin.arrays
    policy_rng = np.random.default_rng(policy_seed)
    last_in_cap = np.full((n, rules.n_caps), -10_000)
    pressure = np.zeros(n, dtype=np.int64)
    was_churned = np.zeros(n, dtype=bool)
    for day in range(days):
        before = twin.state.copy()
        weekday = twin.weekday.copy()
        requested = policy_rng.integers(0, twin.n_actions, size=n)
        result = twin.step(requested)
        executed, contacted = result.executed, result.contacted
        channel = rules.action_channel[executed]

        # disallowed actions never executed, and each blocked request is counted
        assert ((executed == requested) | (executed == 0)).all()
        np.testing.assert_array_equal(result.blocked, executed != requested)
        # consent: never a non-consented channel; opted-out customers only on open channels
        consent = before.consent(arrays)
        assert consent[contacted, channel[contacted]].all()
        opted = before.opted_out & contacted
        assert not rules.requires_consent[channel[opted]].any()
        # quiet days respected
        assert not rules.quiet[weekday[contacted], channel[contacted]].any()
        # caps: no two contacts under one rule closer than its window (full calendar check)
        for g, window in enumerate(rules.cap_windows):
            touched = contacted & rules.cap_members[g, np.maximum(channel, 0)]
            assert (day - last_in_cap[touched, g] >= window).all()
            last_in_cap[touched, g] = day
        # global cap: recompute the bucket independently; a contact never overflows it
        weight = np.where(contacted, rules.channel_pressure[np.maximum(channel, 0)], 0)
        assert (pressure + weight <= rules.pressure_capacity).all()
        pressure = np.where(contacted, pressure + weight, np.maximum(pressure - 1, 0))
        np.testing.assert_array_equal(twin.state.pressure, pressure)
        # churned stays churned, rewards finite, opted-out stays opted-out
        churned = twin.state.stage == arrays.churn_stage
        assert churned[was_churned].all()
        was_churned = churned
        assert np.isfinite(result.reward).all()
        assert twin.state.opted_out[before.opted_out].all()
        assert not result.bought[before.stage == arrays.churn_stage].any()
    return twin


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 64),
    days=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    policy_seed=st.integers(0, 2**32 - 1),
)
def test_invariants_hold_under_random_requests(
    twin: CustomerTwin, n: int, days: int, seed: int, policy_seed: int
) -> None:
    _rollout(twin, n, days, seed, policy_seed)


def test_kpis_add_up(twin: CustomerTwin) -> None:
    twin.reset(500, seed=3)
    totals = np.zeros(500)
    rng = np.random.default_rng(0)
    for _ in range(30):
        result = twin.step(rng.integers(0, twin.n_actions, size=500))
        totals += result.reward
    kpis = twin.kpis
    np.testing.assert_allclose(kpis.reward, totals)
    margin = twin.scenario.margin_rate
    expected_reward = (
        (kpis.revenue + kpis.discount_cost) * margin - kpis.discount_cost - kpis.contact_cost
    )
    referral = kpis.reward - expected_reward
    assert (referral >= -1e-9).all()  # only advocates' referrals on top of margin and costs
    assert kpis.blocked.sum() > 0 and kpis.contacts.sum() > 0 and kpis.purchases.sum() > 0
    frame = twin.kpi_frame()
    assert len(frame) == 500 and set(frame["persona"]) <= set(twin.scenario.persona_names)


def test_same_seed_same_numbers(retail: Scenario) -> None:
    def run(seed: int) -> np.ndarray:
        twin = CustomerTwin(retail, seed=seed)
        twin.reset(300)
        rng = np.random.default_rng(9)
        rewards = [twin.step(rng.integers(0, twin.n_actions, 300)).reward for _ in range(20)]
        return np.stack(rewards)

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_tables_and_direct_model_give_identical_paths(retail: Scenario) -> None:
    paths = []
    for tabulate in (True, False):
        twin = CustomerTwin(retail, seed=11, tabulate=tabulate)
        twin.reset(400)
        rng = np.random.default_rng(2)
        masks, rewards = [], []
        for _ in range(25):
            masks.append(twin.action_masks())
            rewards.append(twin.step(rng.integers(0, twin.n_actions, 400)).reward)
        paths.append((np.stack(masks), np.stack(rewards), twin.state_index()))
    for tabulated, direct in zip(*paths, strict=True):
        np.testing.assert_allclose(tabulated, direct, rtol=1e-12)


def test_reset_matches_start_distribution(retail: Scenario) -> None:
    twin = CustomerTwin(retail, seed=4)
    state = twin.reset(200_000)
    shares = np.bincount(state.persona) / 200_000
    np.testing.assert_allclose(shares, [p.share for p in retail.personas], atol=0.005)
    assert (state.pressure == 0).all() and not state.opted_out.any()


def test_restart_replaces_only_given_rows(twin: CustomerTwin) -> None:
    twin.reset(100, seed=1)
    for _ in range(10):
        twin.step(np.ones(100, dtype=np.int64))
    kept = twin.state.copy()
    rows = np.array([3, 50, 99])
    twin.restart(rows)
    assert (twin.day[rows] == 0).all() and (np.delete(twin.day, rows) == 10).all()
    others = np.delete(np.arange(100), rows)
    np.testing.assert_array_equal(twin.state.stage[others], kept.stage[others])
    assert (twin.kpis.contacts[rows] == 0).all()


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (np.zeros(3, dtype=np.int64), r"actions: expected shape \(4,\)"),
        (np.array([0, 1, 99, 0]), r"actions\[2\]: 99 is not an action"),
        (np.array([0, -1, 0, 0]), r"actions\[1\]"),
        (np.array([0.5, 1, 0, 0]), "expected integers"),
    ],
)
def test_bad_actions_get_clear_errors(twin: CustomerTwin, actions, message: str) -> None:
    twin.reset(4, seed=0)
    with pytest.raises(NBAValidationError, match=message):
        twin.step(actions)


def test_state_before_reset_and_bad_n(retail: Scenario) -> None:
    twin = CustomerTwin(retail)
    with pytest.raises(NBAValidationError, match="reset"):
        twin.step(np.zeros(1, dtype=np.int64))
    with pytest.raises(NBAValidationError, match="n: expected a positive integer"):
        twin.reset(0)
