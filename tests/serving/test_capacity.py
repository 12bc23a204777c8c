from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.serving.capacity import allocate


def _brute_force(gains: np.ndarray, limits: list[int]) -> float:
    n, k = gains.shape
    best = 0.0
    for plan in itertools.product(range(-1, k), repeat=n):
        counts = np.bincount([c for c in plan if c >= 0], minlength=k)
        if (counts <= limits).all():
            best = max(best, sum(gains[i, c] for i, c in enumerate(plan) if c >= 0))
    return best


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 6),
    k=st.integers(1, 2),
    seed=st.integers(0, 10_000),
    limits=st.lists(st.integers(0, 3), min_size=2, max_size=2),
)
def test_allocation_is_optimal_against_brute_force(
    n: int, k: int, seed: int, limits: list[int]
) -> None:
    gains = np.random.default_rng(seed).normal(size=(n, k))
    limits = limits[:k]
    plan = allocate(gains, limits)
    counts = np.bincount(plan[plan >= 0], minlength=k)
    assert (counts <= limits).all()
    achieved = sum(gains[i, c] for i, c in enumerate(plan) if c >= 0)
    assert np.isclose(achieved, _brute_force(gains, limits))


def test_large_batches_keep_the_lp_small() -> None:
    gains = np.random.default_rng(0).normal(size=(200_000, 3))
    plan = allocate(gains, [100, 50, 0])
    counts = np.bincount(plan[plan >= 0], minlength=3)
    assert counts.tolist() == [100, 50, 0]
