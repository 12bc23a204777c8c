"""Checkpoints are tensors + JSON with hashes: a resumed model continues the same learning,
and anything changed after writing is refused before it is read."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nba.errors import NBAValidationError
from nba.io import write_text_atomic
from nba.scenarios import load_scenario
from nba.training.callbacks import AtomicCheckpointCallback
from nba.training.checkpoint import MANIFEST, load_checkpoint, save_checkpoint
from nba.training.config import TrainConfig, load_hyperparameters
from nba.training.trainer import _build_model
from tests.training.conftest import tiny_config_for

STEPS = {"ppo": 4_096, "dqn": 2_048, "maskable_ppo": 4_096}


class LocalCheckpoints:
    """A run's checkpoint store without MLflow: it remembers the hashes it wrote."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.recorded: set[str] = set()

    def save(self, model: Any, history: list[dict[str, float]], elapsed: float) -> str:
        digest = save_checkpoint(
            model, self.directory, history, elapsed, before_commit=self._record
        )
        return digest

    def _record(self, digest: str, previous: str | None) -> None:
        self.recorded.add(digest)


class _KilledAfterCheckpoint(BaseException):
    """Stands for kill -9: training stops without any further save."""


class _SaveOnceThenDie(AtomicCheckpointCallback):
    """Saves at the first rollout start at or past ``step``, then 'dies'."""

    def __init__(self, checkpoints: LocalCheckpoints, step: int) -> None:
        super().__init__(checkpoints, 0.0, [], lambda: 0.0)
        self.step = step

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self.step:
            self.save()
            raise _KilledAfterCheckpoint


def _config(tmp_path: Path, algo: str, observation: str = "state") -> TrainConfig:
    hyperparameters = load_hyperparameters(tiny_config_for(tmp_path, algo), algo)
    return TrainConfig(algo=algo, seed=7, hyperparameters=hyperparameters, observation=observation)


def _state(model: Any) -> dict[str, torch.Tensor]:
    """Every learned tensor: policy (incl. DQN's target network) and optimizer moments."""
    tensors = {f"policy/{k}": v for k, v in model.policy.state_dict().items()}
    for index, moments in model.policy.optimizer.state_dict()["state"].items():
        tensors.update({f"optim/{index}/{k}": v for k, v in moments.items()})
    return tensors


@pytest.mark.parametrize(
    ("algo", "observation"),
    [("ppo", "state"), ("dqn", "state"), ("maskable_ppo", "state"), ("ppo", "belief")],
)
def test_a_resumed_model_learns_exactly_what_the_uninterrupted_one_does(
    tmp_path: Path, algo: str, observation: str
) -> None:
    """With beliefs too: the customers' beliefs are history, restored from the checkpoint."""
    torch.set_num_threads(1)
    cfg, scenario = _config(tmp_path, algo, observation), load_scenario("retail")
    total = STEPS[algo]
    straight = _build_model(cfg, scenario)
    straight.learn(total)

    checkpoints = LocalCheckpoints(tmp_path / "checkpoint")
    killed = _build_model(cfg, scenario)
    with pytest.raises(_KilledAfterCheckpoint):
        killed.learn(total, callback=_SaveOnceThenDie(checkpoints, total // 2))
    checkpoint = load_checkpoint(checkpoints.directory, checkpoints.recorded)
    assert checkpoint is not None and total // 2 <= checkpoint.num_timesteps < total

    resumed = _build_model(cfg, scenario)  # from the config, as a fresh run builds it
    checkpoint.restore(resumed)
    assert resumed.num_timesteps == checkpoint.num_timesteps
    resumed.learn(total - resumed.num_timesteps, reset_num_timesteps=False)

    assert resumed.num_timesteps == straight.num_timesteps
    expected, got = _state(straight), _state(resumed)
    assert expected.keys() == got.keys() and len(expected) > 6
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0, msg=name)
    if algo == "dqn":
        assert resumed._n_calls == straight._n_calls
        assert resumed.exploration_rate == straight.exploration_rate
        assert resumed.replay_buffer.pos == straight.replay_buffer.pos
        np.testing.assert_array_equal(
            resumed.replay_buffer.observations, straight.replay_buffer.observations
        )


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, set[str], TrainConfig]:
    """A checkpoint of a briefly trained PPO model, and the hashes its writer recorded."""
    cfg = _config(tmp_path, "ppo")
    model = _build_model(cfg, load_scenario("retail"))
    model.learn(1_024)
    checkpoints = LocalCheckpoints(tmp_path / "checkpoint")
    checkpoints.save(model, [{"timesteps": 0.0, "value": 1.0}], 1.5)
    return checkpoints.directory, checkpoints.recorded, cfg


