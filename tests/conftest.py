"""Shared fixtures: the reference scenario, its kernel and its exact solution, built once."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from nba import optimal
from nba.kernel import TransitionKernel, build_kernel
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from tests import servers

pytest_plugins = ("pytester",)  # tests/test_conftest.py runs small test files with our fixtures


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


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """The URL of a real ``mlflow server`` on loopback with a store of its own (stopped after)."""
    server = servers.mlflow_server(tmp_path)
    try:
        yield server.url
    finally:
        server.stop(timeout=20)


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


@pytest.fixture(scope="session")
def retail_belief_values(
    retail: Scenario, retail_kernel: TransitionKernel, retail_optimum: optimal.PolicySolution
) -> Any:
    """QMDP values of retail (:class:`nba.belief_values.BeliefValues`) on the shared kernel."""
    from nba.belief_values import BeliefValues
    from nba.twin import CustomerTwin

    twin = CustomerTwin(retail, seed=0)
    return BeliefValues(twin, kernel=retail_kernel, solution=retail_optimum)


SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
# Tests read the public data sets from NBA_DATA_HOME (nba.datasets' cache) and never download:
# by default the shared folder beside the repository, which is laid out like that cache.
DATA_HOME = Path(os.environ.get("NBA_DATA_HOME") or SHARED_DATA)


def in_ci() -> bool:
    """CI sets ``CI=true``: there a test that cannot run is a failure, not a skip."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def missing(reason: str) -> NoReturn:
    """Skip locally with ``reason``; fail under CI, so whole groups of tests cannot vanish."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: missing test data fails instead of skipping)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_home() -> Path:
    """The data sets' folder (``NBA_DATA_HOME``, else ``../shared/data``); skips when absent,
    fails when absent under CI."""
    if not DATA_HOME.is_dir():
        missing(f"data sets not available: {DATA_HOME} is absent (set NBA_DATA_HOME)")
    return DATA_HOME


@pytest.fixture(scope="session")
def shared_data(data_home: Path) -> Path:
    """The former name of :func:`data_home`, kept for the tests that still say it."""
    return data_home
