"""Policies planned in a calibrated twin, valued on held-out randomized data by IPW.

The twin's exact optimum (dynamic programming over its finite state space) says what to do
with each held-out customer on day 0. Where the held-out log comes from a randomized test with
known propensities, inverse propensity weighting values any such rule without bias: a customer
counts when the arm chance gave them is the arm the rule picks, weighted by 1 / propensity.
Differences between rules are estimated on the same customers (paired), so their intervals
are much narrower than the two values' own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError
from nba.calibration.population import ObservedCustomers, observe
from nba.kernel import build_kernel
from nba.ope.base import Interval, Terms, bootstrap_many
from nba.ope.data import LoggedBandit
from nba.ope.registry import make_estimator
from nba.optimal import solve
from nba.policy_head import one_hot
from nba.scenario import Scenario
from nba.serving.scorer import PolicyScorer
from nba.twin import CustomerTwin
from nba.types import FloatArray, IntArray


def twin_optimal_actions(scenario: Scenario, people: ObservedCustomers) -> IntArray:
    """Day-0 action of the twin's exact optimum for each customer."""
    twin = CustomerTwin(scenario)
    solution = solve(build_kernel(twin))
    index = twin.space.encode(people.initial_state(scenario))
    return solution.act(np.zeros(len(index), dtype=np.int64), index)


def logged_reward(scenario: Scenario, people: ObservedCustomers) -> FloatArray:
    """The twin's reward of what happened: margin on window spend less the contact's cost."""
    twin = CustomerTwin(scenario)
    cost = twin.arrays.action_cost[people.actions]
    return scenario.margin_rate * people.table["spend"].to_numpy(dtype=float) - cost


def value_on_holdout(
    scenario: Scenario,
    log: EventLog,
    policies: dict[str, IntArray] | None = None,
    baselines: tuple[str, ...] = ("e-mail nobody",),
    n_bootstrap: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """IPW value of the twin's optimum and of ``policies`` on the held-out randomized ``log``.

    The values are :class:`nba.ope.IPS` estimates; one bootstrap resample of the customers
    serves every value and every paired difference.

    :param policies: extra rules as twin action indices per held-out customer (in the order
        of :func:`nba.calibration.population.observe`); "e-mail nobody" is always included.
    :returns: one row per rule: IPW value per customer with its interval (``lower``,
        ``upper``, ``confidence``), and for each baseline the paired difference with its
        interval (``vs B``, ``vs B lower``, ``vs B upper``).
    """
    people = observe(scenario, log)
    propensity = people.table["propensity"].to_numpy(dtype=float)
    if np.isnan(propensity).any():
        raise EventLogError(
            "events: IPW needs the logging propensity of every held-out customer's arm"
        )
    reward = logged_reward(scenario, people)
    rules = {
        "twin optimum": twin_optimal_actions(scenario, people),
        "e-mail nobody": np.zeros(len(reward), dtype=np.int64),
        **(policies or {}),
    }
    missing = [b for b in baselines if b not in rules]
    if missing:
        raise EventLogError(f"baselines: unknown {missing}; rules are {list(rules)}")
    terms = _ipw_terms(scenario, people, reward, propensity, rules)
    pairs = [(name, baseline) for name in rules for baseline in baselines]
    replicates = bootstrap_many(
        [*terms.values(), *(terms[name].minus(terms[base]) for name, base in pairs)],
        n_bootstrap,
        seed,
    )
    columns = iter(range(replicates.shape[1]))
    rows: dict[str, dict[str, Any]] = {}
    for name, term in terms.items():
        value = Interval.from_replicates("ips", term, replicates[:, next(columns)], confidence)
        rows[name] = {
            "policy": name,
            "ipw_value": value.estimate,
            "lower": value.lower,
            "upper": value.upper,
            "confidence": confidence,
            "share_contacted": float((np.asarray(rules[name]) > 0).mean()),
        }
    for name, base in pairs:
        gap = terms[name].minus(terms[base])
        difference = Interval.from_replicates("ips", gap, replicates[:, next(columns)], confidence)
        rows[name][f"vs {base}"] = difference.estimate
        rows[name][f"vs {base} lower"] = difference.lower
        rows[name][f"vs {base} upper"] = difference.upper
    return pd.DataFrame(list(rows.values()))


def _ipw_terms(
    scenario: Scenario,
    people: ObservedCustomers,
    reward: FloatArray,
    propensity: FloatArray,
    rules: dict[str, IntArray],
) -> dict[str, Terms]:
    """Per-customer IPS terms of each rule: reward / propensity where the rule picks the arm."""
    n, n_actions = len(reward), len(scenario.action_names)
    logged = LoggedBandit(
        context=np.zeros((n, 0)),
        action=people.actions,
        reward=reward,
        propensity=propensity,
        target=np.full((n, n_actions), 1.0 / n_actions),
    )
    ips = make_estimator("ips")
    terms = {}
    for name, actions in rules.items():
        picks = np.asarray(actions)
        if picks.shape != (n,) or not np.issubdtype(picks.dtype, np.integer):
            raise EventLogError(
                f"policies[{name!r}]: expected ({n},) integer action indices, got "
                f"{picks.shape} {picks.dtype}"
            )
        if ((picks < 0) | (picks >= n_actions)).any():
            raise EventLogError(f"policies[{name!r}]: action indices outside 0..{n_actions - 1}")
        terms[name] = ips.terms(logged.with_target(one_hot(picks, n_actions)))
    return terms


def best_single_action(scenario: Scenario, log: EventLog) -> int:
    """The contact that earns most per customer when sent to everyone, judged on ``log``.

    Read from the randomized arms of the calibration customers (arm means of the twin's
    reward), so the held-out half stays untouched for valuing it.
    """
    people = observe(scenario, log)
    reward = logged_reward(scenario, people)
    contacts = np.unique(people.actions[people.actions > 0])
    if len(contacts) == 0:
        raise EventLogError("events: no contacted arm to choose a single action from")
    means = [reward[people.actions == a].mean() for a in contacts]
    return int(contacts[int(np.argmax(means))])


def served_actions(scorer: PolicyScorer, scenario: Scenario, people: ObservedCustomers) -> IntArray:
    """Day-0 action a served policy (e.g. one trained on the twin) picks for each customer.

    The customers go through :class:`~nba.serving.scorer.PolicyScorer` exactly as a live
    system would send them: the scoring request schema, its validation and contact rules.
    """
    state = people.initial_state(scenario)
    request = pd.DataFrame(
        {
            "customer_id": people.table.index.astype(str),
            "persona": np.asarray(scenario.persona_names)[state.persona],
            "stage": np.asarray(scenario.stage_names)[state.stage],
            "pressure": state.pressure,
            "discount_habit": state.habit,
            "opted_out": state.opted_out,
            "day": 0,
        }
    )
    for g, cap in enumerate(scenario.contact_rules.caps):
        request[f"days_since_{cap.name}"] = state.days_since[:, g]
    as_of = pd.Timestamp(people.calibration.reference_time)
    # the policy's own pick per customer: no channel capacity (the twin's optimum has none)
    decisions = scorer.score_batch(
        request, as_of=as_of, capacity=dict.fromkeys(scorer.default_capacity)
    )
    names = decisions["action_name"].astype(str).to_numpy()
    index = {name: i for i, name in enumerate(scenario.action_names)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise EventLogError(f"policy: actions {unknown} are not in the scenario")
    return np.array([index[name] for name in names], dtype=np.int64)
