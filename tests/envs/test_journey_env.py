from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import nba.envs
from nba.envs import JourneyEnv
from nba.errors import NBAValidationError


def test_passes_gymnasium_and_sb3_checkers_without_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(gymnasium.make("nba/CustomerJourney-v0").unwrapped)
        sb3_check_env(JourneyEnv(), warn=True)
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", nba.envs.ENV_IDS)
def test_seeded_rollouts_are_identical(env_id: str) -> None:
    def rollout(seed: int) -> tuple[np.ndarray, list[float]]:
        env = gymnasium.make(env_id)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        observations, rewards = [obs], []
        for _ in range(120):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            observations.append(obs)
            rewards.append(reward)
            if terminated or truncated:
                obs, _ = env.reset()
                observations.append(obs)
        return np.stack(observations), rewards

    first, second, other = rollout(7), rollout(7), rollout(8)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]
    assert not np.array_equal(first[0], other[0])


def test_episode_ends_at_horizon_with_time_in_observation() -> None:
    env = JourneyEnv(terminate_on_churn=False)
    obs, info = env.reset(seed=0)
    time_left = env.features.offsets["time_left"]
    assert obs[time_left] == 1.0 and info["action_mask"][0]
    steps, terminated = 0, False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(0)
        steps += 1
        assert not truncated and np.isfinite(reward)
    assert steps == env.twin.scenario.horizon_days and obs[time_left] == 0.0


def test_masks_and_blocked_actions() -> None:
    env = JourneyEnv()
    env.reset(seed=3)
    mask = env.action_masks()
    assert mask.dtype == bool and mask.shape == (env.action_space.n,) and mask[0]
    # contact until something is blocked: it is reported, not executed
    for _ in range(10):
        action = int(np.flatnonzero(mask)[-1]) if mask[1:].any() else 1
        _, _, terminated, _, info = env.step(action if mask[action] else 1)
        if info["blocked"]:
            assert info["executed_action"] == 0
            break
        mask = info["action_mask"]
        if terminated:
            env.reset()
    else:
        pytest.fail("contacting every day never hit a contact rule")


def test_invalid_action_and_render() -> None:
    env = JourneyEnv(render_mode="ansi")
    env.reset(seed=0)
    with pytest.raises(NBAValidationError, match="action"):
        env.step(99)
    assert "stage=" in env.render()
    with pytest.raises(NBAValidationError, match="render_mode"):
        JourneyEnv(render_mode="human")
