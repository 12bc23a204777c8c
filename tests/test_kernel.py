from __future__ import annotations

import numpy as np

from nba import CustomerTwin
from nba.kernel import TransitionKernel
from nba.scenario import Scenario
from tests.kernel_checks import simulated_day_fits


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
    # pairs with several successors, allowed on day 0, across stages and actions
    fits = simulated_day_fits(
        twin, retail_kernel, pairs=12, draws=40_000, min_successors=4, rng=np.random.default_rng(0)
    )
    for state_index, action, pvalue in fits:
        assert pvalue > 1e-3, (state_index, action, pvalue)


def test_initial_distribution_matches_reset(
    retail: Scenario, retail_kernel: TransitionKernel
) -> None:
    twin = CustomerTwin(retail, seed=8)
    twin.reset(300_000)
    observed = np.bincount(twin.state_index(), minlength=twin.space.size) / 300_000
    support = retail_kernel.initial > 0
    assert observed[~support].sum() == 0
    np.testing.assert_allclose(observed[support], retail_kernel.initial[support], atol=0.003)
