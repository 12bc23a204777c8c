"""Belief baselines: QMDP and most-likely-state, against the full-information optimum."""

from __future__ import annotations

import numpy as np
import pytest

from nba import belief_values, evaluation, optimal
from nba.belief_policies import (
    BELIEF_BASELINES,
    MostLikelyStatePolicy,
    QMDPPolicy,
    make_belief_baseline,
)
from nba.belief_values import BeliefValues
from nba.errors import NBAValidationError, UnknownNameError
from nba.features import FeatureBuilder
from nba.observation import BeliefObserver, observation_of
from nba.policies import OptimalPolicy
from nba.twin import CustomerTwin


@pytest.fixture(scope="module")
def values(retail_belief_values: BeliefValues) -> BeliefValues:
    return retail_belief_values


@pytest.fixture(scope="module")
def twin(values: BeliefValues) -> CustomerTwin:
    return values.twin


@pytest.fixture(scope="module")
def qmdp(twin: CustomerTwin, values: BeliefValues) -> QMDPPolicy:
    return QMDPPolicy(twin, values=values)


@pytest.fixture(scope="module")
def most_likely(twin: CustomerTwin, values: BeliefValues) -> MostLikelyStatePolicy:
    return MostLikelyStatePolicy(twin, solution=values.solution)


@pytest.fixture(scope="module")
def population(twin: CustomerTwin) -> CustomerTwin:
    """400 customers after 9 days of occasional random contacts: the rules' masks bite for
    some, and the optimum asks for several different actions."""
    sim = twin.spawn(seed=3)
    sim.reset(400, seed=4)
    rng = np.random.default_rng(5)
    for _ in range(9):
        mask = sim.action_masks()
        contact = np.array([rng.choice(np.flatnonzero(row)) for row in mask])
        sim.step(np.where(rng.random(400) < 0.2, contact, 0))
    return sim


def test_on_a_certain_belief_both_act_as_the_optimum(
    twin: CustomerTwin,
    population: CustomerTwin,
    qmdp: QMDPPolicy,
    most_likely: MostLikelyStatePolicy,
    retail_optimum: optimal.PolicySolution,
) -> None:
    obs = FeatureBuilder(twin.arrays, observation="belief").build(population.state, population.day)
    full = FeatureBuilder(twin.arrays).build(population.state, population.day)
    mask = population.action_masks()
    expected, _ = OptimalPolicy(twin, solution=retail_optimum).act(full, mask)
    assert len(np.unique(expected)) > 5 and not mask.all()  # several actions, some blocked
    for policy in (qmdp, most_likely):
        actions, probabilities = policy.act(obs, mask)
        np.testing.assert_array_equal(actions, expected, err_msg=policy.name)
        np.testing.assert_array_equal(probabilities.argmax(axis=1), actions)


def test_most_likely_state_takes_the_optimal_action_of_the_heaviest_cell(
    twin: CustomerTwin, population: CustomerTwin, most_likely: MostLikelyStatePolicy
) -> None:
    n_types, n_stages = most_likely.features.latent_shape
    state = population.state
    rng = np.random.default_rng(8)
    belief = rng.dirichlet(np.full(n_types * n_stages, 0.3), size=len(state))
    heaviest = belief.argmax(axis=1)
    obs = FeatureBuilder(twin.arrays, observation="belief").build(
        state, population.day, belief=belief.reshape(len(state), n_types, n_stages)
    )
    a = twin.arrays
    cells = np.unravel_index(
        heaviest, (a.n_personas, a.n_rate_levels, a.n_dropout_levels, a.n_stages)
    )
    known = state.copy()
    known.persona, known.rate_level, known.dropout_level, known.stage = cells
    mask = np.ones((len(state), twin.n_actions), dtype=bool)
    actions, _ = most_likely.act(obs, mask)
    expected = most_likely.solution.act(population.day, twin.space.encode(known))
    np.testing.assert_array_equal(actions, expected)


