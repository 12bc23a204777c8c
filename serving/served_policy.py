"""A served policy as the twin evaluates it: the scorer's network and policy head, greedy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nba import policy_head
from nba.types import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:
    from nba.serving.scorer import PolicyScorer

_CHUNK = 262_144  # rows per network call when evaluating many states: bounds the activations


@dataclass
class ServedPolicy:
    """An exported policy behind :class:`nba.policies.Policy`, greedy as served.

    Decides through :meth:`PolicyScorer.decide_observations` (the scorer's network and policy
    head), so the twin values exactly what the scorer serves: training's evaluation, the exact
    share, the promotion gate and ``nba evaluate --model`` all use it.
    """

    scorer: PolicyScorer
    name: str = "model"

    @property
    def observation(self) -> str:
        """What the policy acts on (``"state"`` or ``"belief"``): the layout it was trained on;
        the twin's rollouts feed it the same (:func:`nba.observation.observation_of`)."""
        return self.scorer.features.observation

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        # an export from before a trailing feature block reads the prefix it was trained on
        obs = obs[:, : self.scorer.features.size]
        actions = np.empty(obs.shape[0], dtype=np.int64)
        for start in range(0, obs.shape[0], _CHUNK):
            rows = slice(start, start + _CHUNK)
            actions[rows] = self.scorer.decide_observations(obs[rows], mask[rows]).greedy
        return actions, policy_head.one_hot(actions, mask.shape[1])
