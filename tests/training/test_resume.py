"""Kill a training process mid-run, resume it, and find one continuous MLflow run."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nba.training.tracking import resolve_tracking_uri

TIMESTEPS = 60_000


def _train_command(tiny_config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "nba.cli",
        "train",
        "--config",
        str(tiny_config),
        "--timesteps",
        str(TIMESTEPS),
        "--eval-every",
        "8192",
        "--eval-customers",
        "200",
        "--checkpoint-every",
        "0.5",
        "--json",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.integration
def test_killed_run_resumes_into_the_same_run(workdir: Path, tiny_config: Path) -> None:
    process = subprocess.Popen(
        _train_command(tiny_config), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline and process.poll() is None:
        states = list((workdir / "checkpoints").glob("*/state.json"))
        if states and '"num_timesteps": 0' not in states[0].read_text():
            state = states[0]
            time.sleep(1.0)  # let it run past the checkpoint, so work is lost and redone
            break
        time.sleep(0.2)
    assert state is not None and process.poll() is None, "no checkpoint before the deadline"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    run_id = state.parent.name

    client = MlflowClient(resolve_tracking_uri())
    assert client.get_run(run_id).info.status == "RUNNING"  # killed: nobody closed it
    resumed = subprocess.run(
        _train_command(tiny_config, "--resume", run_id),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["nba.resumed_at_step"]) > 0
    assert run.data.metrics["final/timesteps"] >= TIMESTEPS
    steps = sorted({m.step for m in client.get_metric_history(run_id, "eval/share_of_optimum")})
    assert steps[0] == 0 and steps[-1] >= TIMESTEPS
    assert max(b - a for a, b in itertools.pairwise(steps)) <= 8192 + 64 * 8
    assert len(client.search_runs([run.info.experiment_id])) == 1
