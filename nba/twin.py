"""The customer twin: N customers stepped together, one numpy call per day.

The twin owns the state arrays, one ``numpy.random.Generator`` and the per-customer KPIs. A
requested action that the contact rules forbid is never executed: the customer gets "no
action" and the attempt is counted in ``kpis.blocked``, so agents without masking can still
learn. When the scenario's state space is small enough, outcome probabilities and action masks
are read from tables built once (the same numbers as computing them, much faster).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from nba.contact_rules import advance_contact_history, rule_masks
from nba.dynamics import Outcomes, categorical, outcome_model, sample_outcomes
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.state import COMPONENTS, CustomerState, StateComponent, StateSpace
from nba.types import BoolArray, FloatArray, IntArray, SeedLike

#: Tabulate outcomes when (states x actions) is at most this many pairs (~100 MB of tables).
TABULATE_LIMIT = 400_000


@dataclass
class StepResult:
    """What happened on one day, per customer."""

    reward: FloatArray
    expected_reward: FloatArray  # E[reward | state, executed action]: same mean, less noise
    requested: IntArray
    executed: IntArray
    blocked: BoolArray
    contacted: BoolArray
    bought: BoolArray
    noticed: BoolArray  # the day's contact was noticed (opened, read)
    opted_out: BoolArray  # opted out today
    revenue: FloatArray
    contact_cost: FloatArray
    discount_cost: FloatArray


@dataclass
class CustomerKPIs:
    """Running per-customer totals since the last reset."""

    revenue: FloatArray
    contact_cost: FloatArray
    discount_cost: FloatArray
    reward: FloatArray
    contacts: IntArray
    purchases: IntArray
    unsubscribes: IntArray
    blocked: IntArray

    @classmethod
    def zeros(cls, n: int) -> CustomerKPIs:
        return cls(**{f.name: np.zeros(n, dtype=_KPI_DTYPES[f.name]) for f in fields(cls)})

    def add(self, step: StepResult) -> None:
        self.revenue += step.revenue
        self.contact_cost += step.contact_cost
        self.discount_cost += step.discount_cost
        self.reward += step.reward
        self.contacts += step.contacted
        self.purchases += step.bought
        self.unsubscribes += step.opted_out
        self.blocked += step.blocked

    def reset_rows(self, rows: IntArray) -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = 0


_KPI_DTYPES = {
    "revenue": np.float64,
    "contact_cost": np.float64,
    "discount_cost": np.float64,
    "reward": np.float64,
    "contacts": np.int64,
    "purchases": np.int64,
    "unsubscribes": np.int64,
    "blocked": np.int64,
}


@dataclass
class TransitionTables:
    """Outcome probabilities per (response key, action), and masks per weekday and state.

    Outcomes do not depend on the cap clocks, so they are tabulated per response key (persona,
    stage, pressure, habit, opt-out): a table small enough to stay in cache.
    """

    outcomes: Outcomes  # rows indexed by response_key * A + action
    expected_reward: FloatArray  # (rows,) expected reward of each row
    masks: BoolArray  # (7, S, A)

    @classmethod
    def build(cls, arrays: ScenarioArrays, space: StateSpace) -> TransitionTables:
        n_actions = arrays.n_actions
        space.require_table(7 * n_actions, "the rule masks (7 x S x A)")  # before allocating
        keys = space.decode(np.arange(space.response_size) * space.history_size)
        pairs = keys.take(np.repeat(np.arange(space.response_size), n_actions))
        actions = np.tile(np.arange(n_actions), space.response_size)
        outcomes = outcome_model(arrays, pairs, actions)
        states = space.all_states()
        consent = states.consent(arrays)
        masks = np.stack(
            [
                rule_masks(arrays.rules, states, np.full(space.size, weekday), consent).allowed
                for weekday in range(7)
            ]
        )
        expected_reward = outcomes.expected_reward(arrays.scenario.margin_rate)
        return cls(outcomes=outcomes, expected_reward=expected_reward, masks=masks)


_COMPILED: dict[tuple[str, tuple[str, ...]], tuple[ScenarioArrays, StateSpace]] = {}
_TABLES: dict[tuple[str, tuple[str, ...]], TransitionTables] = {}
_CACHE_SIZE = 8


def _compile(
    scenario: Scenario, fingerprint: str, components: tuple[StateComponent, ...]
) -> tuple[ScenarioArrays, StateSpace]:
    """Arrays and state space of a scenario; scenarios with equal content share them."""
    key = (fingerprint, tuple(c.name for c in components))
    if key not in _COMPILED:
        _evict(_COMPILED)
        arrays = ScenarioArrays.from_scenario(scenario)
        _COMPILED[key] = (arrays, StateSpace(arrays, components))
    return _COMPILED[key]


def _tables(fingerprint: str, arrays: ScenarioArrays, space: StateSpace) -> TransitionTables:
    key = (fingerprint, tuple(c.name for c in space.components))
    if key not in _TABLES:
        _evict(_TABLES)
        _TABLES[key] = TransitionTables.build(arrays, space)
    return _TABLES[key]


def _evict(cache: dict[Any, Any]) -> None:
    while len(cache) >= _CACHE_SIZE:
        cache.pop(next(iter(cache)))  # oldest first: dicts keep insertion order


def level_shares(space: StateSpace) -> dict[str, FloatArray]:
    """Start shares of each individual-level component the space has (drawn independently)."""
    a = space.arrays
    shares = {"rate_level": a.rate_level_share, "dropout_level": a.dropout_level_share}
    return {c.name: shares[c.name] for c in space.components if c.name in shares}


@dataclass
class CustomerTwin:
    """A vectorised population simulator for one scenario.

    :param scenario: a :class:`Scenario`, a built-in name such as ``"retail"``, or a YAML path.
    :param seed: seed or generator for the twin's single ``numpy.random.Generator``.
    :param tabulate: read outcomes from precomputed tables (default: when the space is small).
    :param components: the state's components (default: :data:`nba.state.COMPONENTS`); a
        component without dynamics keeps its start value.
    """

    scenario: Scenario | str
    seed: SeedLike = None
    tabulate: bool | None = None
    components: tuple[StateComponent, ...] = COMPONENTS
    arrays: ScenarioArrays = field(init=False)
    space: StateSpace = field(init=False)
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.scenario = load_scenario(self.scenario)
        self.fingerprint = self.scenario.fingerprint()
        self.arrays, self.space = _compile(self.scenario, self.fingerprint, self.components)
        self.rng = np.random.default_rng(self.seed)
        if self.tabulate is None:
            self.tabulate = self.space.size * self.arrays.n_actions <= TABULATE_LIMIT
        self._state: CustomerState | None = None
        self._day: IntArray = np.zeros(0, dtype=np.int64)
        self.kpis = CustomerKPIs.zeros(0)
        self.last_step: StepResult | None = None

    # ------------------------------------------------------------------ set-up
    def spawn(self, seed: SeedLike = None) -> CustomerTwin:
        """A twin of the same scenario with its own generator and no customers yet.

        The read-only scenario arrays and tables are shared, so many small twins (one per
        Gymnasium env, say) cost one set of tables.
        """
        clone = copy.copy(self)
        clone.seed = seed
        clone.rng = np.random.default_rng(seed)
        clone._state = None
        clone._day = np.zeros(0, dtype=np.int64)
        clone.kpis = CustomerKPIs.zeros(0)
        clone.last_step = None
        return clone

    @property
    def tables(self) -> TransitionTables:
        """Outcome and mask tables, built once per scenario and shared by all its twins."""
        return _tables(self.fingerprint, self.arrays, self.space)

    @property
    def n_actions(self) -> int:
        return self.arrays.n_actions

    @property
    def n(self) -> int:
        return len(self.state)

    @property
    def state(self) -> CustomerState:
        if self._state is None:
            raise NBAValidationError("twin: call reset(n) before using the state")
        return self._state

    @property
    def day(self) -> IntArray:
        """(N,) days each customer has been simulated since its episode started."""
        return self._day

    @property
    def weekday(self) -> IntArray:
        return (self.arrays.weekday_of_start + self._day) % 7

    def sample_initial_state(self, n: int) -> CustomerState:
        """Draw ``n`` customers from the scenario's start distribution (uses the twin's RNG)."""
        a = self.arrays
        shares = np.broadcast_to(a.persona_share, (n, a.n_personas))
        persona = categorical(shares, self.rng.random(n))
        stage = categorical(a.persona_initial_stage[persona], self.rng.random(n))
        habit = self.rng.random(n) < a.persona_initial_habit[persona]
        levels = {}
        for name, shares in level_shares(self.space).items():
            if shares.shape[0] > 1:  # one level draws nothing: the stream stays as it was
                levels[name] = categorical(
                    np.broadcast_to(shares, (n, shares.shape[0])), self.rng.random(n)
                )
        return self.space.rested_state(persona, stage, habit=habit, **levels)

    def reset(self, n: int, seed: SeedLike = None) -> CustomerState:
        """Start ``n`` fresh customers; a seed re-seeds the twin's generator."""
        if not isinstance(n, int | np.integer) or n < 1:
            raise NBAValidationError(f"n: expected a positive integer, got {n!r}")
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._state = self.sample_initial_state(int(n))
        self._day = np.zeros(int(n), dtype=np.int64)
        self.kpis = CustomerKPIs.zeros(int(n))
        self.last_step = None
        return self._state

    def set_days(self, day: IntArray) -> None:
        """Move customers' episode clocks (e.g. to stagger episodes in a vectorised env)."""
        day = np.asarray(day, dtype=np.int64)
        if day.shape != (self.n,) or (day < 0).any():
            raise NBAValidationError(f"day: expected ({self.n},) non-negative integers")
        self._day = day.copy()

    def set_state(self, state: CustomerState, day: IntArray | None = None) -> None:
        """Replace the population (for tests, serving replays and env resets)."""
        self._state = state.copy()
        n = len(state)
        self._day = np.zeros(n, dtype=np.int64) if day is None else np.asarray(day).copy()
        self.kpis = CustomerKPIs.zeros(n)

    def restart(self, rows: IntArray) -> None:
        """Replace the given customers by fresh draws from the start distribution (auto-reset)."""
        fresh = self.sample_initial_state(rows.shape[0])
        state = self.state
        for name, array in fresh.items():
            state.__dict__[name][rows] = array
        self._day[rows] = 0
        self.kpis.reset_rows(rows)

    # ------------------------------------------------------------------ dynamics
    def state_index(self) -> IntArray:
        return self.space.encode(self.state)

    def action_masks(self) -> BoolArray:
        """(N, A) actions the contact rules allow for each customer today."""
        if self.tabulate:
            return self.tables.masks[self.weekday, self.state_index()]
        state = self.state
        consent = state.consent(self.arrays)
        return rule_masks(self.arrays.rules, state, self.weekday, consent).allowed

    def step(self, actions: IntArray) -> StepResult:
        """Advance every customer by one day under the requested actions."""
        state = self.state
        requested = self._check_actions(actions)
        if self.tabulate:
            index = self.state_index()
            allowed = self.tables.masks[self.weekday, index, requested]
            executed = np.where(allowed, requested, 0)
            rows = self.space.response_key(index) * self.n_actions + executed
            outcomes = self.tables.outcomes
            expected_reward = self.tables.expected_reward[rows]
        else:
            allowed = self.action_masks()[np.arange(requested.shape[0]), requested]
            executed = np.where(allowed, requested, 0)
            outcomes = outcome_model(self.arrays, state, executed)
            rows = np.arange(requested.shape[0])
            expected_reward = outcomes.expected_reward(self.scenario.margin_rate)
        day = sample_outcomes(outcomes, rows, self.scenario.margin_rate, self.rng)
        pressure, days_since = advance_contact_history(
            self.arrays.rules, state.pressure, state.days_since, executed
        )
        opted_out_today = day.opted_out & ~state.opted_out
        state.stage = day.stage
        state.habit = day.habit
        state.opted_out = day.opted_out
        state.pressure = pressure
        state.days_since = days_since
        self._day = self._day + 1

        result = StepResult(
            reward=day.reward,
            expected_reward=expected_reward,
            requested=requested,
            executed=executed,
            blocked=~allowed,
            contacted=executed != 0,
            bought=day.bought,
            noticed=day.noticed,
            opted_out=opted_out_today,
            revenue=day.revenue,
            contact_cost=day.contact_cost,
            discount_cost=day.discount_cost,
        )
        self.kpis.add(result)
        self.last_step = result
        return result

    def _check_actions(self, actions: IntArray) -> IntArray:
        array = np.asarray(actions)
        if array.shape != (self.n,):
            raise NBAValidationError(f"actions: expected shape ({self.n},), got {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
                raise NBAValidationError(f"actions: expected integers, got dtype {array.dtype}")
        array = array.astype(np.int64)
        bad = (array < 0) | (array >= self.n_actions)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise NBAValidationError(
                f"actions[{first}]: {int(array[first])} is not an action index in "
                f"[0, {self.n_actions - 1}]"
            )
        return array

    # ------------------------------------------------------------------ reporting
    def kpi_frame(self) -> pd.DataFrame:
        """Per-customer totals since reset, with the current stage and persona by name."""
        state = self.state
        frame = pd.DataFrame({f.name: getattr(self.kpis, f.name) for f in fields(self.kpis)})
        frame.insert(0, "persona", np.array(self.scenario.persona_names)[state.persona])
        frame.insert(1, "stage", np.array(self.scenario.stage_names)[state.stage])
        frame["opted_out"] = state.opted_out
        return frame
