from __future__ import annotations

import gymnasium
import numpy as np

import nba.envs  # noqa: F401  (registers the ids)
from nba.envs import JourneyVectorEnv


def test_make_vec_vector_entry_point_is_native() -> None:
    env = gymnasium.make_vec(
        "nba/CustomerJourney-v0", num_envs=64, vectorization_mode="vector_entry_point"
    )
    assert isinstance(env.unwrapped, JourneyVectorEnv)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, env.single_observation_space.shape[0])
    assert info["action_mask"].shape == (64, env.single_action_space.n)
    assert env.observation_space.contains(obs)


def test_same_step_autoreset_reports_final_obs_and_episodes() -> None:
    env = JourneyVectorEnv(num_envs=16, terminate_on_churn=False)
    env.reset(seed=3)
    for _ in range(env.batch.horizon):
        obs, _, terminated, truncated, info = env.step(np.zeros(16, dtype=np.int64))
    assert terminated.all() and not truncated.any()
    assert info["_final_obs"].all() and info["_episode"].all()
    assert (info["episode"]["l"] == env.batch.horizon).all()
    time_left = env.batch.features.offsets["time_left"]
    assert all(final[time_left] == 0.0 for final in info["final_obs"])
    assert (obs[:, time_left] == 1.0).all()


def test_seeded_vector_runs_repeat() -> None:
    def run(seed: int) -> np.ndarray:
        env = JourneyVectorEnv(num_envs=8)
        obs, _ = env.reset(seed=seed)
        rewards = [env.step(np.ones(8, dtype=np.int64))[1] for _ in range(20)]
        return np.concatenate([obs.ravel(), np.concatenate(rewards)])

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
