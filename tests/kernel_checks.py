"""The exact kernel against the vectorised twin: one check for kernel and conformance tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats

from nba import CustomerTwin
from nba.kernel import TransitionKernel


def simulated_day_fits(
    twin: CustomerTwin,
    kernel: TransitionKernel,
    *,
    pairs: int,
    draws: int,
    min_successors: int,
    rng: np.random.Generator,
) -> Iterator[tuple[int, int, float]]:
    """(state, action, chi-square p-value) of one simulated day against the kernel's row.

    Samples ``pairs`` state-action pairs allowed on day 0 with at least ``min_successors``
    successors, steps ``draws`` copies of each through the twin and fails at once when the
    twin reaches a successor the kernel gives probability 0. Rare successors (expected < 5)
    are pooled into one bin, as the chi-square test requires.
    """
    space, n_actions = twin.space, twin.n_actions
    successors = np.diff(kernel.transition.indptr).reshape(space.size, n_actions)
    candidates = np.argwhere(kernel.mask_at(0) & (successors >= min_successors))
    picked = candidates[rng.choice(len(candidates), size=pairs, replace=False)]
    for state_index, action in picked:
        twin.set_state(space.decode(np.full(draws, state_index)))
        twin.step(np.full(draws, action))
        observed = np.bincount(twin.state_index(), minlength=space.size)
        row = kernel.transition[state_index * n_actions + action]
        expected = np.zeros(space.size)
        expected[row.indices] = row.data * draws
        assert observed[expected == 0].sum() == 0, "simulated a successor the kernel forbids"
        big = expected >= 5
        obs = np.r_[observed[big], observed[~big].sum()]
        exp = np.r_[expected[big], expected[~big].sum()]
        obs, exp = obs[exp > 0], exp[exp > 0]
        if len(exp) < 2:
            continue
        result = stats.chisquare(obs, exp * obs.sum() / exp.sum())
        yield int(state_index), int(action), float(result.pvalue)
