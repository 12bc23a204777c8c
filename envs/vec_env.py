"""``TwinVecEnv``: a native Stable-Baselines3 ``VecEnv`` stepping N customers in one numpy call.

SB3 semantics: ``reset()`` returns observations only; finished customers are reset in the same
step and their last observation is in ``infos[i]["terminal_observation"]``; ``infos[i]["episode"]``
carries the episode's undiscounted return ``r``, length ``l`` and wall time ``t`` so SB3's logger
shows returns. Action masks come as one (N, A) block: ``env_method("action_masks")`` returns a
one-element list holding it, which MaskablePPO stacks and reshapes to (N, A).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from nba.envs.batch import TwinBatch
from nba.features import Observation
from nba.scenario import Scenario
from nba.types import BoolArray, SeedLike


class TwinVecEnv(VecEnv):
    """N customers of one scenario as SB3 environments.

    :param scenario: built-in scenario name, YAML path or :class:`Scenario`.
    :param n_envs: number of customers stepped together.
    :param seed: seed of the twin's generator (``VecEnv.seed`` overrides it at the next reset).
    :param stagger: start customers at random days of the horizon on reset, so episodes do not
        all end on the same step.
    :param terminate_on_churn: end a customer's episode when it churns.
    :param expected_rewards: pay each day's expected reward given the state and the executed
        action instead of the sampled one. The objective (expected return) is unchanged, and
        the variance from who happened to buy today is gone (Rao-Blackwellisation); stage
        transitions stay sampled. Evaluation always uses sampled rewards.
    :param observation: ``"state"`` (the full state, persona and stage included) or
        ``"belief"`` (what a company sees: the observed state and a belief over the latent
        parts, :mod:`nba.observation`; episodes then end only at the horizon by default).
    """

    render_mode: str | None = None

    def __init__(
        self,
        scenario: Scenario | str = "retail",
        n_envs: int = 1024,
        seed: SeedLike = None,
        stagger: bool = True,
        terminate_on_churn: bool | None = None,
        expected_rewards: bool = False,
        observation: Observation = "state",
    ) -> None:
        self.batch = TwinBatch(
            scenario,
            n_envs,
            seed=seed,
            stagger=stagger,
            terminate_on_churn=terminate_on_churn,
            expected_rewards=expected_rewards,
            observation=observation,
        )
        observation_space = spaces.Box(0.0, 1.0, (self.batch.features.size,), dtype=np.float32)
        super().__init__(n_envs, observation_space, spaces.Discrete(self.batch.n_actions))
        self._actions: np.ndarray | None = None
        self._started = time.perf_counter()

    @property
    def twin(self):
        return self.batch.twin

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        self._reset_seeds()
        self._reset_options()
        self._started = time.perf_counter()
        return self.batch.reset(seed=seed)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        step = self.batch.step(self._actions)
        self._actions = None
        elapsed = round(time.perf_counter() - self._started, 6)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for k, row in enumerate(step.done_rows.tolist()):  # finished customers only
            infos[row] = {
                "terminal_observation": step.final_obs[k],
                "episode": {
                    "r": float(step.episode_return[k]),
                    "l": int(step.episode_length[k]),
                    "t": elapsed,
                },
                "TimeLimit.truncated": False,
            }
        return step.obs, step.reward, step.terminated, infos

    def action_masks(self) -> BoolArray:
        """(N, A) actions the contact rules allow for each customer today."""
        return self.batch.action_masks()

    def close(self) -> None:
        """Nothing to release: the twin is plain numpy arrays."""

    # -- the VecEnv attribute protocol: one twin serves every index -------------------------
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks if indices is None else masks[rows]]
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
