from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from nba.training.tracking import MLflowWriter, ensure_experiment, resolve_tracking_uri


def test_default_store_is_sqlite_in_the_working_directory(workdir: Path) -> None:
    uri = resolve_tracking_uri()
    assert uri == f"sqlite:///{workdir / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = ensure_experiment(client, "nba-test", uri)
    location = client.get_experiment(experiment_id).artifact_location
    assert location == (workdir / "mlartifacts").as_uri()
    assert ensure_experiment(client, "nba-test", uri) == experiment_id


def test_writer_logs_numeric_values_in_one_batch(workdir: Path) -> None:
    uri = resolve_tracking_uri()
    client = MlflowClient(uri)
    run = client.create_run(ensure_experiment(client, "nba-test", uri))
    writer = MLflowWriter(client, run.info.run_id)
    writer.write(
        {
            "train/loss": 0.5,
            "rollout/ep_rew_mean": np.float32(3.0),
            "time/name": "ppo",
            "x": np.nan,
        },
        {"train/loss": None, "rollout/ep_rew_mean": None, "time/name": None, "x": None},
        step=128,
    )
    writer.write({"train/loss": 0.25}, {"train/loss": None}, step=256)
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(128, 0.5), (256, 0.25)]
    metrics = client.get_run(run.info.run_id).data.metrics
    assert set(metrics) == {"train/loss", "rollout/ep_rew_mean"}
