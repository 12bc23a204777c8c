"""What knowing each customer's own levels is worth, exactly.

A scenario with individual levels (``heterogeneity:``) has an optimum that may treat a light
and a heavy buyer of the same persona and stage differently. Without the levels, the same
scenario describes the mean customer of each persona, and its optimum is the best a planner
can do who ignores them. Applied to every level alike, that plan is a level-blind policy of
the scenario with levels; the difference between the two exact values is what the levels
are worth per customer (a lower bound on what *knowing* them is worth, since a cleverer
blind plan may exist, and an upper bound on what forgetting them costs that plan).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba import optimal
from nba.errors import NBAValidationError
from nba.kernel import build_kernel
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import StateSpace
from nba.types import FloatArray, IntArray


@dataclass(frozen=True)
class LevelValue:
    """Exact values per customer of the scenario with levels."""

    optimum: float  # the optimum, which knows each customer's levels
    level_blind: float  # the optimum without levels, applied to every level alike
    no_action: float
    by_rate_level: FloatArray  # (Lr, 3) the three values for the customers of each rate level

    @property
    def worth(self) -> float:
        """Per customer: the optimum's value over the level-blind plan's."""
        return self.optimum - self.level_blind

    @property
    def share_of_gain(self) -> float:
        """:attr:`worth` as a share of the optimum's gain over no action."""
        return self.worth / (self.optimum - self.no_action)


def without_levels(scenario: Scenario) -> Scenario:
    """``scenario`` for the mean customer of each persona: one level of each."""
    return scenario.updated({"heterogeneity": None})


def level_blind_policy(scenario: Scenario, plain_policy: IntArray) -> IntArray:
    """(T, S) ``plain_policy`` of :func:`without_levels` (T, S'), read in each state of
    ``scenario`` as if the customer were at level 0 (one level: all levels alike)."""
    space = StateSpace(ScenarioArrays.from_scenario(scenario))
    plain = StateSpace(ScenarioArrays.from_scenario(without_levels(scenario)))
    states = space.all_states()
    states.rate_level[:] = 0
    states.dropout_level[:] = 0
    blind: IntArray = plain_policy[:, plain.encode(states)]
    return blind


def value_of_levels(scenario: Scenario) -> LevelValue:
    """Exact optimum, level-blind and no-action values of ``scenario`` (two kernels)."""
    if scenario.heterogeneity is None:
        raise NBAValidationError(f"scenario {scenario.name!r}: has no heterogeneity block")
    kernel = build_kernel(scenario)
    plain = optimal.solve(build_kernel(without_levels(scenario)))
    solutions = (
        optimal.solve(kernel),
        optimal.evaluate(kernel, level_blind_policy(scenario, plain.policy)),
        optimal.evaluate(kernel, optimal.no_action_policy(kernel)),
    )
    arrays = ScenarioArrays.from_scenario(scenario)
    level = StateSpace(arrays).all_states().rate_level
    start = np.stack([kernel.initial * (level == k) for k in range(arrays.n_rate_levels)])
    start /= start.sum(axis=1, keepdims=True)
    by_level = np.stack([start @ solution.values[0] for solution in solutions], axis=1)
    best, blind, nothing = (solution.value for solution in solutions)
    return LevelValue(best, blind, nothing, by_rate_level=by_level)
