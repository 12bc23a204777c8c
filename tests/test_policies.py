from __future__ import annotations

import numpy as np
import pytest

from nba import CustomerTwin, optimal
from nba.errors import UnknownNameError
from nba.evaluation import tabulate_policy
from nba.features import FeatureBuilder
from nba.kernel import TransitionKernel
from nba.policies import (
    JourneyMapPolicy,
    MyopicPolicy,
    OptimalPolicy,
    Policy,
    RandomPolicy,
    make_baseline,
)
from nba.scenario import Scenario


def test_planning_matters_on_the_reference_scenario(
    retail: Scenario, retail_kernel: TransitionKernel, retail_optimum: optimal.PolicySolution
) -> None:
    """Exact values: greedy and journey-map rules leave most of the gap to the optimum open."""
    twin = CustomerTwin(retail)
    idle = optimal.evaluate(retail_kernel, optimal.no_action_policy(retail_kernel)).value
    gap = retail_optimum.value - idle

    def share(policy: Policy) -> float:
        table = tabulate_policy(policy, twin, retail_kernel)
        return (optimal.evaluate(retail_kernel, table).value - idle) / gap

    myopic, journey = share(MyopicPolicy(twin)), share(JourneyMapPolicy(twin))
    assert 0.0 < myopic <= 0.85
    assert 0.0 < journey <= 0.75
    assert share(OptimalPolicy(twin, retail_optimum)) == pytest.approx(1.0)


def test_policies_respect_masks_and_report_probabilities(retail: Scenario) -> None:
    twin = CustomerTwin(retail, seed=0)
    features = FeatureBuilder(twin.arrays)
    state = twin.reset(2_000)
    for _ in range(9):  # build up some contact history so masks bite
        twin.step(np.random.default_rng(1).integers(0, twin.n_actions, 2_000))
    obs, mask = features.build(twin.state, twin.day), twin.action_masks()
    assert not mask.all()
    for name in ("no_action", "random", "journey_map", "myopic", "optimal"):
        actions, probabilities = make_baseline(name, twin, seed=3).act(obs, mask)
        assert mask[np.arange(len(state)), actions].all(), name
        assert probabilities.shape == mask.shape
        assert (probabilities[~mask] == 0).all(), name
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_random_policy_is_uniform_over_allowed_and_seeded() -> None:
    mask = np.array([[True, False, True, True]] * 30_000)
    actions, probabilities = RandomPolicy(seed=1).act(np.zeros((30_000, 1)), mask)
    np.testing.assert_allclose(probabilities[0], [1 / 3, 0, 1 / 3, 1 / 3])
    frequencies = np.bincount(actions, minlength=4) / 30_000
    np.testing.assert_allclose(frequencies, probabilities[0], atol=0.01)
    again, _ = RandomPolicy(seed=1).act(np.zeros((30_000, 1)), mask)
    np.testing.assert_array_equal(actions, again)


def test_unknown_baseline_lists_the_choices(retail: Scenario) -> None:
    with pytest.raises(UnknownNameError, match="journey_map"):
        make_baseline("clairvoyant", CustomerTwin(retail))
