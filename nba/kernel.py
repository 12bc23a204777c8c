"""The exact transition kernel of a finite scenario, enumerated from the twin's own tables.

``P[s * A + a, s']`` is the probability that a customer in state ``s`` who receives action
``a`` is in state ``s'`` tomorrow; ``R[s, a]`` is the expected reward of that day. Masks are
per weekday because quiet days follow the calendar. Together with the start distribution,
horizon and discount, this is exactly the objective that evaluation measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from nba.contact_rules import advance_contact_history
from nba.dynamics import N_CASES
from nba.scenario import Scenario
from nba.state import CustomerState
from nba.twin import CustomerTwin
from nba.types import BoolArray, FloatArray


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
        return self.masks[(self.start_weekday + t) % 7]


def build_kernel(scenario: Scenario | str | CustomerTwin) -> TransitionKernel:
    """Enumerate every (state, action, outcome) of a scenario into a sparse kernel."""
    twin = scenario if isinstance(scenario, CustomerTwin) else CustomerTwin(scenario, tabulate=True)
    arrays, space = twin.arrays, twin.space
    tables = twin.tables
    n_states, n_actions = space.size, arrays.n_actions

    states = space.all_states()
    pair_state = np.repeat(np.arange(n_states), n_actions)
    pair_action = np.tile(np.arange(n_actions), n_states)
    pressure, days_since = advance_contact_history(
        arrays.rules, states.pressure[pair_state], states.days_since[pair_state], pair_action
    )
    # Index of the successor with stage, habit and opt-out set to zero; those three vary below.
    template = CustomerState(
        persona=states.persona[pair_state],
        stage=np.zeros_like(pair_state),
        pressure=pressure,
        days_since=days_since,
        habit=np.zeros(pair_state.shape[0], dtype=bool),
        opted_out=np.zeros(pair_state.shape[0], dtype=bool),
    )
    base = space.encode(template)
    outcomes = tables.outcomes.take(space.response_key(pair_state) * n_actions + pair_action)
    stage_offsets = np.arange(arrays.n_stages) * space.strides[1]
    rows = np.arange(pair_state.shape[0])

    row_parts, col_parts, prob_parts = [], [], []
    for case in range(N_CASES):
        stage_prob = outcomes.case_probs[:, case, None] * outcomes.next_stage[:, case, :]
        habit_on = outcomes.habit_next[:, case]
        opt_on = outcomes.opt_out_next[:, case]
        for habit in (0, 1):
            habit_prob = habit_on if habit else 1.0 - habit_on
            for opted in (0, 1):
                opt_prob = opt_on if opted else 1.0 - opt_on
                prob = stage_prob * (habit_prob * opt_prob)[:, None]
                keep = prob > 0.0
                offset = habit * space.strides[3] + opted * space.strides[4]
                columns = base[:, None] + stage_offsets[None, :] + offset
                row_parts.append(np.broadcast_to(rows[:, None], keep.shape)[keep])
                col_parts.append(columns[keep])
                prob_parts.append(prob[keep])
    transition = sp.csr_matrix(
        (np.concatenate(prob_parts), (np.concatenate(row_parts), np.concatenate(col_parts))),
        shape=(n_states * n_actions, n_states),
    )
    transition.sum_duplicates()
    reward = outcomes.expected_reward(twin.scenario.margin_rate).reshape(n_states, n_actions)
    return TransitionKernel(
        transition=transition,
        reward=reward,
        masks=tables.masks,
        initial=initial_distribution(twin),
        horizon=twin.scenario.horizon_days,
        discount=twin.scenario.discount_factor,
        start_weekday=arrays.weekday_of_start,
    )


def initial_distribution(twin: CustomerTwin) -> FloatArray:
    """(S,) probability of each state at day 0, matching :meth:`CustomerTwin.reset`."""
    a, space = twin.arrays, twin.space
    stages = np.arange(a.n_stages)
    distribution = np.zeros(space.size)
    for persona in range(a.n_personas):
        for habit in (False, True):
            p_habit = (
                a.persona_initial_habit[persona]
                if habit
                else 1.0 - a.persona_initial_habit[persona]
            )
            n = a.n_stages
            state = CustomerState(
                persona=np.full(n, persona),
                stage=stages,
                pressure=np.zeros(n, dtype=np.int64),
                days_since=np.broadcast_to(a.rules.cap_windows, (n, a.rules.n_caps)).copy(),
                habit=np.full(n, habit),
                opted_out=np.zeros(n, dtype=bool),
            )
            distribution[space.encode(state)] += (
                a.persona_share[persona] * p_habit * a.persona_initial_stage[persona]
            )
    return distribution
