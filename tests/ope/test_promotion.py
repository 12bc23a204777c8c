from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from nba.cli import app
from nba.errors import NBAValidationError
from nba.ope.promotion import CHAMPION_ALIAS, GateSettings, promote
from nba.training import train
from tests.ope.conftest import MODEL
from tests.training.conftest import TINY_RUN, tiny_config_for


def _champion(client: MlflowClient) -> str | None:
    try:
        return str(client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version)
    except Exception:  # MLflow raises its own type for a missing alias
        return None


def test_twin_evidence_when_there_are_no_logs(
    registry: Callable[[Path], str], good_export: Path, bad_export: Path
) -> None:
    bad, good = registry(bad_export), registry(good_export)
    client = MlflowClient()
    settings = GateSettings(scenario="retail", twin_customers=1_000)
    for version in (bad, good):
        before = _champion(client)
        decision = promote(MODEL, version, settings)
        assert decision.method == "twin" and decision.estimator == "rollout"
        assert decision.incumbent == (f"{MODEL} v{before}" if before else "no_action")
        assert decision.challenger_lower < decision.challenger_estimate
        assert decision.promoted == (decision.challenger_lower > decision.incumbent_estimate)
        assert _champion(client) == (version if decision.promoted else before)
        tags = client.get_run(decision.run_id).data.tags
        assert tags["nba.promotion.method"] == "twin"
        assert tags["nba.promotion.decision"] == ("promoted" if decision.promoted else "refused")
        assert decision.details["violations"] == 0


def test_the_champion_is_not_promoted_over_itself_and_unknown_versions_are_named(
    registry: Callable[[Path], str], good_export: Path, decision_log: Path
) -> None:
    good = registry(good_export)
    settings = GateSettings(log=decision_log, n_boot=200)
    assert promote(MODEL, good, settings).promoted
    again = promote(MODEL, good, settings)
    assert not again.promoted and again.reasons == [f"version {good} is already the champion"]
    with pytest.raises(NBAValidationError, match="--challenger: no version '9'"):
        promote(MODEL, "9", settings)


def test_a_model_registered_by_training_is_evaluated_and_gated(
    registry: Callable[[Path], str], tmp_path: Path, decision_log: Path
) -> None:
    config = tiny_config_for(tmp_path, "ppo")
    result = train(algo="ppo", seed=1, config=config, register_model=True, **TINY_RUN)
    uri = f"models:/{MODEL}@candidate"
    runner = CliRunner()
    ope = runner.invoke(
        app, ["ope", "--log", str(decision_log), "--model", uri, "--bootstrap", "100", "--json"]
    )
    assert ope.exit_code == 0, ope.output
    assert json.loads(ope.output)["decisions"] == 6_000
    gate = runner.invoke(
        app,
        ["promote", "--model", MODEL, "--challenger", str(result.model_version),
         "--scenario", "retail", "--customers", "500", "--json"],
    )  # fmt: skip
    decision = json.loads(gate.output)
    assert gate.exit_code == (0 if decision["promoted"] else 1)
    assert decision["method"] == "twin" and decision["incumbent"] == "no_action"


def test_a_belief_model_is_gated_on_the_twin_with_beliefs(
    registry: Callable[[Path], str], tmp_path: Path
) -> None:
    """A model trained on beliefs is rolled out on beliefs (not refused for its layout), and
    the gate's estimate is the value the twin gives its served policy."""
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.evaluation import evaluate_policies
    from nba.scenarios import load_scenario
    from nba.serving.export import export_policy
    from nba.serving.scorer import PolicyScorer

    retail = load_scenario("retail")
    env = TwinVecEnv(retail, n_envs=4, seed=0, observation="belief")
    folder = export_policy(
        PPO("MlpPolicy", env, seed=0, device="cpu"), retail, tmp_path / "b", algo="ppo"
    )
    version = registry(folder)
    settings = GateSettings(scenario="retail", twin_customers=500)
    decision = promote(MODEL, version, settings)
    assert decision.method == "twin" and decision.details["violations"] == 0
    served = PolicyScorer.load(folder).as_policy("challenger")
    assert served.observation == "belief"
    table = evaluate_policies(
        retail,
        {"challenger": served},
        n_customers=500,
        seed=settings.twin_seed,
        include_references=False,
    ).table
    assert decision.challenger_estimate == pytest.approx(float(table["value"].iloc[0]))
