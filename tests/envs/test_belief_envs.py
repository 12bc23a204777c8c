"""The envs with belief observations: what a company sees, kept current day by day."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import nba.envs  # noqa: F401  (registers the ids)
from nba.envs import JourneyEnv, JourneyVectorEnv, TwinVecEnv
from nba.features import LATENT, FeatureBuilder


def _random_allowed(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniform pick among each row's allowed actions."""
    return np.where(mask, rng.random(mask.shape), -1.0).argmax(axis=1)


def _joint(builder: FeatureBuilder, obs: np.ndarray) -> np.ndarray:
    start = builder.offsets["belief"]
    n_types, n_stages = builder.latent_shape
    return obs[..., start : start + n_types * n_stages]


def test_vec_env_belief_observations_run_to_the_horizon() -> None:
    n = 512
    env = TwinVecEnv("retail", n_envs=n, seed=0, stagger=False, observation="belief")
    builder = FeatureBuilder(env.twin.arrays, observation="belief")
    assert env.observation_space.shape == (builder.size,)
    assert builder.size == FeatureBuilder(env.twin.arrays).size + 4 * 7
    obs = env.reset()
    assert obs.shape == (n, builder.size) and obs.dtype == np.float32
    rng = np.random.default_rng(1)
    horizon = env.batch.horizon
    churned_alive = 0
    for day in range(1, horizon + 1):
        obs, _, dones, infos = env.step(_random_allowed(env.action_masks(), rng))
        assert obs.min() >= 0.0 and obs.max() <= 1.0
        np.testing.assert_allclose(_joint(builder, obs).sum(axis=1), 1.0, atol=1e-5)
        if day < horizon:
            assert not dones.any(), day  # a churn is not seen: no early terminations
            churned_alive += int((env.twin.state.stage == env.twin.arrays.churn_stage).sum())
    assert churned_alive > 0  # customers did churn on the way, and their episodes went on
    assert dones.all()
    final = np.stack([info["terminal_observation"] for info in infos])
    assert final.shape == (n, builder.size)
    np.testing.assert_allclose(_joint(builder, final).sum(axis=1), 1.0, atol=1e-5)
    assert (final[:, builder.offsets["time_left"]] == 0.0).all()
    assert all(info["episode"]["l"] == horizon for info in infos)
    # the new customers start from the prior: their persona is certain, their stage is not
    persona = obs[:, builder.offsets["persona"] : builder.offsets["persona"] + 4]
    np.testing.assert_allclose(persona.max(axis=1), 1.0, atol=1e-6)
    stage = obs[:, builder.offsets["stage"] : builder.offsets["stage"] + 7]
    assert (stage.max(axis=1) < 1.0).all()
    assert (obs[:, builder.offsets["time_left"]] == 1.0).all()


def test_state_observations_still_end_at_a_churn_by_default() -> None:
    env = TwinVecEnv("retail", n_envs=256, seed=0, stagger=False)
    env.reset()
    rng = np.random.default_rng(2)
    early = 0
    for _ in range(env.batch.horizon - 1):
        _, _, dones, _ = env.step(_random_allowed(env.action_masks(), rng))
        early += int(dones.sum())
    assert early > 0
    belief = TwinVecEnv("retail", n_envs=256, seed=0, observation="belief", terminate_on_churn=True)
    assert belief.batch.terminate_on_churn


def test_journey_env_with_beliefs_passes_the_checkers() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(gymnasium.make("nba/CustomerJourney-v0", observation="belief").unwrapped)
        sb3_check_env(JourneyEnv(observation="belief"), warn=True)
    assert [str(w.message) for w in caught] == []


def test_gymnasium_make_with_beliefs() -> None:
    env = gymnasium.make("nba/CustomerJourney-v0", observation="belief")
    journey = env.unwrapped
    assert isinstance(journey, JourneyEnv)
    builder = FeatureBuilder(journey.twin.arrays, observation="belief")
    assert env.observation_space.shape == (builder.size,)
    obs, info = env.reset(seed=0)
    assert obs.shape == (builder.size,) and env.observation_space.contains(obs)
    env.action_space.seed(0)
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(
            int(np.flatnonzero(info["action_mask"])[-1])  # the last allowed: contacts when it may
        )
        assert env.observation_space.contains(obs)
        assert _joint(builder, obs).sum() == pytest.approx(1.0, abs=1e-5)
        steps += 1
    assert steps == journey.features.horizon  # churn or not, to the horizon


def test_journey_vector_env_with_beliefs() -> None:
    env = JourneyVectorEnv(num_envs=32, observation="belief")
    builder = env.batch.features
    assert builder.observation == "belief"
    assert env.single_observation_space.shape == (builder.size,)
    obs, info = env.reset(seed=4)
    assert env.observation_space.contains(obs)
    rng = np.random.default_rng(4)
    for _ in range(builder.horizon):
        obs, _, terminated, truncated, info = env.step(_random_allowed(info["action_mask"], rng))
    assert terminated.all() and not truncated.any()
    final = np.stack(info["final_obs"])
    assert final.shape == (32, builder.size)
    np.testing.assert_allclose(_joint(builder, final).sum(axis=1), 1.0, atol=1e-5)
    vec = gymnasium.make_vec(
        "nba/CustomerJourney-v0",
        num_envs=8,
        vectorization_mode="vector_entry_point",
        observation="belief",
    )
    assert vec.single_observation_space.shape == (builder.size,)


@pytest.mark.parametrize("scenario", ["retail", "retail_levels"])
def test_the_belief_never_peeks_at_hidden_parts(scenario: str) -> None:
    """Pairs of customers alike in all a company sees but their stage (and levels) see the same
    observations for as long as their observed histories agree."""
    pairs = 200
    env = TwinVecEnv(scenario, n_envs=2 * pairs, seed=5, stagger=False, observation="belief")
    env.reset()
    twin = env.twin
    state = twin.state
    for name, values in state.items():
        if name not in LATENT:
            values[1::2] = values[0::2]
    state.persona[1::2] = state.persona[0::2]  # the persona is seen through consent
    state.stage[0::2], state.stage[1::2] = 0, 3  # aware vs loyal
    if twin.arrays.n_rate_levels > 1:
        state.rate_level[0::2], state.rate_level[1::2] = 0, twin.arrays.n_rate_levels - 1
    env.batch.observer.reset(state)  # the prior of the customers as they now are
    rng = np.random.default_rng(6)
    alike = np.ones(pairs, dtype=bool)
    for _ in range(30):
        mask = env.action_masks()
        actions = np.repeat(_random_allowed(mask[0::2], rng), 2)
        obs, _, dones, _ = env.step(actions)
        assert not dones.any()
        result = twin.last_step
        assert result is not None
        alike &= result.bought[0::2] == result.bought[1::2]
        alike &= result.executed[0::2] == result.executed[1::2]
        for name, values in twin.state.items():
            if name not in LATENT:
                same = values[0::2] == values[1::2]
                alike &= same.reshape(pairs, -1).all(axis=1)
        np.testing.assert_array_equal(obs[0::2][alike], obs[1::2][alike])
    hidden_apart = twin.state.stage[0::2] != twin.state.stage[1::2]
    assert (alike & hidden_apart).sum() >= 20  # the test saw many pairs differ unseen
    # the full-state env does see the difference
    plain = FeatureBuilder(twin.arrays).build(twin.state, twin.day)
    assert not np.array_equal(plain[0::2][alike & hidden_apart], plain[1::2][alike & hidden_apart])
