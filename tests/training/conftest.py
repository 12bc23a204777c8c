"""A tiny training budget shared by the training tests, and an isolated MLflow store each."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY_ALGORITHM_SETTINGS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 8, "batch_size": 256, "n_epochs": 1, "learning_rate": 0.001},
    "maskable_ppo": {"n_steps": 8, "batch_size": 256, "n_epochs": 1},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 256, "buffer_size": 5000, "batch_size": 64},
}


def tiny_config_for(folder: Path, algo: str) -> Path:
    """A hyper-parameter file with a tiny network and rollouts for ``algo``."""
    path = folder / f"tiny_{algo}.yaml"
    data = {
        "env": {"n_envs": 32 if algo == "dqn" else 64},
        "policy": {"net_arch": [16, 16]},
        "algorithm": TINY_ALGORITHM_SETTINGS[algo],
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    return tiny_config_for(tmp_path, "ppo")


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow SQLite store with its tables made once: creating them (MLflow's migrations)
    costs about a second per test otherwise."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def bare_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh, empty directory (no MLflow store in it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


@pytest.fixture
def workdir(bare_workdir: Path, empty_mlflow_db: Path) -> Path:
    """Run in a fresh directory whose default ./mlflow.db store is private to the test (a
    copy of an empty store)."""
    shutil.copyfile(empty_mlflow_db, bare_workdir / "mlflow.db")
    return bare_workdir


TINY_RUN = {
    "timesteps": 2_048,
    "eval_every_steps": 1_024,
    "eval_customers": 200,
    "checkpoint_every_seconds": 3_600.0,
}
