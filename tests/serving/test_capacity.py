from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.errors import NBAValidationError
from nba.serving.capacity import allocate
from nba.serving.scorer import Exploration, PolicyScorer
from tests.serving.conftest import population


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


# ------------------------------------------------------------------ the scenario's daily capacity
AS_OF = pd.Timestamp("2026-11-25T10:00:00Z")


def scorer_with_capacity(
    export_dir: Path, limit: int | None, exploration: Exploration | None = None
) -> tuple[PolicyScorer, str]:
    """The export's scorer, with ``limit`` as the daily capacity of the channel it likes most."""
    plain = PolicyScorer.load(export_dir)
    favourite = str(plain.score_batch(population(2_000, seed=3), as_of=AS_OF)["channel"].mode()[0])
    scenario = plain.policy.scenario
    channels = [
        c.model_copy(update={"daily_capacity": limit}) if c.name == favourite else c
        for c in scenario.channels
    ]
    policy = replace(plain.policy, scenario=scenario.model_copy(update={"channels": channels}))
    return PolicyScorer(policy, exploration=exploration or Exploration()), favourite


def test_a_channels_daily_capacity_applies_by_default(export_dir: Path) -> None:
    scorer, channel = scorer_with_capacity(export_dir, 40)
    assert scorer.default_capacity == {channel: 40, "call_centre": 500}
    customers = population(2_000, seed=3)
    free = scorer.score_batch(customers, as_of=AS_OF, capacity={channel: None})
    wanted = int((free["channel"] == channel).sum())
    assert wanted > 40  # the limit binds
    limited = scorer.score_batch(customers, as_of=AS_OF)
    assert (limited["channel"] == channel).sum() == 40
    displaced = limited["suppressed_reason"].astype(str).str.startswith("capacity")
    assert displaced.sum() == wanted - 40
    assert (
        scorer.score_batch(customers, as_of=AS_OF, capacity={channel: 7})["channel"] == channel
    ).sum() == 7
    assert free.equals(scorer.score_batch(customers, as_of=AS_OF, capacity={channel: None}))
    # one customer has no batch to share with: the single path decides as without a limit
    rows = customers.head(200)
    singles = [scorer.score(row, as_of=AS_OF).action for row in rows.to_dict(orient="records")]
    assert singles == free["action"].head(200).tolist()


def test_retail_call_centre_has_its_500_by_default(export_dir: Path) -> None:
    assert PolicyScorer.load(export_dir).default_capacity == {"call_centre": 500}


def test_exploring_scorers_explore_within_the_capacity(export_dir: Path) -> None:
    """A limit holds while exploring: the scarce channel is open to at most its capacity of
    customers, fixed before drawing, and each propensity is the probability under that mask."""
    exploring = Exploration(kind="epsilon", epsilon=0.3, seed=5)
    scorer, channel = scorer_with_capacity(export_dir, 40, exploring)
    customers = population(2_000, seed=3)
    decisions = scorer.score_batch(customers, as_of=AS_OF)
    assert decisions["explored"].any()
    assert 0 < (decisions["channel"] == channel).sum() <= 40
    explicit = scorer.score_batch(customers, as_of=AS_OF, capacity={channel: 7})
    assert 0 < (explicit["channel"] == channel).sum() <= 7
    displaced = decisions["suppressed_reason"].astype(str).str.startswith("capacity")
    assert displaced.sum() > 0
    # exact propensities: epsilon spread over the actions left open, the rest to the favourite
    kept = ~decisions["explored"]
    assert (decisions.loc[kept, "propensity"] > 1 - 0.3).all()
    assert (decisions.loc[~kept, "propensity"] < 0.3).all()
    # room for everyone: nothing is closed, exactly as without a limit
    roomy = scorer.score_batch(customers, as_of=AS_OF, capacity={channel: 2_000})
    plain, _ = scorer_with_capacity(export_dir, None, exploring)
    pd.testing.assert_frame_equal(roomy, plain.score_batch(customers, as_of=AS_OF))


def test_exploring_under_capacity_draws_with_the_stated_propensities(export_dir: Path) -> None:
    """Over many seeds, each customer's action frequencies match the logged propensities."""
    scorer, channel = scorer_with_capacity(export_dir, 40)
    customers = population(300, seed=8)
    counts = np.zeros((300, len(scorer.action_names)))
    stated = np.zeros_like(counts)
    for seed in range(300):
        explorer = PolicyScorer(
            scorer.policy, exploration=Exploration(kind="epsilon", epsilon=0.5, seed=seed)
        )
        decisions = explorer.score_batch(customers, as_of=AS_OF, capacity={channel: 20})
        rows = np.arange(300)
        counts[rows, decisions["action"]] += 1
        stated[rows, decisions["action"]] = decisions["propensity"]
        assert (decisions["channel"] == channel).sum() <= 20
    seen = counts > 0
    frequency = counts[seen] / 300
    # binomial standard error at n=300 is at most 0.029: allow 5 of them
    assert np.abs(frequency - stated[seen]).max() < 0.15


@pytest.mark.parametrize("limit", [-1, 2.5, True, "40"])
def test_capacity_values_are_checked(export_dir: Path, limit: object) -> None:
    with pytest.raises(NBAValidationError, match=r"capacity\.call_centre: expected a non-negative"):
        PolicyScorer.load(export_dir).score_batch(
            population(5), as_of=AS_OF, capacity={"call_centre": limit}
        )


def test_exploration_opens_a_scarce_channel_to_at_most_its_capacity() -> None:
    from nba.serving.capacity import open_to

    gains = np.array([[3.0, -np.inf], [-1.0, 2.0], [5.0, 1.0], [-np.inf, -np.inf], [0.5, 4.0]])
    everyone = open_to(gains, [10, 10])  # room for all: open wherever the rules allow
    np.testing.assert_array_equal(everyone, np.isfinite(gains))
    tight = open_to(gains, [2, 1])
    assert tight[:, 0].tolist() == [True, False, True, False, False]  # the two largest gains
    assert tight[:, 1].tolist() == [False, False, False, False, True]
    assert not open_to(gains, [0, 0]).any()
