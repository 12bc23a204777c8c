"""Checkpoints that resume a run exactly: what a model's learning state is, and the run's record.

:func:`save_checkpoint` captures everything the learning continues from (weights, optimizer,
counters, every RNG, the twin's customers mid-episode, reward normalisation, DQN's replay
buffer) and :meth:`Checkpoint.restore` puts it into a fresh model built from the run's config;
the bytes on disk are :mod:`nba.training.checkpoint_format`'s (tensors, JSON, hashes; never a
pickle). :class:`RunCheckpoints` records each manifest's hash in the run's tags (the previous
one stays accepted until the manifest is replaced, so a kill at any point leaves a checkpoint
that verifies), uploads checkpoints to the run's artifacts, and verifies them before a resume,
locally and after downloading from the tracking server.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from nba.envs import TwinVecEnv
from nba.errors import NBAValidationError
from nba.state import CustomerState
from nba.training.checkpoint_format import (
    LEGACY_MODEL,
    MANIFEST,
    MANIFEST_TAG,
    check_files,
    decode,
    encode,
    file_sha256,
    legacy_error,
    read_checkpoint,
    read_manifest,
    write_checkpoint,
)

ARTIFACT_DIR = "checkpoint"
#: The run's record of which manifests it wrote (sha256 hex): the one saved last
#: (``MANIFEST_TAG``), the one before it (a kill between the tag update and the manifest's
#: rename leaves that one on disk), and the one last uploaded to the run's artifacts.
PREVIOUS_TAG = "nba.checkpoint.previous_manifest_sha256"
LOGGED_TAG = "nba.checkpoint.logged_manifest_sha256"
#: Model attributes that carry learning progress (absent ones are skipped: DQN has
#: ``_n_calls`` and ``exploration_rate``, PPO does not).
_COUNTERS: dict[str, type] = {
    "num_timesteps": int,
    "_n_updates": int,
    "_episode_num": int,
    "_n_calls": int,
    "_current_progress_remaining": float,
    "exploration_rate": float,
}
_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


@dataclass
class Checkpoint:
    """A verified checkpoint, read into memory; :meth:`restore` puts it into a fresh model."""

    directory: Path
    manifest_sha256: str
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    state_file: str
    tensors_file: str

    @property
    def num_timesteps(self) -> int:
        return int(self.state["num_timesteps"])

    @property
    def elapsed_seconds(self) -> float:
        return float(self.state["elapsed_seconds"])

    @property
    def history(self) -> list[dict[str, float]]:
        return [dict(point) for point in self.state["history"]]

    def restore(self, model: Any) -> None:
        """Load weights, optimizer, counters, RNGs, env and buffers into ``model``.

        ``model`` must be built from the run's config as a fresh run builds it; anything
        that does not fit it (another feature layout, a renamed layer) is a clear error.
        """
        try:
            _restore(model, self.state, self.tensors)
        except NBAValidationError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise NBAValidationError(
                f"--resume: {self.directory / self.state_file}: malformed checkpoint "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            ) from None


# ----------------------------------------------------------------------------- saving
def save_checkpoint(
    model: Any,
    directory: Path,
    history: list[dict[str, float]],
    elapsed: float,
    *,
    run_id: str | None = None,
    before_commit: Callable[[str, str | None], None] | None = None,
) -> str:
    """Write a checkpoint of ``model``; return the new manifest's sha256.

    ``before_commit(new_sha256, previous_sha256)`` runs once the files are written and before
    the manifest replaces the previous one (the run records the hash there).
    """
    state, tensors = _capture(model, history, elapsed)
    return write_checkpoint(directory, state, tensors, run_id=run_id, before_commit=before_commit)


def _capture(
    model: Any, history: list[dict[str, float]], elapsed: float
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {}
    _, variable_names = model._get_torch_save_params()
    state: dict[str, Any] = {
        "algorithm": f"{type(model).__module__}:{type(model).__qualname__}",
        "observation_shape": list(model.observation_space.shape),
        "n_actions": int(model.action_space.n),
        "num_timesteps": int(model.num_timesteps),
        "elapsed_seconds": float(elapsed),
        "history": history,
        "counters": {
            name: kind(getattr(model, name))
            for name, kind in _COUNTERS.items()
            if hasattr(model, name)
        },
        "parameters": encode(model.get_parameters(), "parameters", tensors),
        "variables": encode(
            {name: _attribute(model, name) for name in variable_names}, "variables", tensors
        ),
        "rng": _capture_rngs(model, tensors),
    }
    env = model.get_env()
    saved_env: dict[str, Any] = {}
    if isinstance(env, VecNormalize):
        saved_env["normalizer"] = _capture_normalizer(env, tensors)
    twin = _twin_env(env)
    if twin is not None and model._last_obs is not None:  # the customers mid-episode
        saved_env.update(_capture_twin(twin, tensors))
        for name in ("_last_obs", "_last_episode_starts", "_last_original_obs"):
            value = getattr(model, name, None)
            if isinstance(value, np.ndarray):
                tensors[f"last/{name}"] = _tensor(value)
    state["env"] = saved_env
    buffer = getattr(model, "replay_buffer", None)
    if isinstance(buffer, ReplayBuffer) and isinstance(buffer.observations, np.ndarray):
        rows = buffer.buffer_size if buffer.full else buffer.pos
        for name in _REPLAY_ARRAYS:
            array = getattr(buffer, name)
            if isinstance(array, np.ndarray):
                tensors[f"replay/{name}"] = _tensor(array[:rows])
        state["replay_buffer"] = {"pos": int(buffer.pos), "full": bool(buffer.full), "rows": rows}
    return state, tensors


def _attribute(model: Any, dotted: str) -> Any:
    value = model
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A view where possible: a full replay buffer is hundreds of MB, serialised right away."""
    return torch.from_numpy(np.ascontiguousarray(array))


