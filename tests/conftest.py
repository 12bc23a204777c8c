"""Shared fixtures: the reference scenario, its kernel and its exact solution, built once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from nba import optimal
from nba.kernel import TransitionKernel, build_kernel
from nba.scenario import Scenario
from nba.scenarios import load_scenario


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported (untrained, seeded) PPO policy: what the serving and CLI tests score with."""
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.serving.export import export_policy

    scenario = load_scenario("retail")
    model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4, seed=0), seed=0, device="cpu")
    folder = tmp_path_factory.mktemp("policy")
    export_policy(model, scenario, folder, algo="ppo", value_scale=3.0)
    return folder


@pytest.fixture(scope="session")
def retail() -> Scenario:
    return load_scenario("retail")


@pytest.fixture
def retail_dict(retail: Scenario) -> dict[str, Any]:
    """A fresh, mutable plain-dict copy of the reference scenario."""
    return copy.deepcopy(retail.to_dict())


@pytest.fixture(scope="session")
def retail_kernel(retail: Scenario) -> TransitionKernel:
    return build_kernel(retail)


@pytest.fixture(scope="session")
def retail_optimum(retail_kernel: TransitionKernel) -> optimal.PolicySolution:
    return optimal.solve(retail_kernel)


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (beside the repository, never inside); tests skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not available: {SHARED_DATA} is absent (see its README)")
    return SHARED_DATA
