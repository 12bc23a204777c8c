"""Baseline policies behind one small protocol: ``act(obs, mask) -> (actions, probabilities)``.

Every policy is batched: ``obs`` is (N, F) from :class:`~nba.features.FeatureBuilder`, ``mask``
is (N, A) from the contact rules, and it returns (N,) actions with (N, A) action probabilities
(one-hot for deterministic policies; the logging propensities off-policy evaluation needs).
Policies that need the true state decode it from the observation, which is exact. A trained
model is evaluated as it is served: :func:`nba.serving.export.served_policy` (the policy head).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from nba import optimal
from nba.errors import UnknownNameError
from nba.features import FeatureBuilder
from nba.policy_head import one_hot, sample, uniform
from nba.twin import CustomerTwin
from nba.types import BoolArray, FloatArray, IntArray, SeedLike


@runtime_checkable
class Policy(Protocol):
    """Anything that chooses actions for a batch of customers."""

    name: str

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]: ...


@dataclass
class NoActionPolicy:
    """Never contact anyone: the floor every intervention must beat."""

    name: str = "no_action"

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        actions = np.zeros(mask.shape[0], dtype=np.int64)
        return actions, one_hot(actions, mask.shape[1])


@dataclass
class RandomPolicy:
    """Uniform among the actions the rules allow (including "no action")."""

    seed: SeedLike = None
    name: str = "random"
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        probabilities = uniform(mask)
        return sample(probabilities, self.rng).astype(np.int64), probabilities


class _TabularPolicy(ABC):
    """A policy that looks up an action by (day, state index), decoded from the observation."""

    name: str

    def __init__(self, twin: CustomerTwin) -> None:
        self.twin = twin
        self.features = FeatureBuilder(twin.arrays)

    @abstractmethod
    def _lookup(self, day: IntArray, index: IntArray, mask: BoolArray) -> IntArray:
        """Requested actions; disallowed ones are replaced by "no action" in :meth:`act`."""

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        state, day = self.features.decode(obs)
        actions = self._lookup(day, self.twin.space.encode(state), mask)
        actions = np.where(mask[np.arange(mask.shape[0]), actions], actions, 0)
        return actions, one_hot(actions, mask.shape[1])


class JourneyMapPolicy(_TabularPolicy):
    """The static journey map: each stage gets its action on a fixed calendar cadence."""

    name = "journey_map"

    def __init__(self, twin: CustomerTwin) -> None:
        super().__init__(twin)
        sc = twin.scenario
        n_stages = len(sc.stages)
        self.action = np.zeros(n_stages, dtype=np.int64)
        self.every = np.ones(n_stages, dtype=np.int64)
        self.offset = np.zeros(n_stages, dtype=np.int64)
        self.mapped = np.zeros(n_stages, dtype=bool)
        for step in sc.journey_map:
            k = sc.stage_names.index(step.stage)
            self.action[k] = sc.action_names.index(step.action)
            self.every[k], self.offset[k], self.mapped[k] = step.every_days, step.offset_days, True

    def _lookup(self, day: IntArray, index: IntArray, mask: BoolArray) -> IntArray:
        stage = self.twin.space.decode(index).stage
        due = self.mapped[stage] & ((day - self.offset[stage]) % self.every[stage] == 0)
        return np.where(due, self.action[stage], 0)


class MyopicPolicy(_TabularPolicy):
    """Greedy on today's expected reward under the twin's true response model."""

    name = "myopic"

    def __init__(self, twin: CustomerTwin) -> None:
        super().__init__(twin)
        margin = twin.scenario.margin_rate
        self.reward = twin.tables.outcomes.expected_reward(margin).reshape(-1, twin.n_actions)

    def _lookup(self, day: IntArray, index: IntArray, mask: BoolArray) -> IntArray:
        reward = self.reward[self.twin.space.response_key(index)]
        best: IntArray = np.argmax(np.where(mask, reward, -np.inf), axis=1)
        return best


class OptimalPolicy(_TabularPolicy):
    """The exact dynamic-programming optimum of a finite scenario."""

    name = "optimal"

    def __init__(self, twin: CustomerTwin, solution: optimal.PolicySolution | None = None) -> None:
        super().__init__(twin)
        if solution is None:
            from nba.kernel import build_kernel

            solution = optimal.solve(build_kernel(twin))
        self.solution = solution

    def _lookup(self, day: IntArray, index: IntArray, mask: BoolArray) -> IntArray:
        return self.solution.act(day, index)


BASELINES: dict[str, Callable[[CustomerTwin, SeedLike], Policy]] = {
    "no_action": lambda twin, seed: NoActionPolicy(),
    "random": lambda twin, seed: RandomPolicy(seed=seed),
    "journey_map": lambda twin, seed: JourneyMapPolicy(twin),
    "myopic": lambda twin, seed: MyopicPolicy(twin),
    "optimal": lambda twin, seed: OptimalPolicy(twin),
}


def make_baseline(name: str, twin: CustomerTwin, seed: SeedLike = None) -> Policy:
    """A baseline by name: ``no_action``, ``random``, ``journey_map``, ``myopic``, ``optimal``."""
    if name not in BASELINES:
        raise UnknownNameError(
            f"policy: unknown baseline {name!r}; expected one of {list(BASELINES)}"
        )
    return BASELINES[name](twin, seed)
