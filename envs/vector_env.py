"""``JourneyVectorEnv``: the Gymnasium ``VectorEnv`` made by ``gymnasium.make_vec(...,
vectorization_mode="vector_entry_point")``; N customers in one numpy step.

Autoreset mode is ``SAME_STEP``: a finished customer is reset within the step that ended it;
``info["final_obs"]`` / ``info["_final_obs"]`` hold its last observation, and
``info["episode"]`` (``r``, ``l``, with ``_episode`` flags) its statistics. ``info["action_mask"]``
is the (N, A) mask for the next step; ``action_masks()`` returns the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from nba.envs.batch import TwinBatch
from nba.features import Observation
from nba.scenario import Scenario
from nba.types import BoolArray


class JourneyVectorEnv(VectorEnv):
    """``num_envs`` customers of one scenario; see the module docstring for the info keys."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int,
        scenario: Scenario | str = "retail",
        stagger: bool = False,
        terminate_on_churn: bool | None = None,
        render_mode: str | None = None,
        observation: Observation = "state",
    ) -> None:
        self.batch = TwinBatch(
            scenario,
            num_envs,
            stagger=stagger,
            terminate_on_churn=terminate_on_churn,
            observation=observation,
        )
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.single_observation_space = spaces.Box(
            0.0, 1.0, (self.batch.features.size,), dtype=np.float32
        )
        self.single_action_space = spaces.Discrete(self.batch.n_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        if isinstance(seed, list):
            seed = seed[0]
        super().reset(seed=seed)
        obs = self.batch.reset(seed=self.np_random)
        return obs, {"action_mask": self.action_masks()}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        step = self.batch.step(np.asarray(actions).reshape(self.num_envs))
        info: dict[str, Any] = {"action_mask": self.action_masks()}
        if step.done_rows.size:
            done = np.zeros(self.num_envs, dtype=bool)
            done[step.done_rows] = True
            final_obs = np.full(self.num_envs, None, dtype=object)
            for k, row in enumerate(step.done_rows.tolist()):
                final_obs[row] = step.final_obs[k]
            episode_return = np.zeros(self.num_envs)
            episode_length = np.zeros(self.num_envs, dtype=np.int64)
            episode_return[step.done_rows] = step.episode_return
            episode_length[step.done_rows] = step.episode_length
            info.update(
                final_obs=final_obs,
                _final_obs=done,
                episode={"r": episode_return, "l": episode_length, "_r": done, "_l": done},
                _episode=done,
            )
        truncated = np.zeros(self.num_envs, dtype=bool)
        return step.obs, step.reward.astype(np.float64), step.terminated, truncated, info

    def action_masks(self) -> BoolArray:
        return self.batch.action_masks()
