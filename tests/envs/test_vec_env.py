from __future__ import annotations

import numpy as np
import pytest
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3 import A2C, DQN, PPO

from nba.envs import TwinVecEnv


def test_auto_reset_terminal_observation_and_episode_info() -> None:
    env = TwinVecEnv(n_envs=64, seed=1, stagger=False, terminate_on_churn=False)
    obs = env.reset()
    assert obs.shape == (64, env.observation_space.shape[0]) and obs.dtype == np.float32
    horizon = env.twin.scenario.horizon_days
    returns = np.zeros(64)
    for step in range(horizon):
        obs, rewards, dones, infos = env.step(np.zeros(64, dtype=np.int64))
        returns += rewards
        assert dones.all() == (step == horizon - 1)
    time_left = env.batch.features.offsets["time_left"]
    for i, info in enumerate(infos):
        assert info["terminal_observation"][time_left] == 0.0
        assert info["episode"]["l"] == horizon
        assert info["episode"]["r"] == pytest.approx(returns[i], rel=1e-5)
    assert (obs[:, time_left] == 1.0).all()  # reset in the same step


def test_staggered_clocks_spread_episode_ends() -> None:
    env = TwinVecEnv(n_envs=512, seed=2, terminate_on_churn=False)
    env.reset()
    finished_per_step = [int(env.step(np.zeros(512, dtype=np.int64))[2].sum()) for _ in range(90)]
    assert max(finished_per_step) < 50 and sum(finished_per_step) == 512


def test_masks_are_one_block_usable_by_maskable_ppo() -> None:
    env = TwinVecEnv(n_envs=16, seed=0)
    env.reset()
    assert is_masking_supported(env)
    masks = get_action_masks(env)
    np.testing.assert_array_equal(masks.reshape(16, -1), env.action_masks())
    assert env.env_method("action_masks", indices=[2, 5])[0].shape == (2, env.action_space.n)


def test_seed_makes_runs_identical() -> None:
    def run() -> np.ndarray:
        env = TwinVecEnv(n_envs=32)
        env.seed(5)
        obs = [env.reset()]
        rng = np.random.default_rng(0)
        for _ in range(30):
            obs.append(env.step(rng.integers(0, env.action_space.n, 32))[0])
        return np.stack(obs)

    np.testing.assert_array_equal(run(), run())


@pytest.mark.parametrize(
    ("algo", "kwargs"),
    [
        (PPO, {"n_steps": 8, "batch_size": 64, "n_epochs": 2}),
        (A2C, {"n_steps": 4}),
        (DQN, {"learning_starts": 64, "buffer_size": 2_000, "train_freq": 1}),
        (MaskablePPO, {"n_steps": 8, "batch_size": 64, "n_epochs": 2}),
    ],
)
def test_sb3_algorithms_train_on_it(algo, kwargs) -> None:
    env = TwinVecEnv(n_envs=32, seed=0)
    model = algo("MlpPolicy", env, seed=0, device="cpu", **kwargs)
    model.learn(512)
    assert model.num_timesteps >= 512
    assert len(model.ep_info_buffer) > 0  # SB3 saw finished episodes with returns
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (32,)
