"""``JourneyEnv``: one customer's journey as a Gymnasium env (the twin with N = 1)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from nba.errors import NBAValidationError
from nba.features import FeatureBuilder, Observation
from nba.observation import BeliefObserver
from nba.scenario import Scenario
from nba.twin import CustomerTwin
from nba.types import BoolArray


class JourneyEnv(gym.Env[np.ndarray, np.int64]):
    """One customer, one action a day, the scenario's horizon as the episode.

    Observation: :class:`~nba.features.FeatureBuilder` features (float32 in [0, 1], time left
    included). Actions: ``Discrete(A)``, 0 = no action. A disallowed action is not executed
    (the customer gets no action; ``info["blocked"]`` says so). ``action_masks()`` serves
    MaskablePPO. The episode terminates at the horizon or when the customer churns.

    :param scenario: built-in scenario name, YAML path or :class:`Scenario`.
    :param terminate_on_churn: end the episode when the customer churns (absorbing state);
        default: with the full state only (a company does not see a churn).
    :param observation: ``"state"`` or ``"belief"`` (what a company sees: the observed state
        and a belief over persona and stage kept from the day's events, :mod:`nba.observation`).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(
        self,
        scenario: Scenario | str = "retail",
        render_mode: str | None = None,
        terminate_on_churn: bool | None = None,
        observation: Observation = "state",
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise NBAValidationError(
                f"render_mode: expected one of {self.metadata['render_modes']}"
            )
        self.twin = CustomerTwin(scenario)
        self.features = FeatureBuilder(self.twin.arrays, observation=observation)
        self.observer = (
            BeliefObserver(self.twin.arrays, self.features) if observation == "belief" else None
        )
        self.render_mode = render_mode
        # a churn is not observed: belief episodes run to the horizon unless told otherwise
        self.terminate_on_churn = (
            observation == "state" if terminate_on_churn is None else terminate_on_churn
        )
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.features.size,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.twin.n_actions)
        self._last_info: dict[str, Any] = {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.twin.rng = self.np_random  # all randomness from the env's generator
        self.twin.reset(1)
        if self.observer is not None:
            self.observer.reset(self.twin.state)
        self._last_info = {"action_mask": self.action_masks()}
        return self._observation(), dict(self._last_info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise NBAValidationError(f"action: {action!r} is not in {self.action_space}")
        context = None if self.observer is None else self.observer.context(self.twin.state)
        result = self.twin.step(np.array([int(action)], dtype=np.int64))
        if self.observer is not None and context is not None:
            self.observer.update(context, result.bought, result.executed)
        terminated = bool(self.twin.day[0] >= self.twin.scenario.horizon_days)
        churned = bool(self.twin.state.stage[0] == self.twin.arrays.churn_stage)
        terminated = terminated or (self.terminate_on_churn and churned)
        self._last_info = {
            "action_mask": self.action_masks(),
            "executed_action": int(result.executed[0]),
            "blocked": bool(result.blocked[0]),
            "bought": bool(result.bought[0]),
            "revenue": float(result.revenue[0]),
            "stage": self.twin.scenario.stage_names[int(self.twin.state.stage[0])],
        }
        return (
            self._observation(),
            float(result.reward[0]),
            terminated,
            False,
            dict(self._last_info),
        )

    def action_masks(self) -> BoolArray:
        """(A,) actions the contact rules allow today."""
        return self.twin.action_masks()[0]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        state, sc = self.twin.state, self.twin.scenario
        return (
            f"day {int(self.twin.day[0])}/{sc.horizon_days} "
            f"persona={sc.persona_names[int(state.persona[0])]} "
            f"stage={sc.stage_names[int(state.stage[0])]} pressure={int(state.pressure[0])} "
            f"habit={bool(state.habit[0])} opted_out={bool(state.opted_out[0])}"
        )

    def _observation(self) -> np.ndarray:
        belief = None if self.observer is None else self.observer.belief
        return self.features.build(self.twin.state, self.twin.day, belief=belief)[0]
