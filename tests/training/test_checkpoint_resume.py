"""``nba train --resume`` trusts only checkpoints the run recorded, runs nothing from them, and
finishes a run whose final phase already happened without registering it twice."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import zipfile
from base64 import b64encode
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback

from nba.cli import main
from nba.errors import NBAValidationError
from nba.tracking import resolve_tracking_uri
from nba.training import train
from nba.training.callbacks import TrainingInterrupted
from nba.training.checkpoint import LOGGED_TAG, MANIFEST_TAG
from nba.training.publish import FINAL_DONE_TAG
from tests.training.conftest import TINY_RUN


class _CtrlCAt(BaseCallback):
    """Ctrl-C once, after ``step`` env steps."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step, self.sent = step, False

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return True


@pytest.fixture
def stopped_run(workdir: Path, tiny_config: Path) -> str:
    """A KILLED run whose checkpoint is on disk and in the run's artifacts."""
    with pytest.raises(TrainingInterrupted) as stopped:
        train(
            config=tiny_config,
            callbacks=[_CtrlCAt(512)],
            **{**TINY_RUN, "timesteps": 1_000_000, "eval_every_steps": 1_000_000},
        )
    assert stopped.value.run_id is not None
    return stopped.value.run_id


def _payload(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when it is loaded."""

    class _Creates:
        def __reduce__(self) -> tuple[object, tuple[str, str]]:
            return (open, (str(marker), "w"))

    return pickle.dumps(_Creates())


def _hostile_model_zip(path: Path, marker: Path) -> None:
    """An SB3-style model.zip whose ``data`` holds a serialized object (SB3 unpickles it)."""
    data = {"policy_class": {":type:": "<class 'type'>", ":serialized:": ""}}
    data["policy_class"][":serialized:"] = b64encode(_payload(marker)).decode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("_stable_baselines3_version", "2.9.2")


def _resume_cli(run_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    """``nba train --resume RUN``'s stderr; it must exit 2 with exactly one line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["train", "--resume", run_id])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume: "), lines
    return lines[0]


def test_tampered_and_pickled_checkpoints_are_refused_and_never_run(
    stopped_run: str, workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = MlflowClient(resolve_tracking_uri())
    run_id, local = stopped_run, workdir / "checkpoints" / stopped_run
    manifest = json.loads((local / "manifest.json").read_text())
    tags = client.get_run(run_id).data.tags
    assert tags[MANIFEST_TAG] == tags[LOGGED_TAG]  # saved, then uploaded with the artifacts

    # 1. a changed byte in the local tensors: one line naming the file, the run untouched
    tensors = local / manifest["tensors"]
    original = tensors.read_bytes()
    tensors.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    line = _resume_cli(run_id, capsys)
    assert f"checkpoints/{run_id}/{tensors.name}: sha256 does not match" in line
    assert client.get_run(run_id).info.status == "KILLED"
    tensors.write_bytes(original)

    # 2. no local checkpoint; the one in the run's artifacts was changed on the server
    shutil.rmtree(local)
    stored = Path(client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    remote = workdir / stored if not stored.is_absolute() else stored
    remote_state = remote / "checkpoint" / manifest["state"]
    text = remote_state.read_text()
    remote_state.write_text(text.replace('"num_timesteps": ', '"num_timesteps": 1', 1))
    line = _resume_cli(run_id, capsys)
    assert f"{manifest['state']}: sha256 does not match" in line
    assert not local.exists() or not (local / "manifest.json").exists()  # nothing kept
    remote_state.write_text(text)

    # 3. an old-format model.zip carrying a pickle that would create a file, locally and in
    #    the run's artifacts: refused, and the payload never runs
    probe, marker = tmp_path / "probe", tmp_path / "payload-ran"
    pickle.loads(_payload(probe))  # the payload is live: loading it creates the file
    assert probe.exists()
    local.mkdir(parents=True)
    _hostile_model_zip(local / "model.zip", marker)
    line = _resume_cli(run_id, capsys)
    assert "model.zip" in line and "cannot be resumed safely" in line
    shutil.rmtree(local)
    (remote / "checkpoint" / "manifest.json").unlink()
    _hostile_model_zip(remote / "checkpoint" / "model.zip", marker)
    line = _resume_cli(run_id, capsys)
    assert "checkpoint/model.zip" in line and "cannot be resumed safely" in line
    assert not marker.exists()
    assert client.get_run(run_id).info.status == "KILLED"


def test_a_resume_after_the_final_phase_registers_no_second_version(
    workdir: Path, tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # killed between logging the model and registering it (the registry refuses once)
    register = mlflow.register_model

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(mlflow, "register_model", refuse)
    with pytest.raises(RuntimeError, match="registry unavailable"):
        train(config=tiny_config, register_model=True, **TINY_RUN)
    monkeypatch.setattr(mlflow, "register_model", register)
    client = MlflowClient(resolve_tracking_uri())
    experiment = client.get_experiment_by_name("nba").experiment_id
    (run,) = client.search_runs([experiment])
    run_id = run.info.run_id
    assert run.info.status == "FAILED" and not client.search_model_versions()

    def logged_models() -> int:
        return len(client.search_logged_models([experiment]))

    def versions() -> list[str]:
        return [str(v.version) for v in client.search_model_versions("name = 'nba-retail'")]

    assert logged_models() == 1
    result = train(resume=run_id)  # finds the logged model and registers it, once
    assert result.model_version == "1" and versions() == ["1"] and logged_models() == 1
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(run_id, "final/timesteps")) == 1  # not re-evaluated

    # killed after registering, before the run was marked finished or its final tag was set
    client.update_run(run_id, status="RUNNING")
    client.delete_tag(run_id, FINAL_DONE_TAG)
    again = train(resume=run_id)
    assert again.model_version == "1" and versions() == ["1"] and logged_models() == 1
    assert str(client.get_model_version_by_alias("nba-retail", "candidate").version) == "1"
    assert len(again.table) == len(result.table)
    assert client.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(NBAValidationError, match="already finished"):
        train(resume=run_id)
    assert versions() == ["1"]
