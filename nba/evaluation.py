"""Honest evaluation: every policy on the same fixed cohort, with common random numbers.

Each policy runs on a fresh twin built from the same seed, so all policies meet the same
customers and the same daily uniforms (the twin draws four per customer per day whatever the
action). Differences between rows are then differences between policies, not luck. The table
reports value per customer with a 95% interval (``lower``, ``upper``, ``confidence``), the
share of the gap between "no action" and the exact optimum that each policy closes, business
KPIs, and contact-rule violations, which are checked here independently of the twin and must
be zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nba import optimal
from nba.contact_rules import rule_masks
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.kernel import TransitionKernel
from nba.observation import BeliefObserver, observation_of
from nba.parameters import ScenarioArrays
from nba.policies import NoActionPolicy, OptimalPolicy, Policy, make_baseline
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin, StepResult
from nba.types import FloatArray, IntArray

#: The fixed evaluation cohort every table in this project uses unless told otherwise.
DEFAULT_CUSTOMERS = 20_000
DEFAULT_SEED = 20_261_123
REFERENCE_POLICIES = ("no_action", "optimal")
#: Confidence of the normal interval on each policy's value (z = 1.96).
CONFIDENCE = 0.95
_Z = 1.96


@dataclass
class Rollout:
    """Per-customer outcomes of one policy over the horizon, and per-day totals."""

    policy: str
    discounted_return: FloatArray
    revenue: FloatArray
    cost: FloatArray
    contacts: FloatArray
    purchased: np.ndarray
    unsubscribed: np.ndarray
    churned: np.ndarray
    blocked: FloatArray
    violations: int
    daily: pd.DataFrame = field(repr=False)
    flows: IntArray = field(repr=False)  # (K, K) customer-days moving from stage to stage
    action_mix: IntArray = field(repr=False)  # (P, K, A) decisions by persona, stage, action

    def summary(self) -> dict[str, float | int | str]:
        n = self.discounted_return.shape[0]
        value = float(self.discounted_return.mean())
        half_width = _Z * float(self.discounted_return.std(ddof=1)) / np.sqrt(n) if n > 1 else 0.0
        return {
            "policy": self.policy,
            "value": value,
            "lower": value - half_width,
            "upper": value + half_width,
            "confidence": CONFIDENCE,
            "revenue": float(self.revenue.mean()),
            "cost": float(self.cost.mean()),
            "contacts": float(self.contacts.mean()),
            "conversion": float(self.purchased.mean()),
            "unsubscribe_rate": float(self.unsubscribed.mean()),
            "churn_rate": float(self.churned.mean()),
            "blocked_requests": float(self.blocked.mean()),
            "violations": int(self.violations),
        }


def rollout(
    twin: CustomerTwin,
    policy: Policy,
    n_customers: int,
    seed: int,
    on_day: Callable[[int], None] | None = None,
    belief_arrays: ScenarioArrays | None = None,
) -> Rollout:
    """Run ``policy`` on a fresh cohort of ``n_customers`` drawn with ``seed``.

    A policy that acts on beliefs (``observation = "belief"``, :func:`~nba.observation.
    observation_of`) sees what a company sees, kept by the training envs' own
    :class:`~nba.observation.BeliefObserver`; others see the full state. ``belief_arrays``
    keeps those beliefs with another twin's parameters (same state space): a company's twin,
    wrong about the world that ``twin`` plays.
    """
    belief = observation_of(policy) == "belief"
    observer = BeliefObserver(belief_arrays or twin.arrays) if belief else None
    features = FeatureBuilder(twin.arrays)
    rules = twin.arrays.rules
    churn_stage = twin.arrays.churn_stage
    state = twin.reset(n_customers, seed=seed)
    churned_at_start = state.stage == churn_stage
    opted_at_start = state.opted_out.copy()
    returns = np.zeros(n_customers)
    weight, violations, daily = 1.0, 0, []
    rows = np.arange(n_customers)
    if observer is not None:
        observer.reset(state)
    n_stages, n_actions = twin.arrays.n_stages, twin.n_actions
    flows = np.zeros(n_stages * n_stages, dtype=np.int64)
    action_mix = np.zeros(twin.arrays.n_personas * n_stages * n_actions, dtype=np.int64)
    for day in range(twin.scenario.horizon_days):
        state = twin.state
        stage_before = state.stage.copy()
        if observer is None:
            obs = features.build(state, twin.day)
        else:
            obs = observer.build(state, twin.day)
            context = observer.context(state)
        mask = twin.action_masks()
        actions, _ = policy.act(obs, mask)
        # independent check: the rule module itself, not the twin's tables, judges each contact
        allowed = rule_masks(rules, state, twin.weekday, state.consent(twin.arrays)).allowed
        result = twin.step(actions)
        if observer is not None:
            observer.update(context, result.bought, result.executed)
        violations += int((~allowed[rows, result.executed]).sum())
        flows += np.bincount(stage_before * n_stages + twin.state.stage, minlength=flows.size)
        cell = (state.persona * n_stages + stage_before) * n_actions + result.executed
        action_mix += np.bincount(cell, minlength=action_mix.size)
        returns += weight * result.reward
        weight *= twin.scenario.discount_factor
        daily.append(_day_totals(day, result, twin))
        if on_day is not None:
            on_day(day)
    kpis = twin.kpis
    return Rollout(
        policy=policy.name,
        discounted_return=returns,
        revenue=kpis.revenue.copy(),
        cost=kpis.contact_cost + kpis.discount_cost,
        contacts=kpis.contacts.astype(np.float64),
        purchased=kpis.purchases > 0,
        unsubscribed=twin.state.opted_out & ~opted_at_start,
        churned=(twin.state.stage == churn_stage) & ~churned_at_start,
        blocked=kpis.blocked.astype(np.float64),
        violations=violations,
        daily=pd.DataFrame(daily),
        flows=flows.reshape(n_stages, n_stages),
        action_mix=action_mix.reshape(twin.arrays.n_personas, n_stages, n_actions),
    )


def _day_totals(day: int, result: StepResult, twin: CustomerTwin) -> dict[str, float | int]:
    """One simulated day's totals across the cohort, and the customers in each stage after it."""
    stages = np.bincount(twin.state.stage, minlength=twin.arrays.n_stages)
    return {
        "day": day,
        "reward": float(result.reward.sum()),
        "revenue": float(result.revenue.sum()),
        "contact_cost": float(result.contact_cost.sum()),
        "discount_cost": float(result.discount_cost.sum()),
        "contacts": int(result.contacted.sum()),
        "purchases": int(result.bought.sum()),
        "unsubscribes": int(result.opted_out.sum()),
        "blocked": int(result.blocked.sum()),
        **{
            f"stage_{name}": int(count)
            for name, count in zip(twin.scenario.stage_names, stages, strict=True)
        },
    }


