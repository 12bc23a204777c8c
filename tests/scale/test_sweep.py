"""``nba sweep`` and ``nba train-twins`` on the session's real two-node cluster: Tune trials as
MLflow child runs, ASHA's stops closed honestly, the best trial registered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nba.scale.sweep import sweep, train_twins
from nba.scale.sweep_record import COMPLETED, PARENT_TAG, STOPPED, STOPPED_TAG
from nba.scenarios import load_scenario
from nba.training.publish import CANDIDATE_ALIAS
from tests.training.conftest import tiny_config_for

pytestmark = pytest.mark.integration

TIMESTEPS = 4_096


def test_a_sweep_trains_stops_and_registers_the_best_trial(
    ray_cluster: str, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = tmp_path / "space.yaml"
    # a rate of 1e-6 cannot learn in 4k steps: those trials trail at every rung, and ASHA
    # usually stops them (not always: Tune may ask a trial for its next result before the
    # scheduler has read the last, so a short trial can finish first; test_sweep_table.py
    # holds how a stopped trial's run is closed)
    space.write_text(
        "algorithm.learning_rate: {choice: [0.000001, 0.003]}\n"
        "algorithm.ent_coef: {loguniform: [0.0001, 0.01]}\n"
    )
    result = sweep(
        "retail",
        "ppo",
        trials=4,
        timesteps=TIMESTEPS,
        space=space,
        config=tiny_config_for(tmp_path, "ppo"),
        rungs=4,
        seed=3,
        eval_customers=200,
        address=ray_cluster,
        max_concurrent=1,  # in drawn order, one CPU for each trial's own evaluations
        tracking_uri=uri,
        experiment="sweep-test",
        output_dir=tmp_path / "runs",
    )
    client = MlflowClient(uri)
    table = result.trials
    assert len(table) == 4 and table["run_id"].notna().all()
    children = {
        run.info.run_id: run
        for run in client.search_runs(
            [client.get_experiment_by_name("sweep-test").experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{result.parent_run_id}'",
        )
    }
    assert set(children) == set(table["run_id"])
    for row in table.to_dict("records"):
        run = children[row["run_id"]]
        # the drawn settings reached the trainer: the child's logged config says them
        assert float(run.data.params["hyperparameters.algorithm.ent_coef"]) == pytest.approx(
            row["algorithm.ent_coef"]
        )
        if row["status"] == COMPLETED:
            assert run.info.status == "FINISHED" and row["timesteps"] >= TIMESTEPS
            assert row["value"] == pytest.approx(run.data.metrics["eval/value"])
        else:
            assert row["status"] == STOPPED and run.info.status == "KILLED"
            assert int(run.data.tags[STOPPED_TAG]) == row["timesteps"] < TIMESTEPS
    completed = table[table["status"] == COMPLETED]
    best = completed.loc[completed["value"].idxmax()]
    assert result.best_run_id == best["run_id"]
    version = client.get_model_version_by_alias("nba-retail", CANDIDATE_ALIAS)
    assert version.run_id == best["run_id"] and str(version.version) == result.model_version
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["sweep/trials_completed"] == len(completed)
    assert parent.data.metrics["best/value"] == pytest.approx(best["value"])
    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "sweep")}
    assert {"sweep/trials.json", "sweep/learning_curves.png"} <= artifacts


def test_train_twins_registers_one_policy_per_twin(ray_cluster: str, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    twins = []
    for name in ("north", "south"):  # one calibrated twin per market, each its own file
        path = tmp_path / f"{name}.yaml"
        path.write_text(load_scenario("retail").to_yaml())
        twins.append(str(path))
    result = train_twins(
        twins,
        "ppo",
        timesteps=2_048,
        config=tiny_config_for(tmp_path, "ppo"),
        eval_every_steps=1_024,
        eval_customers=200,
        address=ray_cluster,
        tracking_uri=uri,
        experiment="twins-test",
        output_dir=tmp_path / "runs",
    )
    client = MlflowClient(uri)
    assert sorted(result.trials["scenario"]) == ["north", "south"]
    assert (result.trials["status"] == COMPLETED).all()
    for row in result.trials.to_dict("records"):
        version = client.get_model_version_by_alias(f"nba-{row['scenario']}", CANDIDATE_ALIAS)
        assert version.run_id == row["run_id"]
        run = client.get_run(row["run_id"])
        assert run.data.tags[PARENT_TAG] == result.parent_run_id
        assert json.loads(run.data.params["timesteps"]) >= 2_048
    assert client.get_run(result.parent_run_id).info.status == "FINISHED"
