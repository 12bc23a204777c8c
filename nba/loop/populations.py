"""Who plays in a closed loop and what the system holds about them.

A :class:`Population` is a cohort of world customers (the world's own :class:`CustomerTwin`)
with what a company logged of each day: the observed context, the executed action and the
purchase, enough to re-filter beliefs under any twin. A :class:`View` is a twin the system
holds: its QMDP policy, its response tables and one belief observer per population, so a
champion and a challenger each act on beliefs kept with their own twin's parameters.

:func:`play_day` decides one day for a population (holdout customers by business as usual,
treated ones by the champion or, in a challenger's test cell, the challenger, with epsilon
exploration), steps the world, and moves every view's beliefs by what was observed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nba.belief_policies import QMDPPolicy
from nba.belief_values import BeliefValues
from nba.features import FeatureBuilder
from nba.loop.response_fit import ResponseEvidence, ResponseTables
from nba.observation import BeliefObserver
from nba.policies import make_baseline
from nba.scenario import Scenario
from nba.state import CustomerState
from nba.twin import CustomerTwin, StepResult
from nba.types import BoolArray, FloatArray, IntArray


@dataclass
class DayLog:
    """What a company observed of one day, compact: enough to re-filter beliefs."""

    pressure: np.ndarray
    habit: BoolArray
    bought: BoolArray
    executed: np.ndarray


@dataclass
class Population:
    """A cohort of world customers: the world playing them and the company's log of them."""

    name: str
    world: CustomerTwin
    ids: np.ndarray  # what the salted hashes (holdout, test cells) read
    control: BoolArray  # decided by business as usual
    cell_scores: FloatArray  # uniform per customer: the challenger's test cell is score < share
    first_state: CustomerState
    log: list[DayLog] = field(default_factory=list)
    week_reward: FloatArray = field(default_factory=lambda: np.zeros(0))
    loop_reward: FloatArray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def start(
        cls,
        name: str,
        scenario: Scenario,
        ids: np.ndarray,
        seed: int,
        control: BoolArray,
        cells: FloatArray,
    ) -> Population:
        world = CustomerTwin(scenario, seed=seed)
        n = len(ids)
        state = world.reset(n)
        return cls(name, world, ids, control, cells, state.copy(), [], np.zeros(n), np.zeros(n))

    @property
    def n(self) -> int:
        return self.world.n

    def change_world(self, scenario: Scenario) -> None:
        """The world's parameters change under the same customers and random stream."""
        changed = CustomerTwin(scenario)
        changed.rng = self.world.rng
        changed.set_state(self.world.state, self.world.day)
        self.world = changed


@dataclass
class View:
    """A twin the system holds, its policy, and its beliefs about each population."""

    label: str
    scenario: Scenario
    twin: CustomerTwin
    values: BeliefValues
    policy: QMDPPolicy
    tables: ResponseTables
    observers: dict[str, BeliefObserver] = field(default_factory=dict)
    evidence: dict[int, ResponseEvidence] = field(default_factory=dict)  # per week: audit, refit

    @classmethod
    def of(cls, label: str, scenario: Scenario) -> View:
        twin = CustomerTwin(scenario)
        values = BeliefValues(twin)
        return cls(label, scenario, twin, values, QMDPPolicy(twin, values), ResponseTables(values))

    def follow(self, population: Population) -> None:
        """Beliefs about ``population`` under this twin, re-filtered from its first day."""
        observer = BeliefObserver(self.twin.arrays)
        observer.reset(population.first_state)
        for day in population.log:
            context = {"pressure": day.pressure.astype(np.int64), "habit": day.habit}
            observer.update(context, day.bought, day.executed.astype(np.int64))
        self.observers[population.name] = observer

    def week_evidence(self, week: int) -> ResponseEvidence:
        if week not in self.evidence:
            self.evidence[week] = ResponseEvidence(self.twin.n_actions)
        return self.evidence[week]


