"""The policy head's sampling and serving's counter-based exploration draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from nba import policy_head
from nba.errors import NBAValidationError

NOON = 1_795_600_800_000_000_000  # 2026-11-25T10:00Z in nanoseconds


def test_draws_are_a_function_of_seed_customer_and_time_only() -> None:
    ids = np.array([f"c{i}" for i in range(50_000)], dtype=object)
    times = np.full(50_000, NOON)
    draws = policy_head.exploration_uniforms(7, ids, times)
    # any subset, in any order, draws the same per customer
    order = np.random.default_rng(0).permutation(50_000)[:20_000]
    np.testing.assert_array_equal(
        policy_head.exploration_uniforms(7, ids[order], times[order]), draws[order]
    )
    # one customer in plain Python draws the same bits
    for i in range(0, 50_000, 997):
        assert policy_head.exploration_uniform(7, ids[i], NOON) == draws[i]
    # another seed or another nanosecond: another, independent draw
    for other in (
        policy_head.exploration_uniforms(8, ids, times),
        policy_head.exploration_uniforms(7, ids, times + 1),
    ):
        assert abs(np.corrcoef(draws, other)[0, 1]) < 0.02
        assert (other != draws).all()


def test_draws_are_uniform_and_in_range() -> None:
    ids = np.arange(200_000)
    draws = policy_head.exploration_uniforms(1, ids, np.full(200_000, NOON))
    assert draws.min() >= 0.0 and draws.max() < 1.0
    assert stats.kstest(draws, "uniform").pvalue > 1e-3
    # consecutive customers are not correlated
    assert abs(np.corrcoef(draws[:-1], draws[1:])[0, 1]) < 0.01
    # per-customer times spread too: one customer over consecutive seconds
    times = NOON + np.arange(100_000) * 10**9
    over_time = policy_head.exploration_uniforms(1, np.full(100_000, "c-1", dtype=object), times)
    assert stats.kstest(over_time, "uniform").pvalue > 1e-3


def test_integer_and_text_ids_draw_alike_in_every_container() -> None:
    as_int = policy_head.exploration_uniforms(3, np.array([42, 7]), np.array([NOON, NOON]))
    as_text = policy_head.exploration_uniforms(
        3, np.array(["42", "7"], dtype=object), np.array([NOON, NOON])
    )
    mixed = policy_head.exploration_uniforms(
        3, np.array([42, "7"], dtype=object), np.array([NOON, NOON])
    )
    unicode_array = policy_head.exploration_uniforms(3, np.array(["42", "7"]), np.array([NOON] * 2))
    for other in (as_text, mixed, unicode_array):
        np.testing.assert_array_equal(as_int, other)
    assert policy_head.exploration_uniform(3, 42, NOON) == as_int[0]
    assert policy_head.exploration_uniform(3, np.int64(42), NOON) == as_int[0]


def test_ids_utf8_cannot_encode_still_draw_consistently() -> None:
    ids = np.array(["\ud800lone", "Zoë", "plain"], dtype=object)  # a lone surrogate from JSON
    draws = policy_head.exploration_uniforms(5, ids, np.full(3, NOON))
    for i, customer_id in enumerate(ids):
        assert policy_head.exploration_uniform(5, customer_id, NOON) == draws[i]
    alone = policy_head.exploration_uniforms(5, ids[1:], np.full(2, NOON))
    np.testing.assert_array_equal(alone, draws[1:])


def test_the_fast_single_hash_agrees_with_pandas() -> None:
    for text in ["", "c-1", "x" * 10_000, "客户", "=HYPERLINK()"]:
        assert policy_head._hash_one(text) == policy_head._hash_one_public(text)


def test_times_must_match_the_customers() -> None:
    with pytest.raises(NBAValidationError, match="decision times"):
        policy_head.exploration_uniforms(1, np.array(["a", "b"], dtype=object), np.array([NOON]))


def test_sampling_at_uniforms_follows_the_probabilities_and_skips_zeros() -> None:
    rng = np.random.default_rng(4)
    probabilities = np.array([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0]] * 100_000)
    chosen = policy_head.sample_with(probabilities, rng.random(100_000))
    frequency = np.bincount(chosen, minlength=6) / 100_000
    np.testing.assert_allclose(frequency, probabilities[0], atol=0.006)
    assert not np.isin(chosen, [0, 2, 5]).any()
    # the edges: 0 takes the first positive action, just under 1 the last
    edges = policy_head.sample_with(probabilities[:2], np.array([0.0, np.nextafter(1.0, 0.0)]))
    assert edges.tolist() == [1, 4]
    for u, expected in ((0.0, 1), (np.nextafter(1.0, 0.0), 4), (0.25, 3)):
        assert policy_head.sample_row_with(probabilities[0].tolist(), float(u)) == expected
    with pytest.raises(NBAValidationError, match="uniforms"):
        policy_head.sample_with(probabilities[:3], np.zeros(2))


def test_generator_sampling_is_sampling_at_its_uniforms() -> None:
    probabilities = np.random.default_rng(5).dirichlet(np.ones(7), size=1_000)
    drawn = policy_head.sample(probabilities, np.random.default_rng(9))
    at = policy_head.sample_with(probabilities, np.random.default_rng(9).random(1_000))
    np.testing.assert_array_equal(drawn, at)
