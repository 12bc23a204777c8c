"""Training masks: the observation-based rule mask equals the twin's, and learners honour it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO

from nba.envs import TwinVecEnv
from nba.features import FeatureBuilder
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.training.masking import (
    MaskedActorCriticPolicy,
    MaskedDQN,
    MaskedDQNPolicy,
    RuleMask,
    TorchRuleMask,
    rule_mask_spec,
)
from nba.twin import CustomerTwin


@pytest.fixture(scope="module")
def spec() -> dict:
    return rule_mask_spec(load_scenario("retail"))


def _visited(n: int = 3_000, days: int = 30, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Observations and twin masks along random trajectories (varied pressure and clocks)."""
    twin = CustomerTwin(load_scenario("retail"), seed=seed)
    features = FeatureBuilder(twin.arrays)
    twin.reset(n, seed=seed)
    rng = np.random.default_rng(seed)
    obs, masks = [], []
    for _ in range(days):
        mask = twin.action_masks()
        obs.append(features.build(twin.state, twin.day))
        masks.append(mask)
        allowed = np.flatnonzero(mask[0])
        actions = np.where(rng.random(n) < 0.5, rng.integers(0, mask.shape[1], n), 0)
        twin.step(np.where(mask[np.arange(n), actions], actions, allowed[0]))
    return np.concatenate(obs), np.concatenate(masks)


def test_rule_mask_from_observations_equals_the_twins_masks(spec: dict) -> None:
    obs, masks = _visited()
    assert (~masks).any() and masks[:, 1:].any()  # the sample exercises both verdicts
    np.testing.assert_array_equal(RuleMask(spec)(obs), masks)
    torch_mask = TorchRuleMask(spec)(torch.as_tensor(obs)).numpy()
    np.testing.assert_array_equal(torch_mask, masks)


def _assert_equals_the_twins_masks(scenario: Scenario, weekdays: range | tuple[int, ...]) -> None:
    """The observation-based mask against the twin's tables, for every state on ``weekdays``."""
    twin = CustomerTwin(scenario)
    features = FeatureBuilder(twin.arrays)
    states = twin.space.all_states()
    rule_mask = RuleMask(rule_mask_spec(scenario))
    for weekday in weekdays:
        obs = features.build(
            states, np.zeros(len(states), dtype=np.int64), weekday=np.full(len(states), weekday)
        )
        np.testing.assert_array_equal(rule_mask(obs), twin.tables.masks[weekday])


def test_rule_mask_covers_every_state_and_weekday() -> None:
    _assert_equals_the_twins_masks(load_scenario("retail"), range(7))


@pytest.mark.parametrize("algo", [PPO, A2C])
def test_actor_critic_never_samples_a_forbidden_action(algo: type, spec: dict) -> None:
    env = TwinVecEnv("retail", n_envs=64, seed=0)
    model = algo(
        MaskedActorCriticPolicy,
        env,
        n_steps=4,
        seed=0,
        device="cpu",
        policy_kwargs={"rule_mask": spec},
    )
    model.learn(64 * 8)
    obs, masks = _visited(n=500, days=10, seed=3)
    actions, _ = model.predict(obs, deterministic=False)
    assert masks[np.arange(len(actions)), actions].all()
    distribution = model.policy.get_distribution(torch.as_tensor(obs))
    probabilities = distribution.distribution.probs.detach().numpy()
    assert probabilities[~masks].max() < 1e-12  # no weight at all on forbidden actions
    assert np.isfinite(distribution.entropy().detach().numpy()).all()


def test_dqn_explores_and_acts_within_the_rules(spec: dict) -> None:
    env = TwinVecEnv("retail", n_envs=32, seed=0)
    model = MaskedDQN(
        MaskedDQNPolicy,
        env,
        learning_starts=64,
        buffer_size=5_000,
        batch_size=32,
        seed=0,
        device="cpu",
        policy_kwargs={"rule_mask": spec},
    )
    model.learn(32 * 10)
    obs, masks = _visited(n=500, days=10, seed=4)
    model.exploration_rate = 1.0
    explored, _ = model.predict(obs, deterministic=False)
    greedy, _ = model.predict(obs, deterministic=True)
    rows = np.arange(len(obs))
    assert masks[rows, explored].all() and masks[rows, greedy].all()
    assert len(np.unique(explored)) > 3  # exploration spreads over the allowed actions
    replay = model.replay_buffer.actions[: model.replay_buffer.pos].reshape(-1)
    replay_obs = model.replay_buffer.observations[: model.replay_buffer.pos].reshape(
        -1, obs.shape[1]
    )
    assert RuleMask(spec)(replay_obs)[np.arange(len(replay)), replay].all()


def test_rule_mask_of_a_one_persona_scenario() -> None:
    data = load_scenario("retail").to_dict()
    data["personas"] = [{**data["personas"][1], "share": 1.0}]  # a one-column persona block
    _assert_equals_the_twins_masks(Scenario.from_dict(data), (0, 6))
