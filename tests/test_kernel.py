from __future__ import annotations

import numpy as np
from scipy import stats

from nba import CustomerTwin
from nba.kernel import TransitionKernel
from nba.scenario import Scenario


def test_rows_are_distributions(retail_kernel: TransitionKernel) -> None:
    sums = np.asarray(retail_kernel.transition.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums, 1.0, atol=1e-12)
    assert retail_kernel.transition.min() >= 0.0
    np.testing.assert_allclose(retail_kernel.initial.sum(), 1.0)
    assert retail_kernel.masks[:, :, 0].all()


def test_simulated_transitions_agree_with_kernel(
    retail: Scenario, retail_kernel: TransitionKernel
) -> None:
    """Chi-square goodness of fit of one simulated day against kernel rows, at a fixed seed."""
    twin = CustomerTwin(retail, seed=20261123)
    space, n_actions = twin.space, twin.n_actions
    rng = np.random.default_rng(0)
    day0 = retail_kernel.mask_at(0)
    # pairs with several successors, allowed on day 0, across stages and actions
    successors = np.diff(retail_kernel.transition.indptr).reshape(space.size, n_actions)
    candidates = np.argwhere(day0 & (successors >= 4))
    picked = candidates[rng.choice(candidates.shape[0], size=12, replace=False)]
    n = 40_000
    for state_index, action in picked:
        twin.set_state(space.decode(np.full(n, state_index)))
        twin.step(np.full(n, action))
        observed = np.bincount(twin.state_index(), minlength=space.size)
        row = retail_kernel.transition[state_index * n_actions + action]
        expected = np.zeros(space.size)
        expected[row.indices] = row.data * n
        assert observed[expected == 0].sum() == 0, "simulated a successor the kernel forbids"
        big = expected >= 5  # pool rare successors into one bin, as chi-square requires
        obs = np.r_[observed[big], observed[~big].sum()]
        exp = np.r_[expected[big], expected[~big].sum()]
        obs, exp = obs[exp > 0], exp[exp > 0]
        result = stats.chisquare(obs, exp)
        assert result.pvalue > 1e-3, (state_index, action, result)


def test_initial_distribution_matches_reset(
    retail: Scenario, retail_kernel: TransitionKernel
) -> None:
    twin = CustomerTwin(retail, seed=8)
    twin.reset(300_000)
    observed = np.bincount(twin.state_index(), minlength=twin.space.size) / 300_000
    support = retail_kernel.initial > 0
    assert observed[~support].sum() == 0
    np.testing.assert_allclose(observed[support], retail_kernel.initial[support], atol=0.003)