def tabulate_policy(policy: Policy, twin: CustomerTwin, kernel: TransitionKernel) -> IntArray:
    """The (T, S) action table of a policy, by asking it about every state on every day.

    A requested action the rules forbid becomes "no action", exactly as the twin executes it.
    Together with :func:`nba.optimal.evaluate` this gives a policy's exact value: no sampling
    noise, so learning curves and the share of the optimum are exact on finite scenarios.
    """
    features = FeatureBuilder(twin.arrays)
    states = twin.space.all_states()
    every_state = np.arange(kernel.n_states)
    table = np.zeros((kernel.horizon, kernel.n_states), dtype=np.int64)
    for t in range(kernel.horizon):
        mask = kernel.mask_at(t)
        actions, _ = policy.act(features.build(states, np.full(kernel.n_states, t)), mask)
        table[t] = np.where(mask[every_state, actions], actions, 0)
    return table


@dataclass(frozen=True)
class ExactScore:
    """Exact value of a policy and its share of the gap from "no action" to the optimum."""

    value: float
    no_action_value: float
    optimal_value: float

    @property
    def share_of_optimum(self) -> float:
        return (self.value - self.no_action_value) / (self.optimal_value - self.no_action_value)


class ExactScorer:
    """Scores policies exactly on a finite scenario (kernel and optimum computed once)."""

    def __init__(self, scenario: Scenario | str) -> None:
        from nba.kernel import build_kernel

        self.twin = CustomerTwin(load_scenario(scenario))
        self.kernel = build_kernel(self.twin)
        self.optimum = optimal.solve(self.kernel)
        self.no_action_value = optimal.evaluate(
            self.kernel, optimal.no_action_policy(self.kernel)
        ).value

    def score(self, policy: Policy) -> ExactScore:
        """:raises NBAValidationError: for a policy of beliefs, which has no table: its actions
        depend on each customer's history, so its value is measured by rollouts."""
        if observation_of(policy) != "state":
            raise NBAValidationError(
                f"policy: {policy.name!r} acts on beliefs; exact scoring needs a policy of the "
                "full state (measure it with evaluate_policies)"
            )
        table = tabulate_policy(policy, self.twin, self.kernel)
        return ExactScore(
            value=optimal.evaluate(self.kernel, table).value,
            no_action_value=self.no_action_value,
            optimal_value=self.optimum.value,
        )