def test_a_checkpoint_is_tensors_and_json_listed_with_hashes(
    saved: tuple[Path, set[str], TrainConfig],
) -> None:
    directory, recorded, _ = saved
    manifest = json.loads((directory / MANIFEST).read_text())
    assert sorted(p.name for p in directory.iterdir()) == sorted([MANIFEST, *manifest["files"]])
    assert {Path(name).suffix for name in manifest["files"]} == {".json", ".safetensors"}
    assert manifest["num_timesteps"] == 1_024 and len(recorded) == 1
    for name in manifest["files"]:  # no pickle anywhere: every file starts as JSON does
        head = (directory / name).read_bytes()[:9]
        assert head[:1] == b"{" or head[8:9] == b"{", name  # safetensors: 8-byte length, JSON


def test_a_second_save_replaces_the_first_and_records_the_previous_hash(
    saved: tuple[Path, set[str], TrainConfig],
) -> None:
    directory, _, cfg = saved
    model = _build_model(cfg, load_scenario("retail"))
    calls: list[tuple[str, str | None]] = []
    first = (directory / MANIFEST).read_bytes()
    digest = save_checkpoint(model, directory, [], 0.0, before_commit=lambda *a: calls.append(a))
    assert len(calls) == 1 and calls[0][0] == digest and calls[0][1] is not None
    assert (directory / MANIFEST).read_bytes() != first
    files = json.loads((directory / MANIFEST).read_text())["files"]
    assert sorted(p.name for p in directory.iterdir()) == sorted([MANIFEST, *files])


def test_changed_bytes_in_any_file_are_refused_naming_the_file(
    saved: tuple[Path, set[str], TrainConfig],
) -> None:
    directory, recorded, _ = saved
    manifest = json.loads((directory / MANIFEST).read_text())
    for name in manifest["files"]:
        path = directory / name
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(NBAValidationError, match=rf"{name}: sha256 does not match"):
            load_checkpoint(directory, recorded)
        path.write_bytes(original)
    assert load_checkpoint(directory, recorded) is not None  # restored: accepted again

    # a manifest rewritten to match changed files has a hash the run never recorded
    manifest["num_timesteps"] = 10**9
    (directory / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(NBAValidationError, match=r"manifest.json: sha256 .* is not a checkpoint"):
        load_checkpoint(directory, recorded)
    with pytest.raises(NBAValidationError, match="records no checkpoint hash"):
        load_checkpoint(directory, set())


def test_a_missing_file_and_an_unknown_layout_are_clear_errors(
    saved: tuple[Path, set[str], TrainConfig], tmp_path: Path
) -> None:
    directory, recorded, cfg = saved
    manifest = json.loads((directory / MANIFEST).read_text())
    (directory / manifest["tensors"]).unlink()
    with pytest.raises(NBAValidationError, match=rf"{manifest['tensors']}: missing"):
        load_checkpoint(directory, recorded)

    # a verified checkpoint that does not fit the model (other network): refused, not a crash
    other = LocalCheckpoints(tmp_path / "other")
    small = cfg.model_copy(
        update={
            "hyperparameters": cfg.hyperparameters.model_copy(
                update={"policy": cfg.hyperparameters.policy.model_copy(update={"net_arch": [8]})}
            )
        }
    )
    other.save(_build_model(small, load_scenario("retail")), [], 0.0)
    checkpoint = load_checkpoint(other.directory, other.recorded)
    assert checkpoint is not None
    with pytest.raises(NBAValidationError, match=r"state-\d+\.json: malformed checkpoint"):
        checkpoint.restore(_build_model(cfg, load_scenario("retail")))


def test_an_old_pickle_checkpoint_is_refused_unopened(tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(b"PK\x03\x04 not even opened")
    with pytest.raises(NBAValidationError, match=r"old pickle-based format .* cannot be resumed"):
        load_checkpoint(tmp_path, {"0" * 64})
    assert load_checkpoint(tmp_path / "nothing", set()) is None


def test_a_kill_at_any_point_of_saving_leaves_a_checkpoint_that_verifies(
    saved: tuple[Path, set[str], TrainConfig], tmp_path: Path
) -> None:
    """kill -9 a process that saves in a loop, 12 times at random moments: the checkpoint on
    disk always verifies against the hashes recorded before its commit, and is the last one
    committed or the one before."""
    _, _, cfg = saved
    model = _build_model(cfg, load_scenario("retail"))
    directory, tags = tmp_path / "killed", tmp_path / "tags.json"
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)

    def record(digest: str, previous: str | None) -> None:  # the run's tags: one atomic write
        write_text_atomic(tags, json.dumps([digest, previous]))

    for attempt in range(12):
        pid = os.fork()
        if pid == 0:  # the child saves until it is killed
            try:
                while True:
                    model.num_timesteps += 1
                    save_checkpoint(model, directory, [], 0.0, before_commit=record)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        if not (directory / MANIFEST).exists():
            continue  # killed before the first commit
        recorded = {h for h in json.loads(tags.read_text()) if h}
        checkpoint = load_checkpoint(directory, recorded)
        assert checkpoint is not None, f"seed {seed}, attempt {attempt}"
        model.num_timesteps = checkpoint.num_timesteps  # the next child goes on from there
