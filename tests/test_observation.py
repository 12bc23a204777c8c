"""Beliefs of simulated customers: the conditioned prior and the observer the envs step with."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nba.belief import BeliefTracker
from nba.belief_model import BeliefError
from nba.errors import NBAValidationError
from nba.observation import BeliefObserver, observation_of
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin


def _shared_consent() -> Scenario:
    """Retail where passive browsers grant the cautious researchers' consent: consent no longer
    tells those two personas apart, only their shares, habits and starting stages do."""
    spec = copy.deepcopy(load_scenario("retail").to_dict())
    spec["name"] = "retail_shared_consent"
    spec["personas"][3]["consent"] = list(spec["personas"][2]["consent"])
    spec["personas"][3]["initial_discount_habit"] = 0.5  # researchers: 0.1
    return Scenario.from_dict(spec)


def _hand_prior(
    scenario: Scenario, consent: np.ndarray | None, habit: np.ndarray | None = None
) -> np.ndarray:
    """(n, P, K) Bayes by hand: P(persona) P(stage | persona) P(habit | persona) [consent], a
    factor left out where it is not observed (None)."""
    spec = scenario.to_dict()
    stages = scenario.stage_names
    free = {c["name"] for c in spec["channels"] if not c["requires_consent"]}  # always granted
    channels = [c["name"] for c in spec["channels"]]
    n = len(consent) if consent is not None else len(habit)  # type: ignore[arg-type]
    prior = np.zeros((n, len(spec["personas"]), len(stages)))
    for p, persona in enumerate(spec["personas"]):
        grants = np.array([name in persona["consent"] or name in free for name in channels])
        fits = np.ones(n) if consent is None else (consent == grants).all(axis=1)
        start = persona["initial_discount_habit"]
        held = np.ones(n) if habit is None else np.where(habit, start, 1.0 - start)
        for k, stage in enumerate(stages):
            share = persona["share"] * persona["initial_stages"].get(stage, 0.0)
            prior[:, p, k] = share * held * fits
    return prior / prior.sum(axis=(1, 2), keepdims=True)


def test_prior_given_consent_and_habit_is_bayes_by_hand() -> None:
    scenario = _shared_consent()
    arrays = ScenarioArrays.from_scenario(scenario)
    tracker = BeliefTracker(arrays)
    # every persona's consent, with and without a habit
    consent = np.repeat(arrays.persona_consent, 2, axis=0)
    habit = np.tile([False, True], arrays.n_personas)
    prior = tracker.prior(len(habit), consent=consent, habit=habit)
    np.testing.assert_allclose(prior, _hand_prior(scenario, consent, habit), atol=1e-12)
    # consent shared by researchers and browsers leaves both possible, the habit tilts them
    persona = prior.sum(axis=2)
    researcher = 2 * 2  # first row with the researchers' (= browsers') consent, no habit
    assert 0.0 < persona[researcher, 3] < 1.0
    assert persona[researcher, 2] / persona[researcher, 3] == pytest.approx(
        (0.25 * 0.9) / (0.2 * 0.5)
    )
    assert persona[researcher + 1, 2] / persona[researcher + 1, 3] == pytest.approx(
        (0.25 * 0.1) / (0.2 * 0.5)
    )
    # the deal seeker's consent is its own: certain
    np.testing.assert_allclose(persona[:2, 0], 1.0)
    # consent alone / habit alone / neither
    np.testing.assert_allclose(
        tracker.prior(len(habit), consent=consent), _hand_prior(scenario, consent), atol=1e-12
    )
    np.testing.assert_allclose(
        tracker.prior(len(habit), habit=habit),
        _hand_prior(scenario, None, habit),
        atol=1e-12,
    )
    np.testing.assert_allclose(tracker.prior(3), np.broadcast_to(tracker.type_prior, (3, 4, 7)))


def test_on_retail_consent_reveals_the_persona() -> None:
    twin = CustomerTwin("retail", seed=1)
    state = twin.reset(2_000)
    observer = BeliefObserver(twin.arrays)
    observer.reset(state)
    persona = observer.belief.sum(axis=2)
    np.testing.assert_array_equal(persona.argmax(axis=1), state.persona)
    np.testing.assert_allclose(persona.max(axis=1), 1.0, atol=1e-12)
    # the stage is the uncertain part: the persona's starting stages
    stage = observer.belief.sum(axis=1)
    np.testing.assert_allclose(stage, twin.arrays.persona_initial_stage[state.persona], atol=1e-12)


def test_a_consent_no_persona_grants_is_refused_naming_the_row() -> None:
    arrays = ScenarioArrays.from_scenario(load_scenario("retail"))
    tracker = BeliefTracker(arrays)
    consent = arrays.persona_consent[[0, 1, 2, 3]].copy()
    consent[2] = True  # every channel: no retail persona grants them all
    with pytest.raises(BeliefError, match=r"^consent: row 2's consent"):
        tracker.prior(4, consent=consent, habit=np.zeros(4, dtype=bool))
    with pytest.raises(BeliefError, match="consent: expected"):
        tracker.prior(4, consent=consent[:, :-1])
    assert issubclass(BeliefError, NBAValidationError)


def _random_contacts(twin: CustomerTwin, observer: BeliefObserver, days: int, seed: int) -> None:
    """``days`` of a uniformly random allowed action per customer, the observer kept current."""
    rng = np.random.default_rng(seed)
    for _ in range(days):
        mask = twin.action_masks()
        # a uniform pick among each row's allowed actions, vectorised
        score = np.where(mask, rng.random(mask.shape), -1.0)
        actions = score.argmax(axis=1)
        context = observer.context(twin.state)
        result = twin.step(actions)
        observer.update(context, result.bought, result.executed)


def test_observer_stage_belief_is_calibrated_under_random_contacts() -> None:
    n, days = 20_000, 60
    twin = CustomerTwin("retail", seed=11)
    state = twin.reset(n)
    observer = BeliefObserver(twin.arrays)
    observer.reset(state)
    _random_contacts(twin, observer, days, seed=12)
    truth = twin.state
    belief = observer.belief
    np.testing.assert_allclose(belief.sum(axis=(1, 2)), 1.0, atol=1e-9)
    # the persona stays certain and right
    persona = belief.sum(axis=2)
    np.testing.assert_allclose(persona[np.arange(n), truth.persona], 1.0, atol=1e-9)
    # reliability: P(stage = k) against how often stage = k, in probability bins
    predicted = belief.sum(axis=1)  # (n, K)
    happened = np.zeros_like(predicted)
    happened[np.arange(n), truth.stage] = 1.0
    p, y = predicted.ravel(), happened.ravel()
    bins = np.minimum((p * 10).astype(int), 9)
    checked = 0
    for b in range(10):
        inside = bins == b
        if inside.sum() < 200:
            continue
        se = np.sqrt((p[inside] * (1 - p[inside])).sum()) / inside.sum()
        gap = abs(y[inside].mean() - p[inside].mean())
        assert gap <= 4 * se + 1e-9, (b, int(inside.sum()), gap, se)
        checked += 1
    assert checked >= 5  # the beliefs spread over the bins: not a trivial check
    # and they learned: the true stage is more likely than under the starting prior
    start = twin.arrays.persona_initial_stage[truth.persona][np.arange(n), truth.stage]
    assert predicted[np.arange(n), truth.stage].mean() > start.mean() + 0.1


def test_reset_and_restart_give_the_new_customers_the_prior() -> None:
    twin = CustomerTwin("retail", seed=5)
    observer = BeliefObserver(twin.arrays)
    observer.reset(twin.reset(500))
    _random_contacts(twin, observer, 10, seed=6)
    before = observer.belief.copy()
    rows = np.arange(0, 500, 7)
    twin.restart(rows)
    observer.restart(rows, twin.state)
    fresh = twin.state.take(rows)
    expected = np.zeros((len(rows), 4, 7))
    expected[np.arange(len(rows)), fresh.persona] = twin.arrays.persona_initial_stage[fresh.persona]
    np.testing.assert_allclose(observer.belief[rows], expected, atol=1e-12)
    kept = np.setdiff1d(np.arange(500), rows)
    np.testing.assert_array_equal(observer.belief[kept], before[kept])
    assert not np.allclose(before[rows], expected)  # ten days had moved the old ones
    observer.restart(np.zeros(0, dtype=np.int64), twin.state)  # nobody: nothing moves
    # a reset with another population: everyone's prior, the old beliefs gone
    state = twin.reset(40)
    observer.reset(state)
    assert observer.belief.shape == (40, 4, 7)
    np.testing.assert_allclose(
        observer.belief.sum(axis=1), twin.arrays.persona_initial_stage[state.persona], atol=1e-12
    )


def test_same_seed_same_beliefs() -> None:
    def run(seed: int) -> np.ndarray:
        twin = CustomerTwin("retail_levels", seed=seed)
        observer = BeliefObserver(twin.arrays)
        observer.reset(twin.reset(300))
        _random_contacts(twin, observer, 15, seed=seed)
        return observer.belief.copy()

    first = run(3)
    np.testing.assert_array_equal(first, run(3))
    assert not np.array_equal(first, run(4))
    # levels are never revealed by consent or habit: their marginals stay uncertain
    rate = first.reshape(300, 4, 3, 2, 7).sum(axis=(1, 3, 4))
    assert (rate.max(axis=1) < 1.0 - 1e-6).all()


def test_observation_of_reads_the_policy_attribute() -> None:
    class Believer:
        observation = "belief"

    class Other:
        observation = "something else"

    assert observation_of(Believer()) == "belief"
    assert observation_of(Other()) == "state"
    assert observation_of(object()) == "state"
