from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration.bgnbd import BGNBD, rfm_summary
from nba.calibration.synthetic_bgnbd import (
    WEEK,
    BGNBDTruth,
    SyntheticBGNBD,
    SyntheticBGNBDError,
    simulate_bgnbd,
)
from nba.errors import NBAValidationError


@pytest.fixture(scope="module")
def panel() -> SyntheticBGNBD:
    return simulate_bgnbd(20_000, seed=3)


def _rfm(data: SyntheticBGNBD) -> pd.DataFrame:
    return rfm_summary(data.log.events, data.calibration_end, unit_days=7.0)


def test_log_is_purchase_only_in_the_calibration_schema(panel):
    events = panel.log.events
    assert set(events["event"].astype(str)) == {"purchased"}
    assert (events["value"] > 0).all()
    assert events["timestamp"].min() == panel.start
    assert events["timestamp"].max() < panel.forecast_end
    assert panel.forecast_end - panel.calibration_end == 39 * WEEK
    # a panel: every customer's trial purchase is at the start
    first = events.groupby("customer_id")["timestamp"].min()
    assert len(first) == 20_000 and (first == panel.start).all()


def test_bgnbd_fit_recovers_the_true_parameters(panel):
    rfm = _rfm(panel)
    assert (rfm["T"] == 39.0).all()
    fitted = BGNBD().fit(rfm["frequency"], rfm["recency"], rfm["T"])
    # tolerances: about 3 standard errors at n = 20,000 (a and b are the least precise)
    truth = panel.truth.params
    assert fitted.params_["r"] == pytest.approx(truth["r"], rel=0.10)
    assert fitted.params_["alpha"] == pytest.approx(truth["alpha"], rel=0.15)
    assert fitted.params_["a"] == pytest.approx(truth["a"], rel=0.25)
    assert fitted.params_["b"] == pytest.approx(truth["b"], rel=0.25)
    # and the true parameters are (nearly) as likely as the fitted ones
    data = rfm["frequency"], rfm["recency"], rfm["T"]
    true_ll = BGNBD.from_params(**truth).log_likelihood(*data)
    assert fitted.log_likelihood_ - true_ll < 10.0


def test_truth_matches_the_forecast_window(panel):
    rfm = _rfm(panel).reindex(panel.customer_ids)
    data = rfm["frequency"], rfm["recency"], rfm["T"]
    truth = BGNBD.from_params(**panel.truth.params)
    future = panel.purchases_between(panel.calibration_end, panel.forecast_end)
    assert truth.expected_purchases(39.0, *data).sum() == pytest.approx(future.sum(), rel=0.05)
    alive = panel.alive_at(panel.calibration_end)
    assert truth.p_alive(*data).mean() == pytest.approx(alive.mean(), abs=0.015)
    # nobody buys after dropping out, and those with no repeat purchase are alive
    dead = ~panel.alive_at(panel.calibration_end)
    assert future[dead].sum() == 0
    assert alive[rfm["frequency"].to_numpy() == 0].all()


def test_draws_follow_the_mixing_distributions(panel):
    truth = panel.truth
    assert panel.rate.mean() == pytest.approx(truth.r / truth.alpha, rel=0.05)
    assert panel.dropout.mean() == pytest.approx(truth.a / (truth.a + truth.b), rel=0.03)


def test_seeded_and_staggered_births():
    one = simulate_bgnbd(300, seed=5, birth_weeks=20.0)
    two = simulate_bgnbd(300, seed=np.random.default_rng(5), birth_weeks=20.0)
    pd.testing.assert_frame_equal(one.log.events, two.log.events)
    assert not one.log.events.equals(simulate_bgnbd(300, seed=6, birth_weeks=20.0).log.events)
    first = one.log.events.groupby("customer_id")["timestamp"].min().sort_index()
    weeks = (first - one.start) / WEEK
    assert weeks.between(0, 20).all() and weeks.std() > 3
    np.testing.assert_allclose(weeks.to_numpy(), one.birth, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"calibration_weeks": -1.0}, "calibration_weeks"),
        ({"forecast_weeks": float("nan")}, "forecast_weeks"),
        ({"birth_weeks": 39.0}, "birth_weeks"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(SyntheticBGNBDError, match=field):
        simulate_bgnbd(**kwargs)


def test_bad_truth_names_the_parameter():
    with pytest.raises(NBAValidationError, match="alpha"):
        BGNBDTruth(alpha=0.0)
