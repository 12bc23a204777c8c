from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration.bgnbd import BGNBD, BGNBDError, rfm_summary
from nba.errors import NBAValidationError

TRUE = {"r": 0.6, "alpha": 3.0, "a": 0.7, "b": 3.0}
HORIZON = 26.0


def simulate(rng: np.random.Generator, n: int, horizon: float) -> dict[str, np.ndarray]:
    """BG/NBD histories: Poisson purchases at rate lambda ~ Gamma(r, alpha) until dropout,
    which follows each repeat purchase with probability p ~ Beta(a, b); plus the purchases
    of the next ``horizon`` units and who is still alive at T."""
    rate = rng.gamma(TRUE["r"], 1.0 / TRUE["alpha"], n)
    p = rng.beta(TRUE["a"], TRUE["b"], n)
    big_t = rng.uniform(39.0, 78.0, n)
    lifetime = rng.geometric(p)  # repeat purchases made before dropping out
    happened = rng.poisson(rate * big_t)  # purchases the Poisson clock rang for by T
    x = np.minimum(lifetime, happened)
    recency = np.zeros(n)
    rep = x > 0
    # the x-th of `happened` uniform arrival times on (0, T] is T * Beta(x, happened - x + 1)
    recency[rep] = big_t[rep] * rng.beta(x[rep], happened[rep] - x[rep] + 1)
    alive = lifetime > happened
    future = np.where(alive, np.minimum(rng.poisson(rate * horizon), lifetime - happened), 0)
    return {"x": x, "recency": recency, "T": big_t, "alive": alive, "future": future}


@pytest.fixture(scope="module")
def simulated() -> dict[str, np.ndarray]:
    return simulate(np.random.default_rng(20240506), 5000, HORIZON)


@pytest.fixture(scope="module")
def fitted(simulated) -> BGNBD:
    return BGNBD().fit(simulated["x"], simulated["recency"], simulated["T"])


def test_fit_recovers_the_generating_parameters(fitted):
    # tolerances from the spread of estimates over seeds at n = 5,000 (a, b are less precise)
    assert fitted.converged_
    assert fitted.params_["r"] == pytest.approx(TRUE["r"], rel=0.15)
    assert fitted.params_["alpha"] == pytest.approx(TRUE["alpha"], rel=0.15)
    assert fitted.params_["a"] == pytest.approx(TRUE["a"], rel=0.3)
    assert fitted.params_["b"] == pytest.approx(TRUE["b"], rel=0.3)
    assert fitted.n_customers_ == 5000


def test_fit_is_the_maximum_of_the_likelihood(simulated, fitted):
    data = simulated["x"], simulated["recency"], simulated["T"]
    for name in ("r", "alpha", "a", "b"):
        for factor in (0.9, 1.1):
            other = BGNBD.from_params(**{**fitted.params_, name: fitted.params_[name] * factor})
            assert other.log_likelihood(*data) < fitted.log_likelihood_


def test_forecasts_match_the_simulated_future(simulated, fitted):
    data = simulated["x"], simulated["recency"], simulated["T"]
    expected = fitted.expected_purchases(HORIZON, *data)
    future = simulated["future"]
    assert expected.sum() == pytest.approx(future.sum(), rel=0.06)
    for low, high in ((0, 1), (1, 4), (4, 10_000)):  # conditional on history, not just overall
        group = (simulated["x"] >= low) & (simulated["x"] < high)
        standard_error = future[group].std() / np.sqrt(group.sum())
        assert abs(expected[group].mean() - future[group].mean()) < 3.5 * standard_error
    alive = fitted.p_alive(*data)
    assert alive.mean() == pytest.approx(simulated["alive"].mean(), abs=0.02)
    assert np.all(alive[simulated["x"] == 0] == 1.0)
    assert np.all(fitted.expected_purchases(0.0, *data) == 0.0)
    # the true parameters forecast as well as the fitted ones
    truth = BGNBD.from_params(**TRUE).expected_purchases(HORIZON, *data)
    assert truth.sum() == pytest.approx(future.sum(), rel=0.06)


