"""The belief tracker: one day at a time equals the event-driven history, and it is calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.belief import BeliefError, BeliefTracker, ImpossibleHistoryError
from nba.errors import NBAValidationError
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin
from tests.scenario_variants import retail_with_levels

SCENARIOS = {"retail": lambda: load_scenario("retail"), "levels": retail_with_levels}


@pytest.fixture(params=list(SCENARIOS), scope="module")
def tracker(request: pytest.FixtureRequest) -> BeliefTracker:
    return BeliefTracker(SCENARIOS[request.param]())


def _history(
    tracker: BeliefTracker, n: int, days: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random purchases and sends, late arrivals, and conditioned starts on a first purchase;
    one day where most customers get the same send (the day's bulk case is not "quiet")."""
    rng = np.random.default_rng(seed)
    purchase = rng.random((n, days)) < 0.08
    sent = rng.random((n, days)) < 0.1
    action = np.where(sent, rng.integers(1, tracker.n_actions, (n, days)), 0)
    action[rng.random(n) < 0.8, days // 2] = 2
    first = rng.integers(0, days + 1, n)
    first[: n // 4] = 0
    given = np.full(n, -1)
    for row in range(n):
        bought = np.flatnonzero(purchase[row, first[row] :])
        if bought.size and row % 2:
            given[row] = first[row] + bought[0]
    return purchase, action, first, given


def test_step_day_by_day_equals_the_event_driven_run(tracker: BeliefTracker) -> None:
    n, days = 400, 60
    purchase, action, first, given = _history(tracker, n, days, seed=1)
    expected, log_likelihood = tracker.run(purchase, action, first, given, chunk=97)
    belief, total = tracker.prior(n), np.zeros(n)
    for day in range(days):
        total += tracker.step(
            belief, purchase[:, day], action[:, day], start=given == day, observed=first <= day
        )
    np.testing.assert_allclose(belief, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(total, log_likelihood, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(belief.sum(axis=(1, 2)), 1.0, rtol=1e-12)
    # the conditioned starts add nothing; the late arrivals never observed keep the prior
    never = first == days
    np.testing.assert_array_equal(belief[never], tracker.prior(int(never.sum())))
    assert (log_likelihood[never] == 0).all() and (log_likelihood[~never] < 0).all()


def test_quiet_stretches_equal_as_many_quiet_steps(tracker: BeliefTracker) -> None:
    n = 300
    rng = np.random.default_rng(2)
    start = tracker.prior(n)
    tracker.step(start, rng.random(n) < 0.5, rng.integers(0, tracker.n_actions, n))
    gaps = rng.integers(0, 25, n)
    stepped, evidence = start.copy(), np.zeros(n)
    quiet, nothing = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    for day in range(int(gaps.max())):
        evidence += tracker.step(stepped, quiet, nothing, observed=day < gaps)
    at_once = start.copy()
    np.testing.assert_allclose(tracker.quiet(at_once, gaps), evidence, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(at_once, stepped, rtol=1e-11, atol=1e-15)
    # past the powers kept, stretches go in rounds: the same numbers
    small = BeliefTracker(tracker.arrays)
    small.max_cached_days = 4
    rounds = start.copy()
    np.testing.assert_allclose(small.quiet(rounds, gaps), evidence, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(rounds, stepped, rtol=1e-11, atol=1e-15)
    assert small.quiet_powers(4).shape[0] == 5
    with pytest.raises(BeliefError, match="days"):
        small.quiet_powers(5)


def _reliability(prob: np.ndarray, truth: np.ndarray, bins: int = 10) -> list[float]:
    """Per probability bin with 100+ (customer, value) pairs: |observed frequency - mean
    posterior| in units of the bin's binomial standard error."""
    hit = np.arange(prob.shape[1])[None, :] == truth[:, None]
    prob, hit = prob.ravel(), hit.ravel()
    which = np.minimum((prob * bins).astype(int), bins - 1)
    gaps = []
    for b in range(bins):
        inside = which == b
        if inside.sum() >= 100:
            mean = prob[inside].mean()
            error = np.sqrt(mean * (1 - mean) / inside.sum())
            gaps.append(abs(hit[inside].mean() - mean) / error)
    return gaps


@pytest.mark.parametrize("scenario", [load_scenario("retail"), retail_with_levels()])
def test_posterior_matches_frequencies_on_simulated_customers(scenario: Scenario) -> None:
    """Customers the twin simulates (left alone, as a purchase-only log sees them): in every
    probability bin, the true persona, stage and rate level turn up as often as the posterior
    says, within 3.5 binomial standard errors (measured: at most 2.5), and the posterior knows
    more than the population's shares: a lower Brier score (measured: persona 0.735 against
    0.744, weak from purchases alone; stage 0.62 against 0.79; rate level 0.55 against 0.64)."""
    tracker, twin, n = BeliefTracker(scenario), CustomerTwin(scenario, seed=3), 4_000
    twin.reset(n)
    belief, nothing = tracker.prior(n), np.zeros(n, dtype=np.int64)
    for _ in range(90):
        tracker.step(belief, twin.step(nothing).bought, nothing)
    summary = tracker.state_belief(belief, pd.RangeIndex(n), np.zeros(n), pd.Timestamp(0), 90)
    truths = [(summary.persona, twin.state.persona), (summary.stage, twin.state.stage)]
    if summary.levels is not None:
        truths.append((summary.rate_level, twin.state.rate_level))
    for prob, truth in truths:
        gaps = _reliability(prob, truth)
        assert len(gaps) >= 3 and max(gaps) < 3.5, gaps
        hit = np.arange(prob.shape[1])[None, :] == truth[:, None]
        brier = ((prob - hit) ** 2).sum(axis=1).mean()
        shares = ((prob.mean(axis=0) - hit) ** 2).sum(axis=1).mean()
        assert brier < 0.995 * shares, (brier, shares)


def test_an_impossible_day_is_refused_before_anything_moves() -> None:
    tracker = BeliefTracker(load_scenario("retail"))
    churn = tracker.arrays.churn_stage
    belief = tracker.prior(3)
    belief[1] = 0.0
    belief[1, :, churn] = tracker.type_prior.sum(axis=1)  # churned: cannot buy
    before = belief.copy()
    bought = np.array([False, True, False])
    with pytest.raises(ImpossibleHistoryError, match="row 1") as caught:
        tracker.step(belief, bought, np.zeros(3, dtype=np.int64))
    assert caught.value.row == 1 and isinstance(caught.value, NBAValidationError)
    np.testing.assert_array_equal(belief, before)
    # a history where the purchase comes after a certain churn names the row and the day
    purchase = np.zeros((2, 3), dtype=bool)
    purchase[1, 2] = True
    tracker_history = BeliefTracker(load_scenario("retail"))
    prior = tracker_history.type_prior.copy()
    tracker_history.type_prior[:] = 0.0
    tracker_history.type_prior[:, churn] = prior.sum(axis=1)
    with pytest.raises(ImpossibleHistoryError, match="row 1's history by day 2"):
        tracker_history.run(purchase, np.zeros((2, 3), dtype=np.int64))


def test_bad_inputs_name_the_field() -> None:
    tracker = BeliefTracker(load_scenario("retail"))
    belief = tracker.prior(4)
    bought, action = np.zeros(4, dtype=bool), np.zeros(4, dtype=np.int64)
    cases = [
        (lambda: tracker.step(belief, bought[:3], action), "bought"),
        (lambda: tracker.step(belief, bought.astype(float), action), "bought"),
        (lambda: tracker.step(belief, bought, action[:3]), "action"),
        (lambda: tracker.step(belief, bought, action + tracker.n_actions), "action: 13"),
        (lambda: tracker.step(belief, bought, action - 1), "action: -1"),
        (lambda: tracker.step(belief, bought, action.astype(float)), "action"),
        (lambda: tracker.step(belief, bought, action, start=~bought), "start: row 0"),
        (lambda: tracker.step(belief, bought, action, observed=bought[:2]), "observed"),
        (lambda: tracker.step(belief[:, :2], bought, action), "belief"),
        (lambda: tracker.step(belief.astype(np.float32), bought, action), "belief"),
        (lambda: tracker.step(belief.transpose(0, 2, 1).copy(), bought, action), "belief"),
        (lambda: tracker.quiet(belief, np.array([1, 2, -1, 0])), "days: -1"),
        (lambda: tracker.quiet(belief, np.ones(5, dtype=np.int64)), "days"),
        (lambda: tracker.prior(-1), "n:"),
        (lambda: tracker.run(np.zeros((4, 0), dtype=bool), np.zeros((4, 0), int)), "purchase"),
        (lambda: tracker.run(np.zeros((4, 3)), np.zeros((4, 3), int)), "purchase"),
        (lambda: tracker.run(np.zeros((4, 3), bool), np.zeros((4, 2), int)), "action"),
        (lambda: tracker.run(np.zeros((4, 3), bool), np.zeros((4, 3), int), chunk=0), "chunk"),
        (
            lambda: tracker.run(np.zeros((4, 3), bool), np.zeros((4, 3), int), np.full(4, 5)),
            "first_day: 5",
        ),
        (
            lambda: tracker.run(
                np.zeros((4, 3), bool), np.zeros((4, 3), int), given_day=np.full(4, 1)
            ),
            "given_day: row 0",
        ),
    ]
    for call, field in cases:
        with pytest.raises(BeliefError, match=field):
            call()
    np.testing.assert_array_equal(belief, tracker.prior(4))  # nothing moved
    assert isinstance(BeliefError("x"), ValueError)
