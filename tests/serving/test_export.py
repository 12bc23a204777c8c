from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import DQN, PPO

from nba.envs import TwinVecEnv
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.serving.export import export_policy
from nba.serving.spec import PolicyFormatError, load_exported


@pytest.mark.parametrize("algo", [PPO, MaskablePPO, DQN])
def test_numpy_network_reproduces_torch(retail: Scenario, tmp_path: Path, algo) -> None:
    env = TwinVecEnv(retail, n_envs=8, seed=0)
    kwargs = {"policy_kwargs": {"net_arch": [32, 16]}}
    model = algo("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    export_policy(model, retail, tmp_path, algo=algo.__name__.lower(), value_scale=2.0)
    exported = load_exported(tmp_path)
    env.reset()
    obs = FeatureBuilder(ScenarioArrays.from_scenario(retail)).build(env.twin.state, env.twin.day)
    with torch.no_grad():
        tensor = torch.as_tensor(obs)
        if algo is DQN:
            expected = model.policy.q_net(tensor).numpy()
        else:
            expected = model.policy.get_distribution(tensor).distribution.logits.numpy()
            value = model.policy.predict_values(tensor).numpy()[:, 0]
            np.testing.assert_allclose(
                exported.value.forward(obs)[:, 0] * 2.0, value * 2.0, rtol=1e-5, atol=1e-5
            )
    actual = exported.policy.forward(obs)
    if algo is not DQN:  # logits are defined up to a constant: compare log-softmax
        actual = actual - np.log(np.exp(actual).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    spec = json.loads((tmp_path / "policy.json").read_text())
    assert spec["scenario_fingerprint"] == retail.fingerprint()
    assert [a["name"] for a in spec["actions"]] == retail.action_names


def test_loading_never_unpickles(retail: Scenario, tmp_path: Path) -> None:
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu")
    export_policy(model, retail, tmp_path, algo="ppo")
    # a pickled object array in place of a weight must be refused, not executed
    weights = dict(np.load(tmp_path / "weights.npz"))
    weights["policy.0.weight"] = np.array([object()], dtype=object)
    np.savez(tmp_path / "weights.npz", **weights)
    with pytest.raises(PolicyFormatError, match="plain arrays"):
        load_exported(tmp_path)


def test_bad_exports_are_refused(retail: Scenario, tmp_path: Path) -> None:
    with pytest.raises(PolicyFormatError, match=r"missing policy\.json"):
        load_exported(tmp_path)
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu")
    export_policy(model, retail, tmp_path, algo="ppo")
    spec = json.loads((tmp_path / "policy.json").read_text())
    spec["scenario_fingerprint"] = "0" * 64
    (tmp_path / "policy.json").write_text(json.dumps(spec))
    with pytest.raises(PolicyFormatError, match="scenario_fingerprint"):
        load_exported(tmp_path)


def test_loading_an_export_does_not_import_torch(retail: Scenario, tmp_path: Path) -> None:
    model = PPO("MlpPolicy", TwinVecEnv(retail, n_envs=4), device="cpu")
    export_policy(model, retail, tmp_path, algo="ppo")
    probe = (
        "import sys\n"
        "from nba.serving.scorer import PolicyScorer\n"
        f"scorer = PolicyScorer.load({str(tmp_path)!r})\n"
        "import pandas as pd\n"
        "row = {'customer_id': 'c1', 'persona': 'deal_seeker', 'stage': 'aware', 'pressure': 0,"
        " 'discount_habit': False, 'opted_out': False, 'days_since_direct': 7,"
        " 'days_since_messaging': 2}\n"
        "print(scorer.score(row).action_name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
