"""Forecast audit: per-customer purchase counts in a later window, twin vs BG/NBD vs reality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nba.calibration import EventLog, EventLogError, calibrate, save_events
from nba.calibration.adapters import complete_journey
from nba.calibration.forecast import ForecastAudit, forecast_audit
from nba.cli import app
from nba.scenario import Scenario
from tests.calibration.conftest import purchase_log

CUTOFF, END = "2017-10-01", "2018-01-01"
CHECKS = ("count_distribution", "inter_purchase_days", "lapse_curve")


# ------------------------------------------------------------------ synthetic: truth known
RATES = (0.03, 0.12)  # daily purchase probability of the two kinds of customer
START = pd.Timestamp("2020-01-01", tz="UTC")
HISTORY, HOLDOUT = 240, 60


@pytest.fixture(scope="module")
def synthetic() -> tuple[EventLog, np.ndarray]:
    """Customers buying at one of two constant daily rates, never churning."""
    rng = np.random.default_rng(7)
    n = 1500
    rate = np.where(rng.random(n) < 0.5, RATES[0], RATES[1])
    days = HISTORY + HOLDOUT
    bought = rng.random((n, days)) < rate[:, None]
    hour = rng.uniform(8, 20, size=int(bought.sum()))
    value = rng.gamma(4.0, 10.0, size=int(bought.sum()))
    mailed = rng.choice(n, size=300, replace=False)
    log = purchase_log(bought, START, hours=hour, values=value, mailed=mailed, send_day=100)
    return log, rate


@pytest.fixture(scope="module")
def synthetic_audit(synthetic: tuple[EventLog, np.ndarray]) -> ForecastAudit:
    log, _ = synthetic
    cutoff = START + pd.Timedelta(days=HISTORY)
    result = calibrate(log, holdout_after=cutoff, n_bootstrap=30, seed=0)
    end = cutoff + pd.Timedelta(days=HOLDOUT)
    return forecast_audit(result.scenario, log, cutoff, end, replicates=100, seed=0)


def test_synthetic_twin_forecasts_near_the_truth(
    synthetic: tuple[EventLog, np.ndarray], synthetic_audit: ForecastAudit
) -> None:
    _, rate = synthetic
    customers = synthetic_audit.customers
    truth = pd.Series(rate, index=np.arange(len(rate)).astype(str)).reindex(customers.index)
    oracle = float(np.abs(truth.to_numpy() * HOLDOUT - customers["observed"]).mean())
    summary = synthetic_audit.summary()
    # the best possible forecast knows each customer's rate; the twin must come close to it
    # (measured: 1.58 against 1.54; BG/NBD 1.73; placed by rules instead of the filter, 1.65)
    assert summary["mae_twin_all"] <= 1.05 * oracle
    assert summary["mae_twin"] <= summary["mae_bgnbd"]
    assert abs(customers["twin"].mean() - customers["observed"].mean()) < 0.1 * oracle


def test_synthetic_distribution_checks_report_distances(synthetic_audit: ForecastAudit) -> None:
    table = synthetic_audit.table.set_index("check")
    for check in CHECKS:
        row = table.loc[check]
        # a distance is >= 0, so its resampled values sit above a near-zero estimate
        assert 0.0 <= row["value"] <= row["upper"] <= 1.0 and row["lower"] <= row["upper"]
        assert 0.0 < row["reference"] < 0.2
    # a twin of the true structure reproduces the shapes within a few points
    assert table.loc["count_distribution", "value"] < 0.1
    assert table.loc["lapse_curve", "value"] < 0.05


def test_forecast_audit_is_deterministic_for_a_seed(synthetic: tuple[EventLog, np.ndarray]) -> None:
    log, _ = synthetic
    cutoff = START + pd.Timedelta(days=HISTORY)
    scenario = calibrate(log, holdout_after=cutoff, n_bootstrap=20, seed=0).scenario
    end = cutoff + pd.Timedelta(days=20)
    first = forecast_audit(scenario, log, cutoff, end, replicates=5, n_bootstrap=50, seed=3)
    again = forecast_audit(scenario, log, cutoff, end, replicates=5, n_bootstrap=50, seed=3)
    pd.testing.assert_frame_equal(first.table, again.table)


def test_forecast_audit_rejects_a_bad_window(synthetic: tuple[EventLog, np.ndarray]) -> None:
    log, _ = synthetic
    cutoff = START + pd.Timedelta(days=HISTORY)
    scenario = calibrate(log, holdout_after=cutoff, n_bootstrap=20, seed=0).scenario
    with pytest.raises(EventLogError, match="holdout_end"):
        forecast_audit(scenario, log, cutoff, cutoff - pd.Timedelta(days=1))
    with pytest.raises(EventLogError, match="holdout_start"):
        forecast_audit(scenario, log, "not a date", cutoff)
    end = cutoff + pd.Timedelta(days=5)
    with pytest.raises(EventLogError, match="history_start"):
        forecast_audit(scenario, log, cutoff, end, placement="rules", history_start="birth")


def test_cli_audit_runs_the_forecast_audit(
    synthetic: tuple[EventLog, np.ndarray], tmp_path: Path
) -> None:
    log, _ = synthetic
    cutoff = START + pd.Timedelta(days=HISTORY)
    scenario = calibrate(log, holdout_after=cutoff, n_bootstrap=20, seed=0).scenario
    scenario.to_yaml(tmp_path / "twin.yaml")
    save_events(log, tmp_path / "events.parquet")
    end = (cutoff + pd.Timedelta(days=30)).date().isoformat()
    args = ["audit", "-s", str(tmp_path / "twin.yaml"), "-e", str(tmp_path / "events.parquet")]
    args += ["--holdout-start", cutoff.date().isoformat(), "--holdout-end", end]
    result = CliRunner().invoke(app, [*args, "--replicates", "5", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {"mae_twin", "mae_bgnbd", "lapse_curve_distance"} <= payload["summary"].keys()
    half = CliRunner().invoke(app, [*args[:-2], "--json"])
    assert half.exit_code != 0
    ruled = CliRunner().invoke(app, [*args, "--replicates", "5", "--placement", "rules", "--json"])
    assert ruled.exit_code == 0, ruled.output
    assert json.loads(ruled.stdout)["summary"]["mae_twin"] != payload["summary"]["mae_twin"]
    arrivals = CliRunner().invoke(
        app, [*args, "--replicates", "5", "--history-start", "first_event", "--json"]
    )
    assert arrivals.exit_code == 0, arrivals.output
    unknown = CliRunner().invoke(app, [*args, "--placement", "psychic"])
    assert isinstance(unknown.exception, EventLogError) and "placement" in str(unknown.exception)
    per_arm = CliRunner().invoke(app, [*args[:5], "--placement", "filtered"])
    assert "--placement" in str(per_arm.exception)


# ------------------------------------------------------------------ Complete Journey
@pytest.fixture(scope="module")
def journey_twin(shared_data: Path) -> tuple[Scenario, EventLog]:
    log = complete_journey(shared_data / "completejourney")
    return calibrate(log, holdout_after=CUTOFF, n_bootstrap=50, seed=0).scenario, log


@pytest.fixture(scope="module")
def journey(journey_twin: tuple[Scenario, EventLog]) -> ForecastAudit:
    scenario, log = journey_twin
    return forecast_audit(scenario, log, CUTOFF, END, replicates=200, seed=0)


def test_complete_journey_forecast_audit_reports_everything(journey: ForecastAudit) -> None:
    summary = journey.summary()
    assert summary["holdout_days"] == 92
    assert summary["scored"] >= 2300  # households with a purchase before the cutoff
    assert summary["mapped_sends"] == 0  # the window's campaigns are new to the twin
    assert 4.5 < summary["observed_mean"] < 5.7
    assert 2.0 < summary["mae_bgnbd"] < 2.5  # BG/NBD on the same split: 2.256
    low, high = summary["mae_difference_lower"], summary["mae_difference_upper"]
    assert low <= summary["mae_difference"] <= high
    for check in CHECKS:
        assert 0.0 < summary[f"{check}_distance"] < 1.0
        assert 0.0 < summary[f"{check}_noise"] < summary[f"{check}_distance"] + 1.0


def test_complete_journey_twin_mae_no_worse_than_bgnbd(journey: ForecastAudit) -> None:
    # the target; measured 2.221 vs 2.256 (paired difference -0.035 [-0.075, 0.003]).
    # Placed by the recency/frequency rules instead of the filter, the same twin scores 2.41.
    assert journey.value("mae") <= journey.value("mae", "bgnbd")


def test_complete_journey_filtered_placement_beats_rules(
    journey_twin: tuple[Scenario, EventLog], journey: ForecastAudit
) -> None:
    scenario, log = journey_twin
    rules = forecast_audit(
        scenario, log, CUTOFF, END, replicates=200, n_bootstrap=50, placement="rules", seed=0
    )
    # the same twin, each household placed by its own history: measured 2.22 against 2.41
    assert journey.value("mae") < rules.value("mae") - 0.15
    assert rules.customers["p_churned"].isna().all()
    assert journey.customers["p_churned"].between(0.0, 1.0).all()


def test_churn_the_rules_cannot_see_is_fitted_by_likelihood(
    synthetic: tuple[EventLog, np.ndarray],
) -> None:
    log, _ = synthetic  # nobody ever churns in this log
    cutoff = START + pd.Timedelta(days=HISTORY)
    parameters = calibrate(log, holdout_after=cutoff, n_bootstrap=30, seed=0).parameters
    rows = parameters.set_index("name")
    for stage in ("aware", "active", "loyal"):
        row = rows.loc[f"stages[{stage}].daily.churned"]
        assert row["source"] == "fitted" and "forward filter" in row["method"]
        assert row["estimate"] == 0.0 and row["upper"] < 1e-4  # the priors are 3e-4 and more
