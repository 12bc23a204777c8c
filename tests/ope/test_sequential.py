from __future__ import annotations

import numpy as np
import pytest

from nba.ope import PDIS, WPDIS, FittedQEvaluation, LoggedTrajectories, SequentialDR
from nba.ope.reward_model import RidgeRewardModel
from nba.ope.sequential import cumulative_ratios, effective_sample_size

#: reward of (state, action) in a two-state chain where the action picks the next state
BASE = np.array([[0.0, 1.0], [2.0, -1.0]])
GAMMA = 0.9


def _policy(target_one: float) -> np.ndarray:
    """Per-state probabilities of actions (0, 1): action 1 with ``target_one`` in state 0."""
    return np.array([[1 - target_one, target_one], [0.7, 0.3]])


def _true_value(pi: np.ndarray, horizon: int) -> float:
    state = np.array([0.5, 0.5])
    value = 0.0
    for t in range(horizon):
        value += GAMMA**t * float(state @ (pi * BASE).sum(axis=1))
        state = state @ pi  # the action taken is the next state
    return value


def chain(n: int, horizon: int, seed: int, noise: float = 0.5) -> LoggedTrajectories:
    """Uniform logging in the chain; the target follows ``_policy(0.9)``."""
    rng = np.random.default_rng(seed)
    pi = _policy(0.9)
    state = rng.integers(0, 2, n)
    context = np.zeros((n, horizon, 2))
    actions = np.zeros((n, horizon), dtype=np.int64)
    rewards = np.zeros((n, horizon))
    target = np.zeros((n, horizon, 2))
    for t in range(horizon):
        context[np.arange(n), t, state] = 1.0
        actions[:, t] = rng.integers(0, 2, n)
        rewards[:, t] = BASE[state, actions[:, t]] + rng.normal(scale=noise, size=n)
        target[:, t] = pi[state]
        state = actions[:, t]
    return LoggedTrajectories(context, actions, rewards, np.full((n, horizon), 0.5), target, GAMMA)


def test_pdis_and_dr_are_within_sampling_error_of_the_truth() -> None:
    data = chain(8_000, 4, seed=0)
    truth = _true_value(_policy(0.9), 4)
    q = FittedQEvaluation(seed=0).predict(data)
    pdis = PDIS().interval(data, n_boot=300, seed=0)
    dr = SequentialDR().interval(data, q, n_boot=300, seed=0)
    wpdis = WPDIS().interval(data, n_boot=300, seed=0)
    assert abs(pdis.estimate - truth) < 4 * pdis.std_error
    assert abs(dr.estimate - truth) < 4 * dr.std_error
    assert abs(wpdis.estimate - truth) < 4 * wpdis.std_error
    assert dr.std_error < 0.5 * pdis.std_error  # the Q function removes most of the variance


def test_dr_is_exact_with_a_perfect_q_function() -> None:
    data = chain(500, 3, seed=1, noise=0.0)
    q = FittedQEvaluation(make_model=lambda a: RidgeRewardModel(a, alpha=1e-9), folds=1).predict(
        data
    )
    start = data.context[:, 0].argmax(axis=1)
    v0 = np.einsum("na,na->n", data.target[:, 0], q[:, 0])
    assert SequentialDR().estimate(data, q) == pytest.approx(v0.mean(), abs=1e-6)
    # V_0 of each start state is the true value from that state
    for s in (0, 1):
        only = np.zeros(2)
        only[s] = 1.0
        expected = _true_value_from(only, 3)
        assert v0[start == s] == pytest.approx(np.full((start == s).sum(), expected), abs=1e-6)


def _true_value_from(state: np.ndarray, horizon: int) -> float:
    pi, value = _policy(0.9), 0.0
    for t in range(horizon):
        value += GAMMA**t * float(state @ (pi * BASE).sum(axis=1))
        state = state @ pi
    return value


def test_on_policy_weighted_pdis_is_the_mean_return() -> None:
    data = chain(1_000, 3, seed=2)
    on_policy = LoggedTrajectories(
        data.context, data.action, data.reward, data.propensity,
        np.full(data.target.shape, 0.5), GAMMA,
    )  # fmt: skip
    mean_return = (data.reward * data.discounts).sum(axis=1).mean()
    assert WPDIS().estimate(on_policy) == pytest.approx(mean_return)
    assert PDIS().estimate(on_policy) == pytest.approx(mean_return)
    assert effective_sample_size(cumulative_ratios(on_policy)[:, -1]) == pytest.approx(1_000)
    assert effective_sample_size(cumulative_ratios(data)[:, -1]) < 1_000
