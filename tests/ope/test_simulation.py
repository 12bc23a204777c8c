from __future__ import annotations

import numpy as np
import pytest

from nba.ope import evaluate_bandit
from nba.ope.simulation import EpsilonPolicy, simulate_logs, trajectory_value
from nba.policies import make_baseline
from nba.twin import CustomerTwin


@pytest.fixture(scope="module")
def twin() -> CustomerTwin:
    return CustomerTwin("retail", seed=0)


def test_epsilon_policy_probabilities_are_exact_and_respect_the_rules(twin: CustomerTwin) -> None:
    base = make_baseline("journey_map", twin)
    logs = simulate_logs(twin, EpsilonPolicy(base, 0.3, seed=1), base, 500, 4, seed=2)
    data = logs.bandit
    mask_rows = data.target > 0
    assert data.n == 2_000 and (data.propensity > 0).all()
    np.testing.assert_allclose(data.target.sum(axis=1), 1.0)
    # deterministic target: weight is 1 / propensity where the logged action matches, else 0
    assert ((data.weights == 0) | np.isclose(data.weights * data.propensity, 1.0)).all()
    assert mask_rows.sum(axis=1).max() == 1
    assert logs.trajectories.context.shape[:2] == (500, 4)


def test_importance_weights_average_one_when_streams_are_independent(twin: CustomerTwin) -> None:
    logging = EpsilonPolicy(make_baseline("journey_map", twin), 0.3, seed=11)
    logs = simulate_logs(twin, logging, make_baseline("myopic", twin), 4_000, 3, seed=12)
    weights = logs.bandit.weights
    assert abs(weights.mean() - 1.0) < 4 * weights.std() / np.sqrt(weights.size)


def test_one_step_estimates_track_the_twin_truth(twin: CustomerTwin) -> None:
    logging = EpsilonPolicy(make_baseline("journey_map", twin), 0.3, seed=3)
    target = make_baseline("myopic", twin)
    logs = simulate_logs(twin, logging, target, 3_000, 7, seed=4)
    for interval in evaluate_bandit(logs.bandit, ("snips", "dr"), n_boot=200, seed=0):
        assert abs(interval.estimate - logs.one_step_value) < 4 * interval.std_error


def test_trajectory_value_matches_the_on_policy_log(twin: CustomerTwin) -> None:
    policy = make_baseline("journey_map", twin)
    value, se = trajectory_value(twin, policy, 4_000, 5, seed=5)
    logs = simulate_logs(twin, policy, policy, 4_000, 5, seed=6)
    returns = (logs.trajectories.reward * logs.trajectories.discounts).sum(axis=1)
    assert abs(value - returns.mean()) < 4 * np.hypot(se, returns.std() / np.sqrt(4_000))
