from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nba.cli import app
from nba.scenario import Scenario

runner = CliRunner()


def test_solve_json_reports_optimum_above_no_action() -> None:
    result = runner.invoke(app, ["solve", "--scenario", "retail", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    values = {row["policy"]: row["value_per_customer"] for row in payload["policies"]}
    assert values["optimal (DP)"] > values["no action"] > 0
    assert payload["states"] == 10_976 and payload["horizon_days"] == 90


def test_solve_table_and_scenarios_listing() -> None:
    result = runner.invoke(app, ["solve"])
    assert result.exit_code == 0 and "optimal (DP)" in result.output
    listing = runner.invoke(app, ["scenarios", "--json"])
    assert json.loads(listing.output)[0]["scenario"] == "retail"


def test_validate_accepts_good_and_names_bad_fields(retail: Scenario, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    retail.to_yaml(good)
    result = runner.invoke(app, ["validate", str(good), "--json"])
    assert json.loads(result.output)[0]["fingerprint"] == retail.fingerprint()
    bad = tmp_path / "bad.yaml"
    bad.write_text(retail.to_yaml().replace("margin_rate: 0.35", "margin_rate: 3.5"))
    # through the console entry point: one clear line on stderr and exit code 2, no traceback
    completed = subprocess.run(
        [sys.executable, "-m", "nba.cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert "margin_rate" in completed.stderr and "Traceback" not in completed.stderr


def test_help_for_every_command() -> None:
    for command in ("solve", "scenarios", "validate", "evaluate", "simulate"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_evaluate_json_has_zero_violations() -> None:
    result = runner.invoke(
        app, ["evaluate", "--policies", "myopic,journey_map", "--customers", "1000", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {row["policy"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"myopic", "journey_map", "no_action", "optimal"}
    assert all(row["violations"] == 0 for row in rows.values())


def test_simulate_writes_per_day_kpis(tmp_path: Path) -> None:
    import pandas as pd

    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"kpis{suffix}"
        result = runner.invoke(
            app, ["simulate", "--policy", "random", "--customers", "500", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert len(frame) == 90 and {"day", "contacts", "revenue", "stage_churned"} <= set(frame)
    bad = runner.invoke(app, ["simulate", "--out", str(tmp_path / "kpis.xlsx")])
    assert bad.exit_code != 0


def test_evaluate_puts_a_trained_model_in_the_table_as_served(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.evaluation import evaluate_policies
    from nba.scenarios import load_scenario
    from nba.serving.export import export_policy
    from nba.serving.scorer import PolicyScorer

    scenario = load_scenario("retail")
    model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4, seed=0), seed=2, device="cpu")
    export_policy(model, scenario, tmp_path / "policy", algo="ppo")
    command = ["evaluate", "--model", str(tmp_path / "policy"), "--policies", "no_action"]
    result = runner.invoke(app, [*command, "--customers", "300", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["policy"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"model", "no_action", "optimal"}
    served = PolicyScorer.load(tmp_path / "policy").as_policy("model")
    expected = evaluate_policies("retail", [served], n_customers=300, include_references=False)
    assert rows["model"]["value"] == pytest.approx(expected.table.loc[0, "value"], abs=1e-8)
    assert (
        rows["model"]["blocked_requests"] == 0.0
    )  # the policy head never asks for a forbidden action
    missing = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "nowhere")])
    assert "--model: no export directory" in str(missing.exception)  # main() exits 2 with it