def _capture_rngs(model: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Every generator the learning draws from: SB3 seeds and uses the global ones."""
    tensors["rng/torch"] = torch.get_rng_state()
    legacy = np.random.get_state(legacy=False)  # noqa: NPY002 - SB3 draws from it (minibatches)
    python_version, python_state, python_gauss = random.getstate()
    generators = {
        name: value.bit_generator.state
        for name, value in vars(model).items()
        if isinstance(value, np.random.Generator)  # MaskedDQN's exploration generator
    }
    space_rng = getattr(model.action_space, "_np_random", None)
    return {
        "numpy": {**legacy, "state": {**legacy["state"], "key": legacy["state"]["key"].tolist()}},
        "python": [python_version, list(python_state), python_gauss],
        "generators": generators,
        "action_space": None if space_rng is None else space_rng.bit_generator.state,
    }


def _twin_env(env: VecEnv | None) -> TwinVecEnv | None:
    base = env.venv if isinstance(env, VecNormalize) else env
    return base if isinstance(base, TwinVecEnv) else None


def _capture_twin(twin_env: TwinVecEnv, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    twin = twin_env.twin
    customers = twin.state
    for name, array in customers.items():
        tensors[f"env/state/{name}"] = _tensor(array)
    tensors["env/day"] = _tensor(twin.day)
    observer = twin_env.batch.observer
    if observer is not None:  # what the customers' beliefs are: a history, not the state
        tensors["env/belief"] = _tensor(observer.belief)
    return {"twin_rng": twin.rng.bit_generator.state}


def _capture_normalizer(env: VecNormalize, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    tensors["env/normalizer/returns"] = _tensor(np.asarray(env.returns, dtype=np.float64))
    stats = {
        "ret_rms": {
            "mean": float(env.ret_rms.mean),
            "var": float(env.ret_rms.var),
            "count": float(env.ret_rms.count),
        }
    }
    if env.norm_obs and not isinstance(env.obs_rms, dict):
        tensors["env/normalizer/obs_mean"] = _tensor(env.obs_rms.mean)
        tensors["env/normalizer/obs_var"] = _tensor(env.obs_rms.var)
        stats["obs_count"] = float(env.obs_rms.count)
    return stats


# ----------------------------------------------------------------------------- restoring
def _restore(model: Any, state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    shape = list(model.observation_space.shape)
    if state["observation_shape"] != shape or state["n_actions"] != int(model.action_space.n):
        raise NBAValidationError(
            "--resume: the checkpoint was trained on other features than this version builds "
            f"(observations {state['observation_shape']} and {state['n_actions']} actions, "
            f"this version {shape} and {int(model.action_space.n)}); start a new run"
        )
    module_names, variable_names = model._get_torch_save_params()
    parameters = decode(state["parameters"], tensors)
    if not isinstance(parameters, dict) or set(parameters) != set(module_names):
        raise ValueError(f"parameters: expected {sorted(module_names)}")
    model.set_parameters(parameters, exact_match=True, device=get_device("cpu"))
    variables = decode(state["variables"], tensors)
    if not isinstance(variables, dict) or set(variables) != set(variable_names):
        raise ValueError(f"variables: expected {sorted(variable_names)}")
    with torch.no_grad():
        for name, value in variables.items():
            _attribute(model, name).copy_(value)
    for name, value in state["counters"].items():
        kind = _COUNTERS.get(name)
        if kind is None or not hasattr(model, name) or isinstance(value, bool):
            raise ValueError(f"counters: unexpected {name[:40]!r}")
        if not isinstance(value, int | float):
            raise TypeError(f"counters: {name} is not a number")
        setattr(model, name, kind(value))
    _restore_rngs(model, state["rng"], tensors)
    env = model.get_env()
    saved_env = state.get("env")
    twin = _twin_env(env)
    if saved_env is not None and "twin_rng" in saved_env and twin is not None:
        _restore_env(twin, saved_env, tensors, int(env.num_envs))
        model._last_obs = _array(tensors["last/_last_obs"], (env.num_envs, *shape))
        model._last_episode_starts = _array(tensors["last/_last_episode_starts"], (env.num_envs,))
        if "last/_last_original_obs" in tensors:
            model._last_original_obs = _array(
                tensors["last/_last_original_obs"], (env.num_envs, *shape)
            )
    if saved_env is not None and "normalizer" in saved_env and isinstance(env, VecNormalize):
        _restore_normalizer(env, saved_env["normalizer"], tensors)
    if "replay_buffer" in state:
        _restore_replay(model, state["replay_buffer"], tensors)


def _array(tensor: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    array = tensor.numpy().copy()
    if array.shape != tuple(shape):
        raise ValueError(f"expected shape {tuple(shape)}, got {array.shape}")
    return array


def _restore_rngs(model: Any, rngs: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    torch_state = tensors["rng/torch"]
    if torch_state.dtype != torch.uint8 or torch_state.dim() != 1:
        raise ValueError("rng/torch: expected a byte vector")
    torch.set_rng_state(torch_state.clone())
    legacy = rngs["numpy"]
    key = np.asarray(legacy["state"]["key"], dtype=np.uint32)
    np.random.set_state({**legacy, "state": {**legacy["state"], "key": key}})  # noqa: NPY002
    version, python_state, gauss = rngs["python"]
    random.setstate((int(version), tuple(int(v) for v in python_state), gauss))
    generators = rngs["generators"]
    for name, value in vars(model).items():
        if isinstance(value, np.random.Generator) and name in generators:
            value.bit_generator.state = generators[name]
    space_rng = getattr(model.action_space, "_np_random", None)
    if space_rng is not None and rngs.get("action_space") is not None:
        space_rng.bit_generator.state = rngs["action_space"]


def _restore_env(
    twin_env: TwinVecEnv, saved: dict[str, Any], tensors: dict[str, torch.Tensor], n: int
) -> None:
    twin = twin_env.twin
    columns = {}
    for component in twin.space.components:
        array = tensors[f"env/state/{component.name}"].numpy().copy()
        if array.shape[0] != n:
            raise ValueError(f"env/state/{component.name}: expected {n} customers")
        columns[component.name] = array
    state = CustomerState.of(columns, twin.space.components)
    twin.set_state(state, _array(tensors["env/day"], (n,)))
    twin.rng.bit_generator.state = saved["twin_rng"]
    observer = twin_env.batch.observer
    if observer is not None:
        if "env/belief" not in tensors:
            raise ValueError("env/belief: the checkpoint has no beliefs for a belief env")
        observer.belief = _array(tensors["env/belief"], (n, *observer.features.latent_shape))


def _restore_normalizer(
    env: VecNormalize, saved: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    stats = saved["ret_rms"]
    env.ret_rms.mean = np.float64(stats["mean"])
    env.ret_rms.var = np.float64(stats["var"])
    env.ret_rms.count = float(stats["count"])
    env.returns = _array(tensors["env/normalizer/returns"], (env.num_envs,))
    if "obs_count" in saved and env.norm_obs and not isinstance(env.obs_rms, dict):
        env.obs_rms.mean = _array(tensors["env/normalizer/obs_mean"], env.obs_rms.mean.shape)
        env.obs_rms.var = _array(tensors["env/normalizer/obs_var"], env.obs_rms.var.shape)
        env.obs_rms.count = float(saved["obs_count"])


def _restore_replay(model: Any, saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    buffer = getattr(model, "replay_buffer", None)
    if not isinstance(buffer, ReplayBuffer):
        raise ValueError("replay_buffer: this model has none")
    rows, pos, full = int(saved["rows"]), int(saved["pos"]), bool(saved["full"])
    if not 0 <= pos < buffer.buffer_size or rows != (buffer.buffer_size if full else pos):
        raise ValueError("replay_buffer: position does not fit the buffer")
    for name in _REPLAY_ARRAYS:
        target = getattr(buffer, name)
        key = f"replay/{name}"
        if not isinstance(target, np.ndarray):
            continue
        source = tensors[key].numpy()
        if source.shape != (rows, *target.shape[1:]) or source.dtype != target.dtype:
            raise ValueError(f"{key}: expected {(rows, *target.shape[1:])} {target.dtype}")
        target[:rows] = source
    buffer.pos, buffer.full = pos, full


# ----------------------------------------------------------------------------- loading
def load_checkpoint(
    directory: Path, trusted: Collection[str], where: str | None = None
) -> Checkpoint | None:
    """The verified checkpoint in ``directory``, or None when there is none.

    ``trusted`` holds the manifest hashes the run recorded; a manifest with another hash, a
    file that does not match the manifest, or an old pickle-based ``model.zip`` is refused
    with one :class:`NBAValidationError` naming the file, before anything is parsed.
    """
    found = read_checkpoint(directory, trusted, where)
    return None if found is None else Checkpoint(directory, *found)


# ----------------------------------------------------------------------------- the run
class RunCheckpoints:
    """A run's checkpoints: saved locally with their hash recorded in the run's tags,
    uploaded to the run's artifacts, and verified against those tags before a resume."""

    def __init__(self, client: MlflowClient, run_id: str, directory: Path) -> None:
        self.client = client
        self.run_id = run_id
        self.directory = directory
        self.current: str | None = None  # sha256 of the manifest on disk, once known

    def save(self, model: Any, history: list[dict[str, float]], elapsed: float) -> str:
        self.current = save_checkpoint(
            model,
            self.directory,
            history,
            elapsed,
            run_id=self.run_id,
            before_commit=self._record,
        )
        return self.current

    def _record(self, digest: str, previous: str | None) -> None:
        tags = [RunTag(MANIFEST_TAG, digest)]
        if previous is not None:
            tags.append(RunTag(PREVIOUS_TAG, previous))
        self.client.log_batch(self.run_id, tags=tags)  # one call: both or neither

    def log(self) -> None:
        """Upload the checkpoint to the run's artifacts: its files first, the manifest last."""
        path = self.directory / MANIFEST
        digest = file_sha256(path)
        manifest = json.loads(path.read_bytes())
        for name in manifest["files"]:
            self.client.log_artifact(self.run_id, str(self.directory / name), ARTIFACT_DIR)
        self.client.log_artifact(self.run_id, str(path), ARTIFACT_DIR)
        self.client.set_tag(self.run_id, LOGGED_TAG, digest)

    def logged(self) -> bool:
        """Whether the checkpoint on disk is the one in the run's artifacts."""
        tags = self.client.get_run(self.run_id).data.tags
        return self.current is not None and tags.get(LOGGED_TAG) == self.current

    def trusted(self) -> set[str]:
        tags = self.client.get_run(self.run_id).data.tags
        return {tags[name] for name in (MANIFEST_TAG, PREVIOUS_TAG, LOGGED_TAG) if tags.get(name)}

    def load(self, download: bool = True) -> Checkpoint | None:
        """The run's checkpoint: the local one, else (``download``) the one in its artifacts."""
        trusted = self.trusted()
        checkpoint = load_checkpoint(self.directory, trusted)
        if checkpoint is None and download:
            checkpoint = self._download(trusted)
        if checkpoint is not None:
            self.current = checkpoint.manifest_sha256
        return checkpoint

    def _download(self, trusted: set[str]) -> Checkpoint | None:
        listed = {Path(a.path).name for a in self.client.list_artifacts(self.run_id, ARTIFACT_DIR)}
        where = f"run {self.run_id}'s artifacts"
        if MANIFEST not in listed:
            if LEGACY_MODEL in listed:
                raise legacy_error(f"{ARTIFACT_DIR}/{LEGACY_MODEL} in {where}")
            return None  # nothing logged yet: the run starts over
        staging = self.directory.parent / f".{self.run_id}-download"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            local = Path(
                self.client.download_artifacts(
                    self.run_id, f"{ARTIFACT_DIR}/{MANIFEST}", str(staging)
                )
            )
            _, manifest = read_manifest(local, trusted, where)
            for name in manifest["files"]:  # names checked against the pattern: no paths
                if name not in listed:
                    raise NBAValidationError(
                        f"--resume: {ARTIFACT_DIR}/{name}: missing from {where} (listed in its "
                        f"{MANIFEST})"
                    )
                self.client.download_artifacts(self.run_id, f"{ARTIFACT_DIR}/{name}", str(staging))
            check_files(local.parent, manifest)
            self.directory.mkdir(parents=True, exist_ok=True)
            for name in manifest["files"]:
                os.replace(local.parent / name, self.directory / name)
            os.replace(local, self.directory / MANIFEST)  # the commit point goes last
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return load_checkpoint(self.directory, trusted, where)


__all__ = [
    "LOGGED_TAG",
    "MANIFEST_TAG",
    "PREVIOUS_TAG",
    "Checkpoint",
    "RunCheckpoints",
    "load_checkpoint",
    "read_manifest",
    "save_checkpoint",
]
