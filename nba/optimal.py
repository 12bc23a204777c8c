"""Exact finite-horizon dynamic programming on a scenario's kernel: the yardstick for learners.

The objective is the one evaluation measures: the expected discounted sum of daily rewards over
``horizon`` days, from the scenario's start distribution, under the contact rules of each day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba.errors import NBAValidationError
from nba.kernel import TransitionKernel
from nba.types import FloatArray, IntArray


@dataclass(frozen=True)
class PolicySolution:
    """Values and actions of a (time-dependent, deterministic) tabular policy."""

    values: FloatArray  # (T + 1, S): value-to-go at the start of each day; row T is zero
    policy: IntArray  # (T, S) action taken in each state on each day
    value: float  # expected value per customer from the start distribution

    def act(self, day: IntArray, state_index: IntArray) -> IntArray:
        """Actions for customers on the given days in the given states."""
        actions: IntArray = self.policy[np.minimum(day, self.policy.shape[0] - 1), state_index]
        return actions


def solve(kernel: TransitionKernel) -> PolicySolution:
    """Backward induction: the optimal policy and its exact value.

    Ties go to the lowest action index, so "no action" (index 0) wins any tie.
    """
    n_states = kernel.n_states
    values = np.zeros((kernel.horizon + 1, n_states))
    policy = np.zeros((kernel.horizon, n_states), dtype=np.int64)
    for t in range(kernel.horizon - 1, -1, -1):
        q = _q_values(kernel, values[t + 1])
        q = np.where(kernel.mask_at(t), q, -np.inf)
        policy[t] = np.argmax(q, axis=1)
        values[t] = q[np.arange(n_states), policy[t]]
    return PolicySolution(values=values, policy=policy, value=float(kernel.initial @ values[0]))


def evaluate(kernel: TransitionKernel, policy: IntArray) -> PolicySolution:
    """Exact value of a tabular policy ``policy[t, s]`` (a (S,) array is used on every day)."""
    table = np.asarray(policy, dtype=np.int64)
    if table.ndim == 1:
        table = np.broadcast_to(table, (kernel.horizon, table.shape[0]))
    if table.shape != (kernel.horizon, kernel.n_states):
        raise NBAValidationError(
            f"policy: expected shape ({kernel.horizon}, {kernel.n_states}), got {table.shape}"
        )
    states = np.arange(kernel.n_states)
    for t in range(kernel.horizon):
        if not kernel.mask_at(t)[states, table[t]].all():
            bad = int(np.flatnonzero(~kernel.mask_at(t)[states, table[t]])[0])
            raise NBAValidationError(
                f"policy[{t}, {bad}]: action {int(table[t, bad])} is not allowed in that state"
            )
    values = np.zeros((kernel.horizon + 1, kernel.n_states))
    for t in range(kernel.horizon - 1, -1, -1):
        # one sparse product for every action beats slicing the policy's rows each day
        q = _q_values(kernel, values[t + 1])
        values[t] = q[states, table[t]]
    return PolicySolution(values=values, policy=table, value=float(kernel.initial @ values[0]))


def no_action_policy(kernel: TransitionKernel) -> IntArray:
    return np.zeros((kernel.horizon, kernel.n_states), dtype=np.int64)


def _q_values(kernel: TransitionKernel, next_values: FloatArray) -> FloatArray:
    continuation = (kernel.transition @ next_values).reshape(kernel.n_states, kernel.n_actions)
    q: FloatArray = kernel.reward + kernel.discount * continuation  # scipy's product is untyped
    return q
