"""Runs say what happened: stopped runs are KILLED with a checkpoint and a resume command,
resumed runs finish clean, and --resume refuses what it cannot honour."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback
from typer.testing import CliRunner

import nba.training.trainer as trainer
from nba.cli import app
from nba.errors import NBAValidationError
from nba.tracking import resolve_tracking_uri
from nba.training import train
from nba.training.callbacks import TrainingInterrupted
from tests.training.conftest import TINY_RUN


def _wait_for_learning(workdir: Path, process: subprocess.Popen[str], timeout: float) -> int:
    """Steps in the first checkpoint written after learning began (the run is mid-learn)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        for path in (workdir / "checkpoints").glob("*/manifest.json"):
            try:
                steps = int(json.loads(path.read_text())["num_timesteps"])
            except (OSError, ValueError):  # replaced while we read it
                continue
            if steps > 0:
                return steps
        time.sleep(0.1)
    raise AssertionError("no checkpoint with progress before the deadline")


@pytest.mark.slow
@pytest.mark.integration
def test_sigterm_kills_the_run_with_a_checkpoint_and_resume_finishes_it(
    workdir: Path, tiny_config: Path
) -> None:
    command = [
        *(sys.executable, "-m", "nba.cli", "train", "--config", str(tiny_config)),
        *("--seed", "3", "--timesteps", "1000000", "--eval-every", "1000000"),
        *("--eval-customers", "50", "--checkpoint-every", "0.3", "--json"),
    ]
    process = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        before = _wait_for_learning(workdir, process, timeout=90)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    (checkpoint,) = (workdir / "checkpoints").iterdir()
    run_id = checkpoint.name
    assert f"nba train --resume {run_id}" in stderr and "KILLED" in stderr

    client = MlflowClient(resolve_tracking_uri())
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"  # not RUNNING forever, not FAILED
    assert "SIGTERM" in run.data.tags["nba.error"]
    saved = json.loads((checkpoint / "manifest.json").read_text())["num_timesteps"]
    assert saved >= before
    logged = {a.path for a in client.list_artifacts(run_id, "checkpoint")}
    files = json.loads((checkpoint / "manifest.json").read_text())["files"]
    assert logged >= {"checkpoint/manifest.json", *(f"checkpoint/{name}" for name in files)}
    assert "checkpoint/model.zip" not in logged  # no pickle

    total = saved + 1024  # a new total: trains on past the checkpoint
    resumed = CliRunner().invoke(
        app, ["train", "--resume", run_id, "--seed", "3", "--timesteps", str(total), "--json"]
    )
    assert resumed.exit_code == 0, resumed.output[-3000:]
    output = json.loads(resumed.stdout)
    assert output["run_id"] == run_id
    assert output["model_version"] is None and not client.search_registered_models()  # not asked
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "nba.error" not in run.data.tags  # the stale error went with the finish
    assert int(run.data.tags["nba.resumed_at_step"]) == saved
    assert run.data.tags["nba.resume.changed"] == f"timesteps={total}"
    assert total <= run.data.metrics["final/timesteps"] < total + 512
    assert run.data.params["timesteps"] == "1000000"  # params are the start's; the tag says more


class _SignalAt(BaseCallback):
    """Sends this process a signal once, after ``step`` env steps (a user's Ctrl-C)."""

    def __init__(self, step: int, signal_number: int) -> None:
        super().__init__()
        self.step, self.signal_number, self.sent = step, signal_number, False

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal_number)
        return True


def test_ctrl_c_stops_between_steps_saves_and_marks_killed(
    workdir: Path, tiny_config: Path
) -> None:
    with pytest.raises(TrainingInterrupted) as stopped:
        train(
            config=tiny_config,
            callbacks=[_SignalAt(512, signal.SIGINT)],
            **{**TINY_RUN, "timesteps": 1_000_000, "eval_every_steps": 1_000_000},
        )
    assert stopped.value.signal_number == signal.SIGINT and stopped.value.run_id
    run_id = stopped.value.run_id
    client = MlflowClient(resolve_tracking_uri())
    assert client.get_run(run_id).info.status == "KILLED"
    state = json.loads((workdir / "checkpoints" / run_id / "manifest.json").read_text())
    assert 512 <= state["num_timesteps"] < 1024  # stopped at the next step, not at the end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    # --resume refuses, naming the option, what it cannot honour; the run stays as it was
    refused = CliRunner().invoke(app, ["train", "--resume", run_id, "--seed", "4"])
    assert isinstance(refused.exception, NBAValidationError)
    assert str(refused.exception).startswith(f"--seed: run {run_id} was trained with 0;")
    with pytest.raises(NBAValidationError, match=r"^--algo: "):
        train(resume=run_id, algo="a2c")
    other = workdir / "other.yaml"
    other.write_text(tiny_config.read_text().replace("n_steps: 8", "n_steps: 16"))
    with pytest.raises(NBAValidationError, match=r"^--config: "):
        train(resume=run_id, config=other)
    with pytest.raises(NBAValidationError, match=r"^--eval-customers: "):
        train(resume=run_id, eval_customers=300)
    with pytest.raises(NBAValidationError, match=r"^--timesteps: "):
        train(resume=run_id, timesteps=0)
    assert client.get_run(run_id).info.status == "KILLED"


def test_interrupted_cli_prints_the_resume_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def stopped(**kwargs: Any) -> None:
        raise TrainingInterrupted(signal.SIGINT, run_id="0123abcd")

    monkeypatch.setattr(trainer, "train", stopped)
    result = CliRunner().invoke(app, ["train", "--tracking-uri", "http://127.0.0.1:5999"])
    assert result.exit_code == 128 + signal.SIGINT
    assert "run 0123abcd" in result.stderr
    assert "nba train --resume 0123abcd --tracking-uri http://127.0.0.1:5999" in result.stderr
