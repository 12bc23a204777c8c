from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback

from nba.errors import NBAValidationError, UnknownNameError
from nba.tracking import resolve_tracking_uri
from nba.training import train
from tests.training.conftest import TINY_RUN, tiny_config_for


def test_a_run_leaves_a_complete_mlflow_record(workdir: Path, tiny_config: Path) -> None:
    result = train(algo="ppo", seed=3, config=tiny_config, register_model=True, **TINY_RUN)
    client = MlflowClient(resolve_tracking_uri())
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["algo"] == "ppo" and params["scenario_name"] == "retail"
    assert len(params["scenario_fingerprint"]) == 64 and "git_commit" in params
    assert params["hyperparameters.algorithm.n_steps"] == "8"

    shares = client.get_metric_history(result.run_id, "eval/share_of_optimum")
    assert [m.step for m in shares] == sorted(m.step for m in shares) and len(shares) >= 2
    assert any(key.startswith("train/") for key in run.data.metrics)  # SB3 logger via KVWriter
    # headline numbers as metrics; every KPI in the table artifact, which the UI shows as a table
    assert run.data.metrics["final/optimal/share_of_optimum"] == 1.0
    per_policy = {key.split("/")[2] for key in run.data.metrics if key.count("/") == 2}
    assert per_policy == {"value", "share_of_optimum", "exact_share_of_optimum"}
    assert "final/ppo/exact_share_of_optimum" in run.data.metrics
    # the curve's last point is the exported policy's own exact value (scored after its update)
    final = result.table.set_index("policy").loc["ppo"]
    assert result.history[-1]["timesteps"] == TINY_RUN["timesteps"]
    assert result.history[-1]["value"] == pytest.approx(final["exact_value"], rel=1e-12)
    logged = client.load_table(
        run.info.experiment_id, "evaluation/evaluation.json", run_ids=[result.run_id]
    ).set_index("policy")
    assert len(logged) == 6 and logged.loc["ppo", "violations"] == 0
    assert {"type": "table", "path": "evaluation/evaluation.json"} in json.loads(
        run.data.tags["mlflow.loggedArtifacts"]
    )

    # what a reviewer sees first: description, source, user; the model-training view
    tags = run.data.tags
    assert re.fullmatch(
        r"ppo on retail, 2\.0k steps: exact share -?\d\.\d{3} of the optimum "
        r"\(value -?\d+\.\d vs \d+\.\d no action\)",
        tags["mlflow.note.content"],
    ), tags["mlflow.note.content"]
    assert tags["mlflow.user"] and tags["mlflow.source.name"] and tags["mlflow.source.type"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    artifacts = {
        a.path
        for folder in ("inputs", "evaluation", "figures", "checkpoint")
        for a in client.list_artifacts(result.run_id, folder)
    }
    assert {
        "inputs/scenario.yaml",
        "inputs/config.json",
        "inputs/hyperparameters_ppo.yaml",
        "evaluation/evaluation.csv",
        "evaluation/evaluation.json",
        "figures/learning_curve.png",
        "figures/journey_flow.html",
        "figures/journey_flow.png",
        "figures/action_mix.png",
        "checkpoint/manifest.json",
    } <= artifacts

    table = result.table.set_index("policy")
    assert set(table.index) == {"ppo", "no_action", "random", "journey_map", "myopic", "optimal"}
    assert (table["violations"] == 0).all()

    version = client.get_model_version_by_alias("nba-retail", "candidate")
    assert str(version.version) == result.model_version and version.run_id == result.run_id
    assert (workdir / "mlflow.db").is_file() and (workdir / "mlartifacts").is_dir()


def test_same_seed_gives_bit_identical_results(
    workdir: Path, tiny_config: Path, tmp_path: Path
) -> None:
    runs = [
        train(
            algo="ppo",
            seed=11,
            config=tiny_config,
            output_dir=tmp_path / f"out{i}",
            **{**TINY_RUN, "timesteps": 1_024, "eval_every_steps": 10**9},  # first, last only
        )
        for i in range(2)
    ]
    first, second = (np.load(r.export_dir / "weights.npz") for r in runs)
    assert first.files == second.files
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    np.testing.assert_array_equal(runs[0].table["value"], runs[1].table["value"])


class _Explode(BaseCallback):
    def _on_step(self) -> bool:
        if self.num_timesteps >= 512:
            raise RuntimeError("simulated crash")
        return True


def test_a_failing_run_is_marked_failed_with_the_error(workdir: Path, tmp_path: Path) -> None:
    config = tiny_config_for(tmp_path, "a2c")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(algo="a2c", config=config, callbacks=[_Explode()], **TINY_RUN)
    client = MlflowClient(resolve_tracking_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("nba").experiment_id])
    assert run.info.status == "FAILED"
    assert "simulated crash" in run.data.tags["nba.error"]


@pytest.mark.parametrize("algo", ["a2c", "dqn", "maskable_ppo"])
def test_every_registered_algorithm_trains_and_exports(
    workdir: Path, tmp_path: Path, algo: str
) -> None:
    config = tiny_config_for(tmp_path, algo)
    result = train(algo=algo, config=config, register_model=False, **TINY_RUN)
    assert (result.export_dir / "weights.npz").is_file() and result.model_version is None
    assert result.table.set_index("policy").loc[algo, "violations"] == 0


def test_clear_errors_before_any_run(workdir: Path, tiny_config: Path) -> None:
    with pytest.raises(UnknownNameError, match="algo"):
        train(algo="sac", **TINY_RUN)
    with pytest.raises(UnknownNameError, match="scenario"):
        train(scenario="nowhere", config=tiny_config, **TINY_RUN)
    with pytest.raises(NBAValidationError, match="no run"):
        train(resume="0123456789abcdef")
