"""How a sweep reads Tune's results and closes its trials' MLflow runs, on a real MLflow store
with the states Tune leaves them in (no Ray needed: the results are stand-ins)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from nba.scale.sweep_record import (
    COMPLETED,
    FAILED,
    PARENT_TAG,
    STOPPED,
    STOPPED_TAG,
    TRIAL_TAG,
    SweepResult,
    close_parent,
    trials_table,
)

BUDGET = 4_096


@dataclass
class FakeResult:
    """The parts of a ``ray.tune.Result`` a sweep reads."""

    metrics: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    error: Exception | None = None


def _trial_run(client: MlflowClient, experiment: str, parent: str, trial: str, curve: list) -> str:
    run = client.create_run(experiment, tags={PARENT_TAG: parent, TRIAL_TAG: trial})
    for step, value in curve:
        client.log_metric(run.info.run_id, "eval/value", value, step=step)
    return str(run.info.run_id)


@pytest.fixture
def store(tmp_path: Path) -> tuple[MlflowClient, str, str]:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("sweep", artifact_location=str(tmp_path / "art"))
    parent = client.create_run(experiment).info.run_id
    return client, experiment, parent


def test_stopped_trials_are_killed_and_tagged_finished_ones_kept(
    store: tuple[MlflowClient, str, str],
) -> None:
    client, experiment, parent = store
    done = _trial_run(client, experiment, parent, "t0", [(0, 10.0), (1024, 20.0), (BUDGET, 24.0)])
    client.set_terminated(done, "FINISHED")
    # Tune ended this trial's process before it could close its run
    cut = _trial_run(client, experiment, parent, "t1", [(0, 10.0), (1024, 11.0)])
    # this one was closing its run as FAILED on Tune's SystemExit when the process ended
    failing = _trial_run(client, experiment, parent, "t2", [(0, 10.0), (1024, 12.0)])
    client.set_tag(failing, "nba.error", "SystemExit: 0")
    client.set_terminated(failing, "FAILED")
    broken = _trial_run(client, experiment, parent, "t3", [(0, 10.0)])
    grid = [
        FakeResult(
            {
                "trial_id": "t0",
                "completed": 1,
                "timesteps": BUDGET,
                "value": 24.0,
                "share_of_optimum": 0.9,
                "run_id": done,
                "model_uri": "models:/m-1",
            },
            {"hp": {"algorithm.ent_coef": 0.01, "policy.net_arch": [64, 64]}},
        ),
        FakeResult(
            {"trial_id": "t1", "timesteps": 1024, "value": 11.0, "share_of_optimum": 0.1},
            {"hp": {"algorithm.ent_coef": 0.001, "policy.net_arch": [128, 128]}},
        ),
        FakeResult(
            {"trial_id": "t2", "timesteps": 1024, "value": 12.0, "share_of_optimum": 0.2},
            {"hp": {"algorithm.ent_coef": 0.002, "policy.net_arch": [64, 64]}},
        ),
        FakeResult(
            {"trial_id": "t3", "timesteps": 0, "value": 10.0, "share_of_optimum": 0.0},
            {"hp": {"algorithm.ent_coef": 0.003, "policy.net_arch": [64, 64]}},
            error=RuntimeError("CUDA? no: a scenario file vanished\nTraceback ..."),
        ),
    ]
    table = trials_table(client, "sweep", parent, grid, ("hp",))
    assert list(table["status"]) == [COMPLETED, STOPPED, STOPPED, FAILED]
    assert list(table["run_id"]) == [done, cut, failing, broken]
    assert list(table["policy.net_arch"]) == ["[64, 64]", "[128, 128]", "[64, 64]", "[64, 64]"]
    assert client.get_run(done).info.status == "FINISHED"
    for run_id, step in ((cut, "1024"), (failing, "1024")):
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags[STOPPED_TAG] == step
        assert "nba.error" not in run.data.tags  # stopped by the scheduler, not an error
    failed = client.get_run(broken)
    assert failed.info.status == "FAILED"
    assert failed.data.tags["nba.error"] == "CUDA? no: a scenario file vanished"

    result = SweepResult(parent, table, 12.5, best_run_id=done)
    close_parent(client, parent, result, "sweep")
    closed = client.get_run(parent)
    assert closed.info.status == "FINISHED"
    assert closed.data.metrics["sweep/trials_completed"] == 1
    assert closed.data.metrics["sweep/trials_stopped_early"] == 2
    assert closed.data.metrics["sweep/trials_failed"] == 1
    assert closed.data.metrics["best/value"] == 24.0
    assert closed.data.tags["nba.sweep.best_run_id"] == done
    artifacts = {a.path for a in client.list_artifacts(parent, "sweep")}
    assert artifacts == {"sweep/trials.json", "sweep/learning_curves.png"}


def test_a_sweep_where_no_trial_finished_fails_its_parent(
    store: tuple[MlflowClient, str, str],
) -> None:
    client, experiment, parent = store
    cut = _trial_run(client, experiment, parent, "t0", [(0, 10.0)])
    grid = [FakeResult({"trial_id": "t0"}, {"hp": {}}, error=ValueError("bad"))]
    table = trials_table(client, "sweep", parent, grid, ("hp",))
    close_parent(client, parent, SweepResult(parent, table, 1.0), "sweep")
    assert client.get_run(cut).info.status == "FAILED"
    assert client.get_run(parent).info.status == "FAILED"
    assert "no trial finished" in client.get_run(parent).data.tags["mlflow.note.content"]