class CohortScorer:
    """Scores policies by rollouts on one fixed cohort: the yardstick for policies of beliefs.

    A belief policy's action depends on each customer's history, so it has no (day, state)
    table to score exactly. The cohort's "no action" and full-information optimum are rolled out
    once on the same customers and daily draws (common random numbers), so a share's noise is
    the policy's own; :attr:`exact_scorer` still scores full-state policies exactly.
    """

    def __init__(
        self, scenario: Scenario | str, n_customers: int = 10_000, seed: int = DEFAULT_SEED
    ) -> None:
        if n_customers < 2:
            raise NBAValidationError(f"n_customers: need at least 2, got {n_customers}")
        self.exact_scorer = ExactScorer(scenario)
        self.twin = self.exact_scorer.twin
        self.n_customers, self.seed = int(n_customers), int(seed)
        optimum = OptimalPolicy(self.twin, self.exact_scorer.optimum)
        self.no_action_value = self._value(NoActionPolicy())
        self.optimal_value = self._value(optimum)

    def _value(self, policy: Policy) -> float:
        outcome = rollout(self.twin.spawn(self.seed), policy, self.n_customers, self.seed)
        return float(outcome.discounted_return.mean())

    def score(self, policy: Policy) -> ExactScore:
        """The policy's value on the cohort, with the cohort's no-action and optimum values."""
        return ExactScore(
            value=self._value(policy),
            no_action_value=self.no_action_value,
            optimal_value=self.optimal_value,
        )


@dataclass
class EvaluationReport:
    """The comparison table and the rollouts behind it."""

    table: pd.DataFrame
    rollouts: dict[str, Rollout]
    scenario: Scenario
    n_customers: int
    seed: int


def evaluate_policies(
    scenario: Scenario | str,
    policies: Sequence[Policy | str] | Mapping[str, Policy],
    n_customers: int = DEFAULT_CUSTOMERS,
    seed: int = DEFAULT_SEED,
    include_references: bool = True,
    on_day: Callable[[str, int], None] | None = None,
) -> EvaluationReport:
    """Evaluate policies (objects or baseline names) on one cohort with common random numbers.

    With ``include_references`` the "no action" and exact-optimum rows are added when missing,
    so that ``share_of_optimum`` (0 = no action, 1 = the optimum) is always defined.
    """
    if n_customers < 2:
        raise NBAValidationError(f"n_customers: need at least 2, got {n_customers}")
    loaded = load_scenario(scenario)
    base = CustomerTwin(loaded, seed=seed)
    named: dict[str, Policy | str] = (
        dict(policies)
        if isinstance(policies, Mapping)
        else {p if isinstance(p, str) else p.name: p for p in policies}
    )
    if not named:
        raise NBAValidationError("policies: give at least one policy")
    if include_references:
        for reference in REFERENCE_POLICIES:
            named.setdefault(reference, reference)
    rollouts = {}
    for name, policy in named.items():
        resolved = make_baseline(policy, base, seed=seed) if isinstance(policy, str) else policy
        callback = (lambda day, name=name: on_day(name, day)) if on_day else None
        outcome = rollout(base.spawn(seed), resolved, n_customers, seed, callback)
        outcome.policy = name
        rollouts[name] = outcome
    table = pd.DataFrame([r.summary() for r in rollouts.values()])
    if {"no_action", "optimal"} <= set(rollouts):
        floor = rollouts["no_action"].discounted_return.mean()
        ceiling = rollouts["optimal"].discounted_return.mean()
        after = list(table.columns).index("confidence") + 1
        table.insert(after, "share_of_optimum", (table["value"] - floor) / (ceiling - floor))
    return EvaluationReport(
        table=table, rollouts=rollouts, scenario=loaded, n_customers=n_customers, seed=seed
    )
