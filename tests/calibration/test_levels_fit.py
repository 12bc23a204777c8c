"""Each customer's own rate and dropout levels, and the twin that carries them (levels.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from nba.calibration import levels, save_events
from nba.calibration.bootstrap import Bootstrap
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.filtering import history_start_of
from nba.calibration.fit import calibrate
from nba.calibration.synthetic_bgnbd import simulate_bgnbd
from nba.calibration.table import ParameterTable
from nba.cli import app
from nba.kernel import build_kernel
from nba.scenario import Scenario
from nba.serving.schema import ScoringInputError
from nba.serving.scorer import PolicyScorer
from nba.training import train
from nba.twin import CustomerTwin


def test_the_fit_recovers_a_known_spread_and_its_levels_keep_the_mean() -> None:
    """On a log drawn from a known BG/NBD process the fit recovers the shapes within their
    intervals, and the levels' multipliers keep the persona's mean rate."""
    synthetic = simulate_bgnbd(4_000, seed=11)
    ids = synthetic.log.customer_ids
    boot = Bootstrap.draw(len(ids), 20, np.random.default_rng(0))
    out = ParameterTable()
    fit = levels.fit_levels(
        synthetic.log, synthetic.calibration_end, ids, np.zeros(len(ids), dtype=np.int64), 1,
        boot, out,
    )  # fmt: skip
    table = out.frame().set_index("name")
    r = table.loc["heterogeneity.rate_shape"]
    assert r["lower"] < 0.25 < r["upper"] or abs(r["estimate"] - 0.25) < 0.05
    multipliers, shares = fit.rate
    assert shares.sum() == pytest.approx(1.0) and multipliers @ shares == pytest.approx(1.0)
    assert len(multipliers) == table.loc["heterogeneity.rate_level_count", "estimate"]
    assert multipliers[-1] > 5.0 * multipliers[len(multipliers) // 2]  # a heavy tail
    probabilities, weights = fit.dropout
    assert probabilities @ weights == pytest.approx(fit.mixing.mean_dropout)
    assert table.loc["personas[0].base_purchase_rate", "estimate"] == pytest.approx(
        float(fit.mixing.mean_rate[0])
    )


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
    assert {"heterogeneity.rate_shape", "heterogeneity.dropout_levels[0].probability"} <= names
    count = int(
        result.parameters.set_index("name").loc["heterogeneity.rate_level_count", "estimate"]
    )
    block = result.scenario.heterogeneity
    assert block is not None and len(block.rate_levels) == count


def test_a_calibrated_scenario_with_levels_is_bgnbd_in_days(bgnbd_log, monkeypatch) -> None:
    """Alive stages buy at the persona's rate (the levels carry the spread), drop out only
    after a purchase, never on a quiet day; it validates, simulates and has a kernel; and it
    reads its customers from their first purchase."""
    monkeypatch.setattr(levels, "choose_counts", lambda *args: (3, 2))
    log, cutoff = bgnbd_log
    scenario = calibrate(
        log, holdout_after=cutoff, n_bootstrap=20, k_range=range(2, 4), levels="auto"
    ).scenario
    block = scenario.heterogeneity
    assert block is not None and len(block.rate_levels) == 3 and len(block.dropout_levels) == 2
    assert block.mean_rate_multiplier == pytest.approx(1.0)
    stages = {stage.name: stage for stage in scenario.stages}
    churn = stages["active"].on_purchase["churned"]
    for name in ("active", "loyal", "lapsed"):
        assert stages[name].purchase_multiplier == 1.0
        assert "churned" not in stages[name].daily
        assert stages[name].on_purchase["churned"] == churn
        assert sum(stages[name].on_purchase.values()) <= 1.0
    assert "churned" not in stages["aware"].on_purchase  # the first purchase starts a life
    assert history_start_of(scenario) == "first_purchase"
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
    assert "heterogeneity.rate_shape" in table
    block = Scenario.from_yaml(out).heterogeneity
    assert block is not None
    counts = f"{len(block.rate_levels)} purchase-rate x {len(block.dropout_levels)} dropout"
    assert f"Each customer's own levels: {counts}" in " ".join(run.output.split())
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


@pytest.mark.slow
def test_a_twin_with_fitted_levels_trains_and_serves_with_them(
    bgnbd_log, monkeypatch, tmp_path: Path
) -> None:
    """Calibrate (levels) -> PPO (MLflow) -> export -> PolicyScorer: requests carry each
    customer's rate and dropout level, a level out of range is refused by name, and the
    briefly trained policy earns more than no action, exactly (its share of the optimum's gain
    is positive)."""
    monkeypatch.setattr(levels, "choose_counts", lambda *args: (3, 2))
    log, cutoff = bgnbd_log
    scenario = calibrate(
        log, holdout_after=cutoff, n_bootstrap=20, k_range=range(2, 4), levels="auto"
    ).scenario
    path = tmp_path / "twin.yaml"
    scenario.to_yaml(path)
    trained = train(
        scenario=str(path),
        algo="ppo",
        timesteps=400_000,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        output_dir=tmp_path / "runs",
        eval_every_steps=200_000,
    )
    share = trained.table.set_index("policy").loc["ppo", "exact_share_of_optimum"]
    assert share > 0.0
    scorer = PolicyScorer.load(trained.export_dir)
    base = {"customer_id": "c1", "persona": "persona_0", "stage": "active", "pressure": 0}
    base |= {"discount_habit": False, "opted_out": False}
    for rate_level in range(3):
        decision = scorer.score(base | {"rate_level": rate_level, "dropout_level": 1})
        assert decision.action_name in scenario.action_names
    with pytest.raises(ScoringInputError, match="rate_level"):
        scorer.score(base | {"rate_level": 3, "dropout_level": 0})
