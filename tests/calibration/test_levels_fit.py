"""Each customer's own rate and dropout levels, fitted by the twin's likelihood (levels.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nba.calibration import fit as fit_module
from nba.calibration import levels, save_events
from nba.calibration.bootstrap import Bootstrap
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.fit import calibrate
from nba.calibration.heterogeneity import tier_multipliers
from nba.calibration.synthetic_bgnbd import simulate_bgnbd
from nba.calibration.table import ParameterTable
from nba.cli import app
from nba.kernel import build_kernel
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin

START = pd.Timestamp("2024-01-01", tz="UTC")
DAYS = 180


def twin_log(scenario, n: int, seed: int) -> EventLog:
    """Purchase-only log of ``n`` customers of ``scenario`` over DAYS days, never contacted."""
    twin = CustomerTwin(scenario, seed=seed)
    twin.reset(n, seed=seed)
    rows = []
    for day in range(DAYS):
        bought = np.flatnonzero(twin.step(np.zeros(n, dtype=int)).bought)
        rows += [(f"c{i:05d}", START + pd.Timedelta(days=day, hours=12)) for i in bought]
    events = pd.DataFrame(rows, columns=["customer_id", "timestamp"])
    return EventLog.from_frames(events.assign(event="purchased", value=10.0))


def fit_on(scenario, log: EventLog) -> tuple[levels.LevelFit, pd.DataFrame]:
    ids = pd.Index(sorted(log.events["customer_id"].unique()))
    boot = Bootstrap.draw(len(ids), 20, np.random.default_rng(0))
    out = ParameterTable()
    end = START + pd.Timedelta(days=DAYS)
    result = levels.fit_levels(scenario, log, end, ids, boot, out, np.random.default_rng(1))
    return result, out.frame().set_index("name")


def test_grid_choice_refines_between_grid_points_and_keeps_the_edges() -> None:
    grid = np.array([0.0, 1.0, 2.0, 3.0])
    totals = np.array([-((np.arange(4) - 1.3) ** 2), -((np.arange(4) + 1.0) ** 2)])
    chosen = levels.grid_choice(totals, grid)
    assert chosen[0] == pytest.approx(1.3)
    assert chosen[1] == 0.0  # the best is the edge: no extrapolation


def test_level_count_is_one_without_significant_spread_else_the_smallest_keeping_the_gain() -> None:
    gains = {2: 80.0, 3: 96.0, 4: 99.0, 5: 100.0}
    assert levels.level_count(lambda k: gains[k], 0.0, 5, significant=True) == 3
    assert levels.level_count(lambda k: gains[k], 0.0, 5, significant=False) == 1


def test_a_spread_in_the_truth_is_found_and_none_gives_one_level() -> None:
    retail = load_scenario("retail")
    truth = levels.with_levels(retail, tier_multipliers(1.0, 4), np.ones(1))
    spread, table = fit_on(retail, twin_log(truth, 1500, seed=5))
    assert len(spread.rate) > 1
    assert spread.rate.mean() == pytest.approx(1.0)
    row = table.loc["heterogeneity.rate_variance"]
    assert 0.25 <= row["estimate"] <= 2.0  # true 1, discretised into 4 levels
    assert row["lower"] > 0.0 and row["source"] == "fitted"
    assert table.loc["heterogeneity.rate_level_count", "estimate"] == len(spread.rate)
    flat, flat_table = fit_on(retail, twin_log(retail, 1500, seed=6))
    assert len(flat.rate) == 1 and flat.heterogeneity() is None
    assert flat_table.loc["heterogeneity.rate_levels[0].multiplier", "source"] == "assumed"
    assert flat_table.loc["heterogeneity.dropout_levels[0].multiplier", "source"] == "assumed"


def test_an_unknown_levels_setting_is_refused_by_name() -> None:
    log = simulate_bgnbd(50, seed=0).log
    with pytest.raises(EventLogError, match=r"^levels: "):
        calibrate(log, levels="many")


@pytest.fixture(scope="module")
def bgnbd_log() -> tuple[EventLog, pd.Timestamp]:
    synthetic = simulate_bgnbd(800, seed=2)
    return synthetic.log, synthetic.calibration_end


def test_levels_auto_writes_the_fit_to_the_table(bgnbd_log) -> None:
    log, cutoff = bgnbd_log
    result = calibrate(
        log, holdout_after=cutoff, n_bootstrap=20, k_range=range(2, 4), levels="auto"
    )
    names = set(result.parameters["name"])
    assert {"heterogeneity.rate_variance", "heterogeneity.dropout_levels[0].multiplier"} <= names
    count = int(
        result.parameters.set_index("name").loc["heterogeneity.rate_level_count", "estimate"]
    )
    block = result.scenario.heterogeneity
    assert (1 if block is None else len(block.rate_levels)) == count


def test_a_calibrated_scenario_with_levels_validates_simulates_and_has_a_kernel(
    bgnbd_log, monkeypatch
) -> None:
    fitted = levels.LevelFit(tier_multipliers(1.0, 3), tier_multipliers(0.5, 2), 1.0, 0.5)
    monkeypatch.setattr(fit_module, "fit_levels", lambda *args: fitted)
    log, cutoff = bgnbd_log
    scenario = calibrate(
        log, holdout_after=cutoff, n_bootstrap=20, k_range=range(2, 4), levels="auto"
    ).scenario
    block = scenario.heterogeneity
    assert block is not None and len(block.rate_levels) == 3 and len(block.dropout_levels) == 2
    assert block.mean_rate_multiplier == pytest.approx(1.0)
    twin = CustomerTwin(scenario, seed=0)
    twin.reset(200, seed=0)
    assert set(np.unique(twin.state.rate_level)) == {0, 1, 2}
    assert build_kernel(scenario).n_states == twin.space.size


def test_cli_levels_auto_writes_a_scenario_and_refuses_an_unknown_mode(
    bgnbd_log, tmp_path: Path
) -> None:
    log, cutoff = bgnbd_log
    events = tmp_path / "transactions.parquet"
    save_events(log.between(None, cutoff), events)
    out = tmp_path / "twin.yaml"
    args = ["calibrate", "--events", str(events), "--out", str(out), "--bootstrap", "20"]
    args += ["--max-personas", "3", "--no-mlflow"]
    run = CliRunner().invoke(app, [*args, "--levels", "auto"])
    assert run.exit_code == 0, run.output
    table = (tmp_path / "twin_report" / "parameters.csv").read_text()
    assert "heterogeneity.rate_variance" in table
    bad = CliRunner().invoke(app, [*args, "--levels", "many"])
    assert isinstance(bad.exception, EventLogError) and "levels" in str(bad.exception)


def test_auto_levels_take_personas_from_attributes_only_one_without_any() -> None:
    """Recency and frequency are left to each customer's own levels: a log with no customer
    attributes is one persona, without rate tiers by frequency; the default still clusters RFM."""
    synthetic = simulate_bgnbd(1_500, seed=3)
    settings = {"holdout_after": synthetic.calibration_end, "n_bootstrap": 20, "seed": 0}
    auto = calibrate(synthetic.log, levels="auto", **settings)
    assert auto.persona_model.k == 1
    assert auto.persona_model.numeric == [] and auto.persona_model.categorical == {}
    assert auto.scenario.calibration.persona_tiers == [1]
    assert [p.name for p in auto.scenario.personas] == ["persona_0"]
    assert auto.scenario.personas[0].description == "all customers"
    none = calibrate(synthetic.log, **settings)
    assert "frequency" in none.persona_model.numeric
    assert none.persona_model.k >= 2
