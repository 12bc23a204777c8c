"""The exact transition kernel of a finite scenario, enumerated from the twin's own tables.

``P[s * A + a, s']`` is the probability that a customer in state ``s`` who receives action
``a`` is in state ``s'`` tomorrow; ``R[s, a]`` is the expected reward of that day. Masks are
per weekday because quiet days follow the calendar. Together with the start distribution,
horizon and discount, this is exactly the objective that evaluation measures.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nba.contact_rules import advance_contact_history
from nba.dynamics import N_CASES
from nba.scenario import Scenario
from nba.state import CustomerState, StateSpace
from nba.twin import CustomerTwin, level_shares
from nba.types import BoolArray, FloatArray, IntArray


@dataclass(frozen=True)
class TransitionKernel:
    """A finite-horizon MDP: sparse transitions, expected rewards, masks, start distribution."""

    transition: sp.csr_matrix  # (S * A, S)
    reward: FloatArray  # (S, A)
    masks: BoolArray  # (7, S, A)
    initial: FloatArray  # (S,)
    horizon: int
    discount: float
    start_weekday: int

    @property
    def n_states(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.reward.shape[1])

    def mask_at(self, t: int) -> BoolArray:
        """(S, A) allowed actions on day ``t`` of the horizon."""
        mask: BoolArray = self.masks[(self.start_weekday + t) % 7]
        return mask


def build_kernel(scenario: Scenario | str | CustomerTwin) -> TransitionKernel:
    """Enumerate every (state, action, outcome) of a scenario into a sparse kernel."""
    twin = scenario if isinstance(scenario, CustomerTwin) else CustomerTwin(scenario, tabulate=True)
    arrays, space = twin.arrays, twin.space
    tables = twin.tables  # first: it refuses a space too large for its tables
    n_states, n_actions = space.size, arrays.n_actions

    states = space.all_states()
    pair_state = np.repeat(np.arange(n_states), n_actions)
    pair_action = np.tile(np.arange(n_actions), n_states)
    base = _successor_base(space, states, pair_state, pair_action)
    outcomes = tables.outcomes.take(space.response_key(pair_state) * n_actions + pair_action)
    stage_offsets = np.arange(arrays.n_stages) * space.stride("stage")
    rows = np.arange(pair_state.shape[0])
    # the flags the day's outcome sets (habit, opt-out): every combination of their values
    flags = [c for c in space.components if c.outcome is not None]
    flag_strides = [space.stride(c.name) for c in flags]

    row_parts, col_parts, prob_parts = [], [], []
    for case in range(N_CASES):
        stage_prob = outcomes.case_probs[:, case, None] * outcomes.next_stage[:, case, :]
        flag_on = [getattr(outcomes, str(c.outcome))[:, case] for c in flags]
        for values in itertools.product((0, 1), repeat=len(flags)):
            flag_prob: FloatArray | None = None
            offset = 0
            for value, on, stride in zip(values, flag_on, flag_strides, strict=True):
                p = on if value else 1.0 - on
                flag_prob = p if flag_prob is None else flag_prob * p
                offset = offset + value * stride
            prob = stage_prob if flag_prob is None else stage_prob * flag_prob[:, None]
            keep = prob > 0.0
            columns = base[:, None] + stage_offsets[None, :] + offset
            row_parts.append(np.broadcast_to(rows[:, None], keep.shape)[keep])
            col_parts.append(columns[keep])
            prob_parts.append(prob[keep])
    transition = sp.csr_matrix(
        (np.concatenate(prob_parts), (np.concatenate(row_parts), np.concatenate(col_parts))),
        shape=(n_states * n_actions, n_states),
    )
    transition.sum_duplicates()
    reward = outcomes.expected_reward(arrays.scenario.margin_rate).reshape(n_states, n_actions)
    return TransitionKernel(
        transition=transition,
        reward=reward,
        masks=tables.masks,
        initial=initial_distribution(twin),
        horizon=arrays.scenario.horizon_days,
        discount=arrays.scenario.discount_factor,
        start_weekday=arrays.weekday_of_start,
    )


def _successor_base(
    space: StateSpace, states: CustomerState, pair_state: IntArray, pair_action: IntArray
) -> IntArray:
    """Index of each (state, action)'s successor with the stage and outcome flags at zero.

    The contact history moves by the rules; stage and outcome flags vary in the kernel's loop;
    every other component (persona, and any without dynamics) keeps its value.
    """
    pressure, days_since = advance_contact_history(
        space.arrays.rules, states.pressure[pair_state], states.days_since[pair_state], pair_action
    )
    n = pair_state.shape[0]
    values: dict[str, np.ndarray] = {"pressure": pressure, "days_since": days_since}
    for component in space.components:
        if component.name == "stage" or component.outcome is not None:
            values[component.name] = np.zeros(n, dtype=component.dtype)
        elif component.name not in values:
            values[component.name] = states.__dict__[component.name][pair_state]
    return space.encode(CustomerState.of(values, space.components))


def initial_distribution(twin: CustomerTwin) -> FloatArray:
    """(S,) probability of each state at day 0, matching :meth:`CustomerTwin.reset`.

    Persona, stage and habit as drawn per persona; the individual levels independently, at
    their shares (one level each: weight 1, the same numbers as without levels).
    """
    a, space = twin.arrays, twin.space
    stages = np.arange(a.n_stages)
    distribution = np.zeros(space.size)
    n = a.n_stages
    shares = level_shares(space)
    for persona, habit, levels in itertools.product(
        range(a.n_personas),
        (False, True),
        itertools.product(*map(range, map(len, shares.values()))),
    ):
        p_habit = (
            a.persona_initial_habit[persona] if habit else 1.0 - a.persona_initial_habit[persona]
        )
        given = {name: np.full(n, level) for name, level in zip(shares, levels, strict=True)}
        weight = math.prod(
            float(shares[name][level]) for name, level in zip(shares, levels, strict=True)
        )
        state = space.rested_state(np.full(n, persona), stages, habit=np.full(n, habit), **given)
        distribution[space.encode(state)] += (
            a.persona_share[persona] * p_habit * a.persona_initial_stage[persona]
        ) * weight
    return distribution
