"""The belief tracker: one day at a time equals the event-driven history, and it is calibrated."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from nba.belief import BeliefError, BeliefTracker, ImpossibleHistoryError
from nba.contact_rules import advance_contact_history
from nba.dynamics import outcome_model
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.state import CustomerState, rested_state
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


# ---------------------------------------------------------------- contexts: exact under sends
def _contacted_days(
    tracker: BeliefTracker, n: int, days: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, days) purchases, sends, and each morning's pressure and habit: sends on most days
    build pressure (from the contact rules' own leaky bucket), a discount habit comes and goes."""
    rng = np.random.default_rng(seed)
    rules = tracker.arrays.rules
    bought = rng.random((n, days)) < 0.15
    action = np.where(rng.random((n, days)) < 0.7, rng.integers(1, tracker.n_actions, (n, days)), 0)
    pressure = np.zeros((n, days), dtype=np.int64)
    clocks = np.broadcast_to(rules.cap_windows, (n, len(rules.cap_windows))).copy()
    for day in range(days - 1):
        pressure[:, day + 1], clocks = advance_contact_history(
            rules, pressure[:, day], clocks, action[:, day]
        )
    habit = np.cumsum(rng.random((n, days)) < 0.3, axis=1) % 2 == 1
    return bought, action, pressure, habit


def _brute_force(
    arrays: ScenarioArrays,
    bought: np.ndarray,
    action: np.ndarray,
    pressure: np.ndarray,
    habit: np.ndarray,
) -> tuple[np.ndarray, float]:
    """One customer's exact posterior over (type, last stage) and log evidence: every type and
    every stage path, each day's (bought?, next stage) read off ``outcome_model`` at that day's
    own observed state; types persona-major, then rate level, then dropout level."""
    dims = (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels)
    k = arrays.n_stages
    persona, rate, dropout = (d.ravel() for d in np.indices(dims))
    t = persona.shape[0]
    prior = (
        arrays.persona_share[persona, None]
        * arrays.rate_level_share[rate, None]
        * arrays.dropout_level_share[dropout, None]
        * arrays.persona_initial_stage[persona]
    )
    paths = np.array(list(itertools.product(range(k), repeat=len(bought) + 1)))
    weight = prior[:, paths[:, 0]]  # (T, paths)
    for day in range(len(bought)):
        state = CustomerState(
            persona=np.repeat(persona, k),
            stage=np.tile(np.arange(k), t),
            pressure=np.full(t * k, pressure[day]),
            habit=np.full(t * k, habit[day]),
            opted_out=np.zeros(t * k, dtype=bool),
            rate_level=np.repeat(rate, k),
            dropout_level=np.repeat(dropout, k),
            days_since=np.ones((t * k, len(arrays.rules.cap_windows)), dtype=np.int64),
        )
        out = outcome_model(arrays, state, np.full(t * k, action[day]))
        cases = [1, 3] if bought[day] else [0, 2]
        move = sum(out.case_probs[:, c, None] * out.next_stage[:, c] for c in cases)
        move = move.reshape(t, k, k)
        weight = weight * move[:, paths[:, day], paths[:, day + 1]]
    posterior = np.zeros((t, k))
    for row in range(t):
        np.add.at(posterior[row], paths[:, -1], weight[row])
    evidence = posterior.sum()
    return posterior / evidence, float(np.log(evidence))


def test_step_with_contexts_is_exact_bayes_under_sends(tracker: BeliefTracker) -> None:
    """Customers sent to on most days (pressure up to its capacity, a habit that comes and
    goes): after every day, each belief equals the posterior from enumerating every type and
    stage path under ``outcome_model`` at that day's own pressure and habit."""
    n, days = 6, 5
    bought, action, pressure, habit = _contacted_days(tracker, n, days, seed=5)
    assert pressure.max() >= 3 and habit.any() and (~habit).any()  # contexts really vary
    belief, evidence = tracker.prior(n), np.zeros(n)
    for day in range(days):
        context = {"pressure": pressure[:, day], "habit": habit[:, day]}
        evidence += tracker.step(belief, bought[:, day], action[:, day], context=context)
        for row in range(n):
            expected, log_evidence = _brute_force(
                tracker.arrays,
                bought[row, : day + 1],
                action[row, : day + 1],
                pressure[row, : day + 1],
                habit[row, : day + 1],
            )
            np.testing.assert_allclose(belief[row], expected, rtol=1e-10, atol=1e-14)
            assert evidence[row] == pytest.approx(log_evidence, rel=1e-10)
    # the rested tracker differs on these customers: the contexts carry real information
    rested = tracker.prior(n)
    for day in range(days):
        tracker.step(rested, bought[:, day], action[:, day])
    assert np.abs(rested - belief).max() > 1e-3


