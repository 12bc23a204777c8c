"""The episode bookkeeping shared by every vectorised env: one twin, N customers, auto-reset.

An episode ends (``terminated``) when a customer reaches the horizon (time is in the
observation, so this is a true terminal state, not a truncation) or churns (absorbing, worth
nothing more). Finished customers are replaced by fresh draws in the same step, and their
last observation and episode statistics are handed back. Episode clocks can be staggered at
reset so that customers do not all finish on the same step.

``observation="belief"`` gives what a company sees (:class:`~nba.observation.BeliefObserver`):
the observed state and a belief over persona, stage and levels, moved by each day's purchases.
A churn is not seen, so belief episodes run to the horizon by default (``terminate_on_churn``
off): a policy must learn that contacting a customer who may have left costs money.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba.errors import NBAValidationError
from nba.features import FeatureBuilder, Observation
from nba.observation import BeliefObserver
from nba.scenario import Scenario
from nba.twin import CustomerTwin, StepResult
from nba.types import BoolArray, FloatArray, IntArray, SeedLike


@dataclass
class BatchStep:
    """One step of N customers; ``done_rows`` index the customers whose episode just ended."""

    obs: FloatArray  # (N, F) float32, already reset for finished customers
    reward: FloatArray  # (N,) float32
    terminated: BoolArray  # (N,)
    done_rows: IntArray
    final_obs: FloatArray  # (len(done_rows), F)
    episode_return: FloatArray  # (len(done_rows),) undiscounted
    episode_length: IntArray  # (len(done_rows),)
    result: StepResult


class TwinBatch:
    """N customers of one scenario stepped together, with episodes and auto-reset."""

    def __init__(
        self,
        scenario: Scenario | str,
        n: int,
        *,
        seed: SeedLike = None,
        stagger: bool = True,
        terminate_on_churn: bool | None = None,
        expected_rewards: bool = False,
        observation: Observation = "state",
    ) -> None:
        if not isinstance(n, int | np.integer) or n < 1:
            raise NBAValidationError(f"n_envs: expected a positive integer, got {n!r}")
        self.twin = CustomerTwin(scenario, seed=seed)
        self.features = FeatureBuilder(self.twin.arrays, observation=observation)
        self.observer = (
            BeliefObserver(self.twin.arrays, self.features) if observation == "belief" else None
        )
        self.n = int(n)
        self.horizon = self.twin.scenario.horizon_days
        self.stagger = stagger
        if terminate_on_churn is None:
            terminate_on_churn = observation == "state"
        self.terminate_on_churn = terminate_on_churn
        self.expected_rewards = expected_rewards
        self._episode_return = np.zeros(self.n)
        self._episode_length = np.zeros(self.n, dtype=np.int64)
        self._obs = np.zeros((self.n, self.features.size), dtype=np.float32)

    @property
    def n_actions(self) -> int:
        return self.twin.n_actions

    def reset(self, seed: SeedLike = None) -> FloatArray:
        self.twin.reset(self.n, seed=seed)
        if self.stagger:
            self.twin.set_days(self.twin.rng.integers(0, self.horizon, size=self.n))
        self._episode_return[:] = 0.0
        self._episode_length[:] = 0
        if self.observer is not None:
            self.observer.reset(self.twin.state)
        return self._observe(out=self._obs).copy()

    def _observe(self, rows: IntArray | None = None, out: FloatArray | None = None) -> FloatArray:
        """Observations of every customer (or of ``rows``), as the policy sees them."""
        state, day = self.twin.state, self.twin.day
        if rows is not None:
            state, day = state.take(rows), day[rows]
        if self.observer is None:
            return self.features.build(state, day, out=out)
        belief = self.observer.belief if rows is None else self.observer.belief[rows]
        return self.features.build(state, day, out=out, belief=belief)

    def action_masks(self) -> BoolArray:
        return self.twin.action_masks()

    def step(self, actions: IntArray) -> BatchStep:
        context = None if self.observer is None else self.observer.context(self.twin.state)
        result = self.twin.step(actions)
        if self.observer is not None and context is not None:
            self.observer.update(context, result.bought, result.executed)
        reward = result.expected_reward if self.expected_rewards else result.reward
        self._episode_return += reward
        self._episode_length += 1
        terminated = self.twin.day >= self.horizon
        if self.terminate_on_churn:
            terminated |= self.twin.state.stage == self.twin.arrays.churn_stage
        done_rows = np.flatnonzero(terminated)
        final_obs = self._observe(done_rows)
        episode_return = self._episode_return[done_rows].copy()
        episode_length = self._episode_length[done_rows].copy()
        if done_rows.size:
            self.twin.restart(done_rows)
            if self.observer is not None:
                self.observer.restart(done_rows, self.twin.state)
            self._episode_return[done_rows] = 0.0
            self._episode_length[done_rows] = 0
        obs = self._observe(out=self._obs).copy()
        return BatchStep(
            obs=obs,
            reward=reward.astype(np.float32),
            terminated=terminated,
            done_rows=done_rows,
            final_obs=final_obs,
            episode_return=episode_return,
            episode_length=episode_length,
            result=result,
        )
