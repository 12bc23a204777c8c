"""Rate heterogeneity within personas: the moment estimator, the tiers, and the calibrated twin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration import CalibrationResult, EventLog, EventLogError, calibrate
from nba.calibration.bootstrap import Bootstrap
from nba.calibration.heterogeneity import overdispersion, tier_multipliers
from nba.calibration.population import observe, persona_index
from nba.calibration.report import write_report
from nba.errors import ScenarioError
from nba.scenario import Scenario
from tests.calibration.conftest import purchase_log

START = pd.Timestamp("2022-01-01", tz="UTC")
HISTORY = 300
CUTOFF = START + pd.Timedelta(days=HISTORY)


def test_overdispersion_recovers_the_gamma_variance() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    persona = np.repeat([0, 1], n)
    exposure = rng.uniform(100, 300, size=2 * n) * 0.05
    phi_true = np.array([0.0, 0.5])
    multiplier = np.where(persona == 1, rng.gamma(1 / phi_true[1], phi_true[1], size=2 * n), 1.0)
    counts = rng.poisson(exposure * multiplier)
    boot = Bootstrap.draw(2 * n, 200, rng)
    phi = overdispersion(counts.astype(float), exposure, persona, 2, boot)
    assert phi[0, 1] == pytest.approx(0.5, abs=0.04)
    assert phi[0, 0] < 0.01 and np.percentile(phi[1:, 0], 2.5) == 0.0  # Poisson: no spread
    assert np.percentile(phi[1:, 1], 2.5) > 0.4


def test_tier_multipliers_are_the_conditional_means_of_gamma_slices() -> None:
    np.testing.assert_array_equal(tier_multipliers(0.0), np.ones(3))
    for phi in (0.05, 0.5, 2.0):
        tiers = tier_multipliers(phi)
        assert tiers.mean() == pytest.approx(1.0, abs=1e-9)
        assert np.all(np.diff(tiers) > 0)
        draws = np.sort(np.random.default_rng(0).gamma(1 / phi, phi, size=600_000))
        slices = draws.reshape(3, -1).mean(axis=1)  # equal-probability slices, by simulation
        np.testing.assert_allclose(tiers, slices, rtol=0.02)
    with pytest.raises(EventLogError, match="tiers"):
        tier_multipliers(0.3, tiers=0)


@pytest.fixture(scope="module")
def spread_log() -> EventLog:
    """Customers whose daily purchase rates spread widely (gamma), and a few e-mails."""
    rng = np.random.default_rng(5)
    n = 3000
    rate = np.clip(rng.gamma(1.5, 0.04, size=n), 0.0, 0.6)
    bought = rng.random((n, HISTORY + 60)) < rate[:, None]
    mailed = rng.choice(n, size=400, replace=False)
    return purchase_log(bought, START, hours=12.0, values=20.0, mailed=mailed, send_day=150)


@pytest.fixture(scope="module")
def spread_result(spread_log: EventLog) -> CalibrationResult:
    return calibrate(spread_log, holdout_after=CUTOFF, n_bootstrap=50, seed=0)


def test_calibrated_twin_splits_spread_personas_into_rate_tiers(
    spread_log: EventLog, spread_result: CalibrationResult
) -> None:
    scenario = spread_result.scenario
    assert scenario.calibration is not None
    tiers = scenario.calibration.persona_tiers
    assert len(tiers) == spread_result.persona_model.k and sum(tiers) == len(scenario.personas)
    assert max(tiers) == 3  # at least the open-ended top persona has tiers
    rows = spread_result.parameters.set_index("name")
    first = np.concatenate([[0], np.cumsum(tiers)[:-1]])
    for cluster, count in enumerate(tiers):
        members = scenario.personas[first[cluster] : first[cluster] + count]
        rates = [p.base_purchase_rate for p in members]
        fitted = rows.loc[f"personas[{cluster}].base_purchase_rate", "estimate"]
        assert np.mean(rates) == pytest.approx(fitted, rel=1e-6)  # tiers keep the mean rate
        if count == 3:
            suffixes = [p.name.removeprefix(f"persona_{cluster}_") for p in members]
            assert suffixes == ["low", "mid", "high"]
            assert rates[0] < rates[1] < rates[2]
            assert rows.loc[f"personas[{cluster}].rate_heterogeneity", "lower"] > 0
        else:
            assert members[0].name == f"persona_{cluster}"
    assert sum(p.share for p in scenario.personas) == pytest.approx(1.0)
    # without a purchase count a tiered cluster's customer goes to the middle tier ...
    middle = persona_index(scenario.calibration, np.arange(len(tiers)))
    np.testing.assert_array_equal(middle, first + np.asarray(tiers) // 2)
    # ... with one, rules place by the cluster's thirds of yearly purchases
    people = observe(scenario, spread_log.between(None, CUTOFF))
    frequency = people.table["frequency"].to_numpy()
    tiered = int(np.argmax(tiers))
    mine = people.cluster == tiered
    tier = people.persona[mine] - first[tiered]
    shares = np.bincount(tier, minlength=3) / mine.sum()
    assert np.all(shares > 0.2)  # roughly thirds (counts tie at the cuts)
    means = [frequency[mine][tier == k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]


def test_scenario_rejects_tiers_that_do_not_add_up(spread_result: CalibrationResult) -> None:
    data = spread_result.scenario.model_dump(mode="json")
    data["calibration"]["persona_tiers"] = [*data["calibration"]["persona_tiers"], 2]
    with pytest.raises(ScenarioError, match=r"calibration\.persona_tiers"):
        Scenario.from_dict(data)


def test_report_lists_tiers_with_their_cluster_customers(
    spread_result: CalibrationResult, tmp_path: Path
) -> None:
    report = write_report(spread_result, tmp_path).read_text()
    tiers = spread_result.scenario.calibration.persona_tiers  # type: ignore[union-attr]
    tiered = tiers.index(3)
    customers = int((spread_result.snapshot.customers["persona"] == tiered).sum())
    for name in ("low", "mid", "high"):
        line = next(row for row in report.splitlines() if f"persona_{tiered}_{name} " in row)
        assert f" {customers} " in line