def test_qmdp_takes_the_best_allowed_belief_averaged_value(
    twin: CustomerTwin, population: CustomerTwin, qmdp: QMDPPolicy, values: BeliefValues
) -> None:
    observer = BeliefObserver(twin.arrays)
    observer.reset(population.state)
    obs = observer.build(population.state, population.day)
    mask = population.action_masks()
    actions, _ = qmdp.act(obs, mask)
    q = values.q(observer.belief, population.state, population.day)
    rows = np.arange(len(actions))
    best = np.where(mask, q, -np.inf).max(axis=1)
    np.testing.assert_allclose(q[rows, actions], best, rtol=1e-6)  # float32 observations


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_never_choose_a_masked_action_and_are_deterministic(
    twin: CustomerTwin,
    population: CustomerTwin,
    qmdp: QMDPPolicy,
    most_likely: MostLikelyStatePolicy,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    n_types, n_stages = qmdp.features.latent_shape
    state = population.state
    belief = rng.dirichlet(np.ones(n_types * n_stages), size=len(state))
    obs = FeatureBuilder(twin.arrays, observation="belief").build(
        state, population.day, belief=belief.reshape(len(state), n_types, n_stages)
    )
    mask = rng.random((len(state), twin.n_actions)) < 0.3
    mask[:, 0] = rng.random(len(state)) < 0.8  # "no action" forbidden for some, too
    mask[np.flatnonzero(~mask.any(axis=1)), 0] = True
    for policy in (qmdp, most_likely):
        actions, probabilities = policy.act(obs, mask)
        assert mask[np.arange(len(state)), actions].all(), policy.name
        assert (probabilities[~mask] == 0).all() and (probabilities.sum(axis=1) == 1).all()
        again, _ = policy.act(obs.copy(), mask.copy())
        np.testing.assert_array_equal(again, actions)


def test_ties_go_to_no_action(twin: CustomerTwin, population: CustomerTwin) -> None:
    class Flat(BeliefValues):
        def __init__(self) -> None:  # every action worth the same: a tie everywhere
            pass

        def q(self, belief, state, day):  # type: ignore[no-untyped-def,override]
            return np.zeros((len(state), twin.n_actions))

    obs = FeatureBuilder(twin.arrays, observation="belief").build(population.state, population.day)
    mask = np.ones((len(population.state), twin.n_actions), dtype=bool)
    actions, _ = QMDPPolicy(twin, values=Flat()).act(obs, mask)
    assert (actions == 0).all()


def test_registry_builds_both_on_one_solution_and_refuses_unknown_names(
    twin: CustomerTwin, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(BELIEF_BASELINES) == {"qmdp", "most_likely_state"}
    with pytest.raises(UnknownNameError, match="'qmdp', 'most_likely_state'"):
        make_belief_baseline("pomcp", twin)
    solves, solve = [], optimal.solve
    monkeypatch.setattr(
        belief_values.optimal, "solve", lambda kernel: solves.append(1) or solve(kernel)
    )
    qmdp = make_belief_baseline("qmdp", twin, seed=1)
    most_likely = make_belief_baseline("most_likely_state", twin)
    assert isinstance(qmdp, QMDPPolicy) and isinstance(most_likely, MostLikelyStatePolicy)
    assert (qmdp.name, most_likely.name) == ("qmdp", "most_likely_state")
    assert qmdp.values.solution is most_likely.solution and len(solves) <= 1
    assert observation_of(qmdp) == observation_of(most_likely) == "belief"


def test_state_observations_are_refused_naming_the_field(
    twin: CustomerTwin,
    population: CustomerTwin,
    qmdp: QMDPPolicy,
    most_likely: MostLikelyStatePolicy,
) -> None:
    full = FeatureBuilder(twin.arrays).build(population.state, population.day)
    mask = population.action_masks()
    for policy in (qmdp, most_likely):
        with pytest.raises(NBAValidationError, match=r"^obs:"):
            policy.act(full, mask)


def test_on_the_twin_qmdp_sits_between_most_likely_state_and_the_optimum(
    twin: CustomerTwin, qmdp: QMDPPolicy, most_likely: MostLikelyStatePolicy, retail_optimum
) -> None:
    if not hasattr(evaluation, "observation_of"):
        pytest.skip("nba.evaluation.rollout does not feed belief observations yet")
    results = {}
    for policy in (qmdp, most_likely, OptimalPolicy(twin, solution=retail_optimum)):
        run = evaluation.rollout(twin.spawn(seed=21), policy, 2000, seed=22)
        returns = run.discounted_return
        results[policy.name] = (returns.mean(), returns.std(ddof=1) / np.sqrt(len(returns)))
    (q, q_se), (m, m_se), (o, o_se) = (
        results[name] for name in ("qmdp", "most_likely_state", "optimal")
    )
    assert q >= m - 2 * np.hypot(q_se, m_se), results
    assert q <= o + 2 * np.hypot(q_se, o_se), results
