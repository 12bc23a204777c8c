"""Kill -9 a training process at a random point, resume it, and find one continuous MLflow run
that went on from the checkpoint on disk at the moment of the kill."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from nba.tracking import resolve_tracking_uri
from nba.training.checkpoint import MANIFEST_TAG, PREVIOUS_TAG

TIMESTEPS = 32_768
EVAL_EVERY = 16_384


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
        str(EVAL_EVERY),
        "--eval-customers",
        "200",
        "--checkpoint-every",
        "0.2",
        "--json",
        *extra,
    ]


def _first_checkpoint(workdir: Path, process: subprocess.Popen[bytes], timeout: float) -> Path:
    """The manifest of the first checkpoint written after learning began."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for path in (workdir / "checkpoints").glob("*/manifest.json"):
            try:
                if json.loads(path.read_text())["num_timesteps"] > 0:
                    return path
            except (OSError, ValueError):  # replaced while we read it
                pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint before the deadline")


@pytest.mark.slow
@pytest.mark.integration
def test_killed_run_resumes_into_the_same_run(workdir: Path, tiny_config: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    delay = random.Random(seed).uniform(0.0, 2.0)
    process = subprocess.Popen(
        _train_command(tiny_config), cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        manifest = _first_checkpoint(workdir, process, timeout=120)
        time.sleep(delay)  # a random point past it: mid-rollout, mid-save, mid-evaluation
        assert process.poll() is None, f"finished before the kill (delay {delay:.2f} s)"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    run_id = manifest.parent.name
    on_disk = json.loads(manifest.read_text())["num_timesteps"]  # what the resume must start at

    client = MlflowClient(resolve_tracking_uri())
    run = client.get_run(run_id)
    assert run.info.status == "RUNNING"  # killed: nobody closed it
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert digest in {run.data.tags[MANIFEST_TAG], run.data.tags.get(PREVIOUS_TAG)}
    resumed = subprocess.run(
        _train_command(tiny_config, "--resume", run_id),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    context = f"seed {seed}, kill {delay:.2f} s after the first checkpoint"
    assert resumed.returncode == 0, f"{context}: {resumed.stderr[-3000:]}"

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["nba.resumed_at_step"]) == on_disk, context
    assert run.data.metrics["final/timesteps"] >= TIMESTEPS
    steps = sorted({m.step for m in client.get_metric_history(run_id, "eval/share_of_optimum")})
    assert steps[0] == 0 and steps[-1] >= TIMESTEPS
    assert max(b - a for a, b in itertools.pairwise(steps)) <= EVAL_EVERY + 64 * 8
    assert len(client.search_runs([run.info.experiment_id])) == 1
