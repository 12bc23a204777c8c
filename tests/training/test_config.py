from __future__ import annotations

from pathlib import Path

import pytest

from nba.errors import NBAValidationError, UnknownNameError
from nba.training.config import TrainConfig, default_hyperparameters, load_hyperparameters


@pytest.mark.parametrize("algo", ["ppo", "a2c", "dqn", "maskable_ppo"])
def test_packaged_hyperparameters_load_and_match_the_algorithm(algo: str) -> None:
    hp = default_hyperparameters(algo, "retail")
    assert hp.env.n_envs >= 1 and hp.policy.net_arch


def test_unknown_key_in_algorithm_section_is_named(tmp_path: Path) -> None:
    path = tmp_path / "hp.yaml"
    path.write_text("algorithm:\n  n_steps: 8\n  learning_rat: 0.1\n")
    with pytest.raises(UnknownNameError, match=r"learning_rat"):
        load_hyperparameters(path, "ppo")


def test_unknown_section_and_bad_values_are_named(tmp_path: Path) -> None:
    path = tmp_path / "hp.yaml"
    path.write_text("envs:\n  n_envs: 8\n")
    with pytest.raises(NBAValidationError, match=r"envs: Extra inputs"):
        load_hyperparameters(path, "ppo")
    path.write_text("env:\n  n_envs: 0\n")
    with pytest.raises(NBAValidationError, match=r"env.n_envs"):
        load_hyperparameters(path, "ppo")
    with pytest.raises(NBAValidationError, match="no such file"):
        load_hyperparameters(tmp_path / "missing.yaml", "ppo")


def test_flat_params_name_every_setting() -> None:
    params = TrainConfig(algo="ppo", timesteps=1000).flat_params()
    assert params["algo"] == "ppo" and params["timesteps"] == "1000"
    assert params["hyperparameters.algorithm.n_steps"] == "32"
    assert params["hyperparameters.algorithm.n_epochs"] == "1"
    assert params["hyperparameters.env.n_envs"] == "2048"