@dataclass
class Deciders:
    """Who decides today: the champion, a challenger in test (and its cell share), BAU."""

    champion: View
    challenger: View | None
    challenger_share: float
    epsilon: float
    business_as_usual: object  # a full-state policy (the scenario's journey map)
    features: FeatureBuilder


def business_as_usual(scenario: Scenario) -> tuple[object, FeatureBuilder]:
    """The journey map on the world's state, and the features it reads."""
    twin = CustomerTwin(scenario)
    return make_baseline("journey_map", twin), FeatureBuilder(twin.arrays)


def play_day(
    population: Population,
    deciders: Deciders,
    week: int,
    rng: np.random.Generator,
    watch: tuple[View, ...] = (),
    burn_in: bool = False,
) -> StepResult:
    """One day of ``population`` in loop ``week``: decide, step the world, log, move beliefs.

    In the ``burn_in`` everyone gets business as usual. ``watch`` are the views whose audit
    and response evidence this day feeds (the main population's only).
    """
    world = population.world
    state, day = world.state, world.day
    mask = world.action_masks()
    control = np.ones(population.n, dtype=bool) if burn_in else population.control
    actions = _treated_actions(population, deciders, state, day, mask, control, rng)
    if control.any():
        obs = deciders.features.build(state, day)
        bau, _ = deciders.business_as_usual.act(obs, mask)  # type: ignore[attr-defined]
        actions = np.where(control, bau, actions)
    context = BeliefObserver.context(state)
    expected = {
        view.label: view.tables.expected(view.observers[population.name].belief, state, actions)
        for view in watch
    }
    result = world.step(actions)
    population.log.append(
        DayLog(
            context["pressure"].astype(np.int16),
            context["habit"],
            result.bought.copy(),
            result.executed.astype(np.int16),
        )
    )
    for view in _views(deciders, watch):
        observer = view.observers.get(population.name)
        if observer is not None:
            observer.update(context, result.bought, result.executed)
    _record(population, result, week, watch, expected)
    return result


def _treated_actions(
    population: Population,
    deciders: Deciders,
    state: CustomerState,
    day: IntArray,
    mask: BoolArray,
    control: BoolArray,
    rng: np.random.Generator,
) -> IntArray:
    """The treated customers' actions (greedy by their decider, epsilon explored)."""
    n = population.n
    actions = np.zeros(n, dtype=np.int64)
    if control.all():
        return actions
    in_test = np.zeros(n, dtype=bool)
    if deciders.challenger is not None:
        in_test = population.cell_scores < deciders.challenger_share
    for view, rows in ((deciders.champion, ~in_test), (deciders.challenger, in_test)):
        if view is None or not rows.any():
            continue
        obs = view.observers[population.name].build(state, day)
        greedy, _ = view.policy.act(obs, mask)
        actions[rows] = greedy[rows]
    if deciders.epsilon > 0:
        explore = rng.random(n) < deciders.epsilon
        uniform = np.argmax(rng.random(mask.shape) * mask, axis=1)
        actions = np.where(explore, uniform, actions)
    return actions


def _views(deciders: Deciders, watch: tuple[View, ...]) -> list[View]:
    views = [deciders.champion, *([deciders.challenger] if deciders.challenger else []), *watch]
    unique: dict[str, View] = {}
    for view in views:
        unique.setdefault(view.label, view)
    return list(unique.values())


def _record(
    population: Population,
    result: StepResult,
    week: int,
    watch: tuple[View, ...],
    expected: dict[str, dict[str, FloatArray]],
) -> None:
    population.week_reward += result.reward
    population.loop_reward += result.reward
    reports = np.array(
        [False, *[c.reports_opens for c in population.world.arrays.scenario.channels]]
    )
    channel = population.world.arrays.rules.action_channel  # -1: no action
    opened = result.noticed & reports[channel[result.executed] + 1]
    for view in watch:
        seen = expected[view.label]
        view.week_evidence(week).add(result.executed, opened, result.bought, seen)