def test_the_rested_context_is_the_default_bit_for_bit(tracker: BeliefTracker) -> None:
    n, days = 500, 30
    purchase, action, first, given = _history(tracker, n, days, seed=7)
    plain, with_context = tracker.prior(n), tracker.prior(n)
    rested = rested_state(
        tracker.arrays, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    )  # a CustomerState: persona and stage are never read
    for day in range(days):
        flags = {"start": given == day, "observed": first <= day}
        expected = tracker.step(plain, purchase[:, day], action[:, day], **flags)
        got = tracker.step(with_context, purchase[:, day], action[:, day], **flags, context=rested)
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(with_context, plain)


def test_bad_contexts_name_the_component() -> None:
    tracker = BeliefTracker(load_scenario("retail"))
    belief = tracker.prior(3)
    bought, action = np.zeros(3, dtype=bool), np.zeros(3, dtype=np.int64)
    capacity = tracker.arrays.rules.pressure_capacity
    habit = np.zeros(3, dtype=bool)
    cases = [
        ({"habit": habit}, "missing 'pressure'"),
        ({"pressure": np.zeros(3, dtype=np.int64)}, "missing 'habit'"),
        ({"pressure": np.zeros(2, dtype=np.int64), "habit": habit}, "context.pressure"),
        (
            {"pressure": np.full(3, capacity + 1), "habit": habit},
            f"context.pressure: {capacity + 1}",
        ),
        ({"pressure": np.zeros(3), "habit": habit}, "context.pressure"),
        ({"pressure": np.zeros(3, dtype=np.int64), "habit": np.zeros(3)}, "context.habit"),
    ]
    for context, field in cases:
        with pytest.raises(BeliefError, match=field):
            tracker.step(belief, bought, action, context=context)
    np.testing.assert_array_equal(belief, tracker.prior(3))


def _brier(prob: np.ndarray, truth: np.ndarray) -> float:
    hit = np.arange(prob.shape[1])[None, :] == truth[:, None]
    return float(((prob - hit) ** 2).sum(axis=1).mean())


#: Sends on the channels every persona consents to (email, paid social): which requests the
#: rules block then says nothing about the persona, and the email discounts form habits.
OPEN_SENDS = ("email_content", "email_discount_10", "email_winback", "email_feedback")


@pytest.mark.parametrize("scenario", [load_scenario("retail"), retail_with_levels()])
def test_contexts_stay_calibrated_and_beat_the_rested_tracker_under_sends(
    scenario: Scenario,
) -> None:
    """The twin's customers under a random contact policy (a send on 60% of days: pressure
    sits near 3.7 of 6, discount habits form): tracked with each morning's own pressure and
    habit, the true persona and stage turn up as often as the posterior says, within 3.5
    binomial standard errors per bin (measured over seeds 4-6: at most 2.0; the rested tracker
    on the same customers: up to 5.3 on stage), and the posterior beats the rested tracker's on
    Brier score for both (measured: persona 0.7168 against 0.7180, stage 0.6431 against 0.6444
    on retail). Customers start without a habit: the twin draws the first habit by persona,
    and the prior does not condition on it."""
    tracker, twin, n = BeliefTracker(scenario), CustomerTwin(scenario, seed=4), 4_000
    twin.reset(n)
    twin.state.habit[:] = False
    sends = np.array([scenario.action_names.index(a) for a in (*OPEN_SENDS, "paid_social_content")])
    rng = np.random.default_rng(104)
    exact, rested = tracker.prior(n), tracker.prior(n)
    for _ in range(90):
        wanted = np.where(rng.random(n) < 0.6, rng.choice(sends, n), 0)
        context = {"pressure": twin.state.pressure.copy(), "habit": twin.state.habit.copy()}
        day = twin.step(wanted)
        tracker.step(exact, day.bought, day.executed, context=context)
        tracker.step(rested, day.bought, day.executed)
    assert twin.state.habit.any() and twin.state.pressure.mean() > 2
    views = [
        tracker.state_belief(b, pd.RangeIndex(n), np.zeros(n), pd.Timestamp(0), 90)
        for b in (exact, rested)
    ]
    for part in ("persona", "stage"):
        truth = getattr(twin.state, part)
        prob, rested_prob = (getattr(view, part) for view in views)
        gaps = _reliability(prob, truth)
        assert len(gaps) >= 3 and max(gaps) < 3.5, (part, gaps)
        assert _brier(prob, truth) < _brier(rested_prob, truth), part
