"""BG/NBD's mixing distributions fitted to a log and cut into levels (mixing.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration import EventLog, EventLogError
from nba.calibration.bgnbd import BGNBD
from nba.calibration.mixing import (
    Mixing,
    PurchaseDays,
    choose_counts,
    dropout_levels,
    fit_mixing,
    levels_expected,
    rate_levels,
)
from nba.calibration.synthetic_bgnbd import BGNBDTruth, simulate_bgnbd

CUTOFF = pd.Timestamp("2024-03-01", tz="UTC")
SPREAD = Mixing(r=0.25, alpha=np.array([35.0]), a=0.7, b=2.2)


def _days(n: int, seed: int) -> PurchaseDays:
    synthetic = simulate_bgnbd(n, seed=seed)
    ids = synthetic.log.customer_ids
    return PurchaseDays.from_log(
        synthetic.log, synthetic.calibration_end, ids, np.zeros(len(ids), dtype=np.int64)
    )


def test_purchase_days_count_days_not_baskets_and_leave_out_who_never_bought() -> None:
    rows = [
        ("a", "2024-01-01T09:00"),
        ("a", "2024-01-01T18:00"),  # the same day: one purchase day
        ("a", "2024-01-11T10:00"),
        ("b", "2024-02-20T10:00"),
        ("c", "2024-03-05T10:00"),  # after the cutoff
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "timestamp"]).assign(event="purchased")
    log = EventLog.from_frames(frame)
    days = PurchaseDays.from_log(log, CUTOFF, pd.Index(["a", "b", "c"]), np.array([0, 1, 0]))
    assert list(days.customer_ids) == ["a", "b"]
    np.testing.assert_array_equal(days.repeats, [1.0, 0.0])
    np.testing.assert_array_equal(days.recency, [10.0, 0.0])
    np.testing.assert_array_equal(days.age, [60.0, 10.0])
    np.testing.assert_array_equal(days.persona, [0, 1])


@pytest.mark.parametrize("count", [1, 2, 3, 5, 10])
def test_levels_keep_the_mean_and_their_shares_sum_to_one(count: int) -> None:
    multipliers, shares = rate_levels(SPREAD, count)
    assert len(multipliers) == count and shares.sum() == pytest.approx(1.0)
    assert multipliers @ shares == pytest.approx(1.0)
    assert np.all(np.diff(multipliers) > 0)
    dropouts, weights = dropout_levels(SPREAD, count)
    assert dropouts @ weights == pytest.approx(SPREAD.mean_dropout)
    assert np.all((dropouts > 0) & (dropouts < 1))


def test_many_levels_forecast_as_the_continuous_mixture() -> None:
    """The levels' forecast is the same formula summed over levels: it converges to BG/NBD's
    closed form as the levels multiply, and is coarse with one level each."""
    days = _days(3_000, seed=4)
    exact = SPREAD.expected(days, 180.0)
    model = BGNBD.from_params(0.25, 35.0, 0.7, 2.2)
    direct = model.expected_purchases(180.0, days.repeats, days.recency, days.age)
    np.testing.assert_allclose(exact, direct, rtol=1e-12)
    fine = levels_expected(SPREAD, days, 180.0, 12, 6)
    coarse = levels_expected(SPREAD, days, 180.0, 1, 1)
    error_fine = np.abs(fine - exact).mean() / exact.mean()
    error_coarse = np.abs(coarse - exact).mean() / exact.mean()
    assert error_fine < 0.03 < error_coarse
    assert abs(fine.sum() / exact.sum() - 1.0) < 0.02


def test_the_fit_recovers_the_truth_and_a_persona_scale() -> None:
    """Two personas whose rates differ 3x under the same shapes: one fit recovers the shapes
    and the ratio of the scales."""
    light = simulate_bgnbd(6_000, truth=BGNBDTruth(alpha=15.0), seed=1)
    heavy = simulate_bgnbd(6_000, truth=BGNBDTruth(alpha=5.0), seed=2)
    frames = [light.log.events, heavy.log.events.assign(customer_id=lambda f: "h" + f.customer_id)]
    log = EventLog.from_frames(pd.concat(frames, ignore_index=True))
    ids = log.customer_ids
    persona = ids.str.startswith("h").astype(np.int64)
    days = PurchaseDays.from_log(log, light.calibration_end, ids, np.asarray(persona))
    fit = fit_mixing(days, 2, np.ones((1, len(days.repeats))))[0]
    assert fit.r == pytest.approx(0.25, rel=0.15)
    assert fit.a / (fit.a + fit.b) == pytest.approx(0.7 / 2.9, rel=0.25)
    assert fit.alpha[0] / fit.alpha[1] == pytest.approx(3.0, rel=0.2)


def test_counts_follow_the_spread_and_bootstrap_replicates_vary() -> None:
    days = _days(2_000, seed=6)
    alike = Mixing(r=400.0, alpha=np.array([40_000.0]), a=300.0, b=900.0)
    assert choose_counts(alike, days, 180.0) == (1, 1)
    k, d = choose_counts(SPREAD, days, 180.0)
    assert k >= 4 and d >= 2
    weights = np.vstack(
        [np.ones(len(days.repeats)), np.random.default_rng(0).poisson(1.0, (3, len(days.repeats)))]
    )
    fits = fit_mixing(days, 1, weights.astype(float))
    assert len(fits) == 4 and len({round(f.r, 6) for f in fits}) == 4


def test_a_log_without_repeat_purchases_is_refused_by_name() -> None:
    frame = pd.DataFrame(
        {"customer_id": ["a", "b"], "timestamp": ["2024-01-01", "2024-01-02"]}
    ).assign(event="purchased")
    log = EventLog.from_frames(frame)
    days = PurchaseDays.from_log(log, CUTOFF, pd.Index(["a", "b"]), np.zeros(2, dtype=np.int64))
    with pytest.raises(EventLogError, match=r"^events: no customer has a repeat"):
        fit_mixing(days, 1, np.ones((1, 2)))


@pytest.mark.parametrize("count", [0, -2, 2.5, True])
def test_a_level_count_that_is_not_a_whole_number_is_refused_by_name(count: object) -> None:
    for levels in (rate_levels, dropout_levels):
        with pytest.raises(EventLogError, match=r"^count: "):
            levels(SPREAD, count)  # type: ignore[arg-type]
