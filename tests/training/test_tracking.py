from __future__ import annotations

from pathlib import Path

import numpy as np
from mlflow.tracking import MlflowClient

from nba.tracking import ensure_experiment, resolve_tracking_uri
from nba.training.tracking import MLflowWriter


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


def test_core_tracking_helpers_load_neither_mlflow_nor_torch() -> None:
    """OPE, calibration and every CLI command resolve stores through :mod:`nba.tracking`:
    resolving a URI must not pay for importing MLflow or SB3 (torch)."""
    import subprocess
    import sys

    code = (
        "import sys, nba.tracking as t; t.resolve_tracking_uri(None); "
        "print(sorted(m for m in ('mlflow', 'torch', 'stable_baselines3') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
