from __future__ import annotations

import numpy as np
import pytest

from nba.calibration.comparison import ComparisonError, compare_forecasts


def test_buckets_totals_and_mae_by_hand():
    frequency = np.array([0, 0, 1, 3, 9, 12])
    actual = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 6.0])
    good = actual + np.array([0.5, -0.5, 0.0, 0.0, -1.0, 1.0])
    flat = np.full(6, actual.mean())
    c = compare_forecasts(frequency, actual, {"twin": good, "bgnbd": flat}, top=7)
    assert list(c.buckets["bucket"]) == ["0", "1", "3", "7+"]  # empty buckets left out
    assert list(c.buckets["customers"]) == [2, 1, 1, 2]
    top = c.buckets.iloc[-1]
    assert top["actual"] == 8.0 and top["twin"] == 8.0 and top["bgnbd"] == pytest.approx(11 / 3)
    assert top["twin_ok"]
    assert c.total_error("twin") == 0.0
    assert c.total_error("bgnbd") == pytest.approx(0.0)
    assert c.mae("twin") == pytest.approx(3.0 / 6)
    assert c.mae("bgnbd") == pytest.approx(np.abs(flat - actual).mean())
    assert c.mae_ratio("twin") == pytest.approx(c.mae("twin") / c.mae("bgnbd"))


def test_paired_interval_excludes_zero_only_for_a_real_difference():
    rng = np.random.default_rng(0)
    actual = rng.poisson(2.0, 4000).astype(float)
    frequency = rng.integers(0, 10, 4000)
    truth = np.full(4000, 2.0)
    worse = truth + rng.normal(0.0, 1.0, 4000)
    c = compare_forecasts(frequency, actual, {"twin": worse, "bgnbd": truth}, n_bootstrap=300)
    row = c.accuracy.set_index(["model", "metric"]).loc[("twin", "mae_difference")]
    assert row["lower"] > 0.0  # clearly worse: the interval excludes zero
    # equally good, each with its own noise: a tie, the interval covers zero
    one, two = (truth + rng.normal(0.0, 0.5, 4000) for _ in range(2))
    same = compare_forecasts(frequency, actual, {"twin": one, "bgnbd": two}, n_bootstrap=300)
    tie = same.accuracy.set_index(["model", "metric"]).loc[("twin", "mae_difference")]
    assert tie["lower"] < 0.0 < tie["upper"]
    assert abs(tie["value"]) < 0.02


def test_a_bucket_far_off_fails_its_check():
    frequency = np.array([0, 0, 5, 5])
    actual = np.array([1.0, 1.0, 4.0, 4.0])
    c = compare_forecasts(
        frequency, actual, {"twin": np.array([1.5, 1.5, 4.0, 4.0]), "bgnbd": actual + 0.05}
    )
    assert list(c.buckets["twin_ok"]) == [False, True]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"actual": [1.0, 2.0]}, "actual"),
        ({"forecasts": {"twin": [1.0, 2.0, 3.0]}}, "baseline"),
        ({"forecasts": {"bgnbd": [1.0, np.nan, 3.0]}}, "bgnbd"),
        ({"top": 0}, "top"),
    ],
)
def test_bad_input_names_the_field(kwargs, field):
    args = {"frequency": [0, 1, 2], "actual": [0.0, 1.0, 2.0], "forecasts": {"bgnbd": [0, 1, 2]}}
    with pytest.raises(ComparisonError, match=field):
        compare_forecasts(**(args | kwargs))