def test_known_values_of_the_closed_forms():
    # x = 0: P(alive) = 1; E = (a+b-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^r 2F1(r,b;a+b-1;z)]
    model = BGNBD.from_params(r=1.0, alpha=1.0, a=2.0, b=2.0)
    # with r = 1, b = 2, a+b-1 = 3: 2F1(1,2;3;z) = -2 (z + log(1-z)) / z^2
    t, big_t = 2.0, 1.0
    z = t / (1.0 + big_t + t)
    hyper = -2.0 * (z + np.log(1.0 - z)) / z**2
    closed = 3.0 * (1.0 - (2.0 / 4.0) * hyper)
    assert model.expected_purchases(t, [0], [0.0], [big_t])[0] == pytest.approx(closed, rel=1e-10)
    # x = 2: P(alive) = 1 / (1 + a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x))
    alive = 1.0 / (1.0 + 2.0 / 3.0 * (4.0 / 2.0) ** 3)
    assert model.p_alive([2], [1.0], [3.0])[0] == pytest.approx(alive, rel=1e-12)


def test_fit_is_deterministic(simulated):
    data = simulated["x"][:500], simulated["recency"][:500], simulated["T"][:500]
    assert BGNBD().fit(*data).params_ == BGNBD().fit(*data).params_


def test_rfm_summary_from_an_event_log():
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "c", "a", "c"],
            "timestamp": pd.to_datetime(
                [
                    "2017-01-01",
                    "2017-01-08",
                    "2017-01-15",
                    "2017-01-10",
                    "2017-02-01",  # after the cutoff: ignored
                    "2017-01-03",
                    "2017-01-02",
                ],
                utc=True,
            ),
            "event": [*["purchased"] * 5, "sent", "visited"],
        }
    )
    summary = rfm_summary(events, pd.Timestamp("2017-01-29"), unit_days=7.0)
    assert list(summary.index) == ["a", "b"]  # c never bought before the cutoff
    assert summary.loc["a"].tolist() == [2.0, 2.0, 4.0]
    assert summary.loc["b"].tolist() == pytest.approx([0.0, 0.0, 19 / 7])
    late = rfm_summary(events, pd.Timestamp("2017-01-29"), start=pd.Timestamp("2017-01-05"))
    assert late.loc["a"].tolist() == [1.0, 7.0, 21.0]
    with pytest.raises(BGNBDError, match="start"):
        rfm_summary(events, pd.Timestamp("2017-01-01"), start=pd.Timestamp("2017-01-05"))
    with pytest.raises(BGNBDError, match="unit_days"):
        rfm_summary(events, pd.Timestamp("2017-01-29"), unit_days=0.0)
    with pytest.raises(BGNBDError, match="event"):
        rfm_summary(events.drop(columns="event"), pd.Timestamp("2017-01-29"))


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "field"),
    [
        ([1, -1], [1.0, 0.0], [2.0, 2.0], "frequency"),
        ([1.5, 1], [1.0, 1.0], [2.0, 2.0], "frequency"),
        ([1, 1], [3.0, 1.0], [2.0, 2.0], "recency"),
        ([0, 1], [1.0, 1.0], [2.0, 2.0], "recency"),
        ([1, 1], [1.0, 1.0], [2.0, np.nan], "T"),
        ([1, 1], [1.0, 1.0], [2.0], "lengths"),
        ([0, 0], [0.0, 0.0], [2.0, 2.0], "repeat"),
    ],
)
def test_bad_input_names_the_field(frequency, recency, T, field):
    with pytest.raises(NBAValidationError, match=field):
        BGNBD().fit(frequency, recency, T)


def test_unfitted_model_and_bad_horizon_are_errors(fitted):
    with pytest.raises(BGNBDError, match="not fitted"):
        BGNBD().p_alive([1], [1.0], [2.0])
    with pytest.raises(BGNBDError, match="t:"):
        fitted.expected_purchases(-1.0, [1], [1.0], [2.0])
    with pytest.raises(BGNBDError, match="penalizer"):
        BGNBD(penalizer=-1.0).fit([1, 0], [1.0, 0.0], [2.0, 2.0])
