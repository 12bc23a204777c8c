from __future__ import annotations

import numpy as np

from nba.calibration.bootstrap import Bootstrap, interval, safe_ratio


def test_replicate_zero_is_the_plain_estimate_and_sums_follow_groups() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((50, 2))
    group = rng.integers(-1, 3, 50)  # -1: in no group
    boot = Bootstrap.draw(50, 10, rng)
    sums = boot.group_sums(values, group, 3)
    assert sums.shape == (11, 3, 2)
    for g in range(3):
        np.testing.assert_allclose(sums[0, g], values[group == g].sum(axis=0), rtol=1e-5)
    assert boot.replicates == 10


def test_interval_of_a_mean_covers_the_truth_at_about_95_percent() -> None:
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(200):
        x = rng.normal(1.0, 1.0, 200)
        boot = Bootstrap.draw(len(x), 300, rng)
        sums = boot.group_sums(np.stack([x, np.ones_like(x)], 1), np.zeros(200, int), 1)[:, 0]
        low, high = interval(safe_ratio(sums[:, 0], sums[:, 1])[:, None])
        covered += low[0] <= 1.0 <= high[0]
    assert 0.88 <= covered / 200 <= 0.99


def test_safe_ratio_is_nan_for_empty_denominators() -> None:
    out = safe_ratio(np.array([1.0, 2.0]), np.array([2.0, 0.0]))
    assert out[0] == 0.5 and np.isnan(out[1])
