from __future__ import annotations

import numpy as np
import pytest

from nba import CustomerTwin, optimal
from nba.errors import NBAValidationError
from nba.kernel import TransitionKernel
from nba.scenario import Scenario


def _monte_carlo(retail: Scenario, act, n: int, seed: int) -> tuple[float, float]:
    """Mean and standard error of the discounted return of ``act`` in the twin."""
    twin = CustomerTwin(retail, seed=seed)
    twin.reset(n)
    returns, weight = np.zeros(n), 1.0
    for _ in range(retail.horizon_days):
        returns += weight * twin.step(act(twin)).reward
        weight *= retail.discount_factor
    assert twin.kpis.blocked.sum() == 0
    return float(returns.mean()), float(returns.std(ddof=1) / np.sqrt(n))


def test_dp_value_matches_monte_carlo(
    retail: Scenario, retail_optimum: optimal.PolicySolution
) -> None:
    mean, se = _monte_carlo(
        retail, lambda twin: retail_optimum.act(twin.day, twin.state_index()), 40_000, seed=1
    )
    assert abs(mean - retail_optimum.value) < 1.96 * se, (mean, se, retail_optimum.value)


def test_policy_evaluation_matches_monte_carlo(
    retail: Scenario, retail_kernel: TransitionKernel
) -> None:
    idle = optimal.evaluate(retail_kernel, optimal.no_action_policy(retail_kernel))
    mean, se = _monte_carlo(retail, lambda twin: np.zeros(twin.n, dtype=np.int64), 40_000, 2)
    assert abs(mean - idle.value) < 1.96 * se


def test_optimum_beats_other_policies(
    retail_kernel: TransitionKernel, retail_optimum: optimal.PolicySolution
) -> None:
    k = retail_kernel
    again = optimal.evaluate(k, retail_optimum.policy)
    np.testing.assert_allclose(again.value, retail_optimum.value, rtol=1e-12)
    idle = optimal.evaluate(k, optimal.no_action_policy(k))
    myopic = np.stack(
        [np.argmax(np.where(k.mask_at(t), k.reward, -np.inf), axis=1) for t in range(k.horizon)]
    )
    rng = np.random.default_rng(0)
    random_allowed = np.stack(
        [np.argmax(k.mask_at(t) * rng.random(k.reward.shape), axis=1) for t in range(k.horizon)]
    )
    for policy in (myopic, random_allowed):
        value = optimal.evaluate(k, policy)
        assert (value.values <= retail_optimum.values + 1e-9).all()
    assert retail_optimum.value > idle.value + 1.0


def test_evaluate_rejects_bad_policies(retail_kernel: TransitionKernel) -> None:
    with pytest.raises(NBAValidationError, match="expected shape"):
        optimal.evaluate(retail_kernel, np.zeros((3, 3), dtype=np.int64))
    sunday = next(t for t in range(7) if (retail_kernel.start_weekday + t) % 7 == 6)
    mask = retail_kernel.mask_at(sunday)
    bad_action = int(np.flatnonzero(~mask.all(axis=0))[0])
    policy = optimal.no_action_policy(retail_kernel).copy()
    policy[sunday] = bad_action
    with pytest.raises(NBAValidationError, match=rf"policy\[{sunday}, "):
        optimal.evaluate(retail_kernel, policy)
