"""An exported (untrained, seeded) PPO policy shared by the serving tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from stable_baselines3 import PPO

from nba.envs import TwinVecEnv
from nba.scenarios import load_scenario
from nba.serving.export import export_policy


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scenario = load_scenario("retail")
    model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4, seed=0), seed=0, device="cpu")
    folder = tmp_path_factory.mktemp("policy")
    export_policy(model, scenario, folder, algo="ppo", value_scale=3.0)
    return folder


def customer(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "customer_id": "c-1",
        "persona": "deal_seeker",
        "stage": "active",
        "pressure": 0,
        "discount_habit": False,
        "opted_out": False,
        "days_since_direct": 7,
        "days_since_messaging": 2,
    }
    row.update(overrides)
    return row


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))
