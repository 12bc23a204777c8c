"""The closed-loop simulation: a hidden world, a wrong twin, weekly cycles (``nba loop``).

The world (:mod:`nba.loop.world`) plays three cohorts: the *main* base the company decides for
and learns from, and two *shadow* cohorts drawn alike (common random numbers) that replay the
treated and the control arm of the same decisions, so the true lift is known. The system sees
only what a company sees: beliefs kept from purchases under the executed actions, and opens.

1. **Burn-in**: ``burn_in_weeks`` of business as usual (the journey map) for everyone. The
   first twin is the world with its channel response wrong by up to ``twin_error``, refitted
   on those logs (:mod:`nba.loop.response_fit`): what BAU sent gets corrected, the rest stays
   wrong. Its QMDP policy (:mod:`nba.belief_policies`) becomes the champion.
2. **Every day**: holdout customers (salted hash, sticky) get business as usual; treated ones
   the champion's action, or in a challenger's test weeks, in a random cell of
   ``challenger_share``, the challenger's; ``epsilon`` of treated decisions explore.
3. **Every week**: (a) a challenger whose ``test_weeks`` are over meets the gate; (b) the
   champion's twin is audited: the week's purchases against the twin's one-day-ahead
   expectation, overall and per action, as Poisson-binomial z scores; past
   ``drift_threshold`` the twin is refitted on the latest ``fit_weeks`` and, when no
   challenger is in test, the refit's policy is the next challenger.

**The gate** is a randomized champion/challenger test: for each treated customer, the test
weeks' reward plus the discounted value-to-go of where the test left them minus that of where
it found them (beliefs at the test's ends); the challenger is promoted when the one-sided 95% lower
bound of its cell's mean minus the champion cell's is above zero with the value-to-go of both
twins. Each policy steers customers towards states its own twin values, so the value-to-go of
the challenger's twin alone favours the challenger; asking both twins removes that bias.
Whether a promotion was right is judged in the world's truth, for the decision the gate made:
both policies played on from today to the horizon by the world as it is now, for today's
treated customers (their states and beliefs copied; the same draws for both).

**Measures** (world truth, per week): the champion's value and its share of the gap between
business as usual and the best the system could serve: the policy the same planner builds from
the world's exact parameters (``world_twin``, the loop's target yardstick: a company deciding
from events cannot act on the hidden stage, so the full-information optimum is out of any
such policy's reach). The share of the full-information optimum's gap is reported beside it.
After the world's change, ``recovery_weeks`` counts the weeks until the champion's share is
back at ``recovery_level``. QMDP is not optimal on beliefs, so a wrong twin's policy can beat
the world twin's (a share above 1): the yardstick is the planner's, not a bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nba.evaluation import rollout
from nba.holdout import Holdout
from nba.lift import welch_difference
from nba.loop.populations import Deciders, Population, View, business_as_usual, play_day
from nba.loop.response_fit import ResponseEvidence, fit_response
from nba.loop.world import WorldSpec, changed_world, world_scenario, wrong_twin
from nba.observation import BeliefObserver
from nba.policies import make_baseline
from nba.scenario import Scenario
from nba.twin import CustomerTwin
from nba.types import FloatArray

ONE_SIDED_95 = 1.6448536269514722
TWO_SIDED_95 = 1.959963984540054


@dataclass
class LoopReport:
    """A loop's weeks, its gate decisions and its summary (:meth:`summary` keys)."""

    seed: int
    weeks: pd.DataFrame
    gates: pd.DataFrame
    summary: dict[str, Any]
    twin_errors: dict[str, dict[str, float]]


@dataclass
class _Truth:
    """World-truth values on one evaluation cohort, cached per (policy, world)."""

    n: int
    seed: int
    returns: dict[tuple[str, str], FloatArray] = field(default_factory=dict)

    def of_view(self, view: View, world: Scenario) -> FloatArray:
        key = (view.label, world.name)
        if key not in self.returns:
            run = rollout(
                CustomerTwin(world), view.policy, self.n, self.seed, belief_arrays=view.twin.arrays
            )
            self.returns[key] = run.discounted_return
        return self.returns[key]

    def of_baseline(self, name: str, world: Scenario) -> FloatArray:
        key = (name, world.name)
        if key not in self.returns:
            twin = CustomerTwin(world)
            self.returns[key] = rollout(
                twin, make_baseline(name, twin), self.n, self.seed
            ).discounted_return
        return self.returns[key]

    def from_now(
        self, view: View, world: Scenario, population: Population, rows: np.ndarray, week: int
    ) -> FloatArray:
        """Discounted return of ``population``'s customers in ``rows`` from today to the
        world's horizon under ``view``'s policy: today's states and beliefs, copied, played on
        by the world (the same draws for every policy judged this week)."""
        start = population.world
        twin = CustomerTwin(world, seed=self.seed + 7_919 * week)
        twin.set_state(start.state.take(rows), start.day[rows])
        observer = BeliefObserver(view.twin.arrays)
        observer.belief = view.observers[population.name].belief[rows].copy()
        returns, weight = np.zeros(len(rows)), 1.0
        for _ in range(int(start.day[0]), world.horizon_days):
            obs = observer.build(twin.state, twin.day)
            context = observer.context(twin.state)
            actions, _ = view.policy.act(obs, twin.action_masks())
            result = twin.step(actions)
            observer.update(context, result.bought, result.executed)
            returns += weight * result.reward
            weight *= world.discount_factor
        return returns

    def references(self, world: Scenario, world_view: View) -> dict[str, float]:
        return {
            "business_as_usual": float(self.of_baseline("journey_map", world).mean()),
            "optimum": float(self.of_baseline("optimal", world).mean()),
            "world_twin": float(self.of_view(world_view, world).mean()),
        }


@dataclass
class _Loop:
    """The loop's moving parts (:func:`run_loop` drives them)."""

    spec: WorldSpec
    world: Scenario
    populations: list[Population]
    deciders: Deciders
    truth: _Truth
    rng: np.random.Generator
    versions: int = 1
    world_view: View | None = None
    test_start: dict[str, FloatArray] = field(default_factory=dict)  # per twin, at test start
    test_reward: FloatArray = field(default_factory=lambda: np.zeros(0))  # main, since then
    test_weeks: int = 0
    weeks: list[dict[str, Any]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def main(self) -> Population:
        return self.populations[0]

    def play_week(self, week: int, burn_in: bool = False) -> None:
        d = self.deciders
        watch = tuple(v for v in (d.champion, d.challenger) if v is not None)
        for _ in range(7):
            for population in self.populations:
                play_day(
                    population,
                    d,
                    week,
                    self.rng,
                    watch if population is self.main else (),
                    burn_in,
                )

    def adopt(self, view: View) -> View:
        for population in self.populations:
            view.follow(population)
        return view

    def new_view(self, scenario: Scenario) -> View:
        self.versions += 1
        return self.adopt(View.of(f"v{self.versions}", scenario))

    def world_reference(self) -> View:
        if self.world_view is None or self.world_view.scenario.name != self.world.name:
            self.world_view = View.of("world_twin", self.world)
        return self.world_view


def run_loop(
    spec: WorldSpec,
    seed: int = 0,
    on_week: Callable[[dict[str, Any]], None] | None = None,
) -> LoopReport:
    """Run the closed loop of ``spec`` with ``seed`` (module docstring)."""
    began = time.perf_counter()
    seeds = np.random.SeedSequence(seed).generate_state(4)
    loop, twin_errors = _start(spec, seeds)
    for week in range(1 - spec.burn_in_weeks, 1):
        loop.play_week(week, burn_in=True)
    wrong = loop.deciders.champion
    first = _refit(loop, range(1 - spec.burn_in_weeks, 1), wrong)
    loop.deciders.champion = loop.new_view(first.apply(wrong.scenario, ""))
    start = {
        "start_share_unfitted": _truth_row(loop, wrong)["share_of_world_twin"],
        "start_share": _truth_row(loop, loop.deciders.champion)["share_of_world_twin"],
    }
    for population in loop.populations:  # the loop's own measures start now
        population.loop_reward[:] = 0.0
        population.week_reward[:] = 0.0
    for week in range(1, spec.weeks + 1):
        if spec.change is not None and week == spec.change.week:
            loop.world = changed_world(loop.world, spec.change)
            for population in loop.populations:
                population.change_world(loop.world)
        loop.play_week(week)
        row = _end_of_week(loop, week)
        loop.weeks.append(row)
        if on_week is not None:
            on_week(row)
    weeks = pd.DataFrame(loop.weeks)
    gates = pd.DataFrame(loop.gates)
    seconds = time.perf_counter() - began
    summary = {"seed": seed, **start, **_summary(loop, weeks, gates, seconds)}
    return LoopReport(seed, weeks, gates, summary, twin_errors)


def _start(spec: WorldSpec, seeds: np.ndarray) -> tuple[_Loop, dict[str, dict[str, float]]]:
    world = world_scenario(spec)
    wrong, errors = wrong_twin(world, spec.twin_error, np.random.default_rng(int(seeds[0])))
    main_ids = np.char.add("c", np.arange(spec.customers).astype(str))
    shadow_ids = np.char.add("s", np.arange(spec.shadow_customers).astype(str))  # both arms
    holdout = Holdout(spec.holdout_share, spec.holdout_salt)
    cells_main, cells_shadow = _cells(main_ids, 0, spec), _cells(shadow_ids, 0, spec)
    n_shadow = spec.shadow_customers
    populations = [
        Population.start(
            "main", world, main_ids, int(seeds[1]), holdout.assign(main_ids), cells_main
        ),
        Population.start(
            "treated", world, shadow_ids, int(seeds[2]), np.zeros(n_shadow, bool), cells_shadow
        ),
        Population.start(
            "control", world, shadow_ids, int(seeds[2]), np.ones(n_shadow, bool), cells_shadow
        ),
    ]
    bau, features = business_as_usual(world)
    champion = View.of("v1", wrong)
    deciders = Deciders(champion, None, spec.challenger_share, spec.epsilon, bau, features)
    truth = _Truth(spec.eval_customers, int(seeds[3]))
    loop = _Loop(spec, world, populations, deciders, truth, np.random.default_rng(int(seeds[3])))
    loop.adopt(champion)
    return loop, errors


def _cells(ids: np.ndarray, week: int, spec: WorldSpec) -> FloatArray:
    """Each customer's draw for a test week's challenger cell (a fresh split every test)."""
    return Holdout(0.5, f"{spec.holdout_salt}-cell-{week}").scores(ids)


def _refit(loop: _Loop, weeks: range, view: View) -> Any:
    evidence = ResponseEvidence(view.twin.n_actions)
    for week in weeks:
        for name, total in view.week_evidence(week).sums.items():
            evidence.sums[name] += total
    return fit_response(view.scenario, evidence, min_sends=loop.spec.min_sends)


def _end_of_week(loop: _Loop, week: int) -> dict[str, Any]:
    """The week's gate, audit, refit and world-truth measures."""
    spec, d, main = loop.spec, loop.deciders, loop.main
    treated = ~main.control
    row: dict[str, Any] = {
        "week": week,
        "world": loop.world.name,
        "champion": d.champion.label,
        "challenger_tested": d.challenger.label if d.challenger else "",
        "treated_value": float(main.week_reward[treated].mean()),
        "holdout_value": float(main.week_reward[~treated].mean()),
    }
    if d.challenger is not None:
        loop.test_reward += main.week_reward
        loop.test_weeks += 1
        row["gate"] = _gate(loop, week) if loop.test_weeks >= spec.test_weeks else "testing"
    audit = _audit(d.champion, week, spec.drift_threshold)
    row.update(audit)
    if audit["drifted"] and d.challenger is None:
        first = max(week - spec.fit_weeks + 1, 1 - spec.burn_in_weeks)
        fit = _refit(loop, range(first, week + 1), d.champion)
        d.challenger = loop.new_view(fit.apply(d.champion.scenario, ""))
        for population in loop.populations:
            population.cell_scores = _cells(population.ids, week, spec)
        loop.test_start = {v.label: _values_now(v, main) for v in (d.champion, d.challenger)}
        loop.test_reward, loop.test_weeks = np.zeros(main.n), 0
        row["challenger_next"] = d.challenger.label
    row["champion_after_gate"] = d.champion.label  # the truth columns describe this one
    row.update(_truth_row(loop))
    row.update(_lift_row(loop))
    for population in loop.populations:
        population.week_reward[:] = 0.0
    return row


def _values_now(view: View, population: Population) -> FloatArray:
    world = population.world
    belief = view.observers[population.name].belief
    return view.values.state_values(belief, world.state, world.day)


def _gate(loop: _Loop, week: int) -> str:
    """Decide on the challenger tested this week (module docstring) and judge it in truth."""
    d, main = loop.deciders, loop.main
    assert d.challenger is not None and loop.test_start
    challenger, champion = d.challenger, d.champion
    treated = ~main.control
    in_cell = treated & (main.cell_scores < d.challenger_share)
    compared = {}
    for view in (challenger, champion):  # the value-to-go under each twin: both must agree
        discount = view.scenario.discount_factor ** (7 * loop.test_weeks)
        gain = loop.test_reward + discount * _values_now(view, main) - loop.test_start[view.label]
        compared[view.label] = welch_difference(
            gain[in_cell], gain[treated & ~in_cell], ONE_SIDED_95
        )
    lower = min(c.difference_lower for c in compared.values())
    promoted = lower > 0
    paired = loop.truth.from_now(
        challenger, loop.world, main, np.flatnonzero(treated), week
    ) - loop.truth.from_now(champion, loop.world, main, np.flatnonzero(treated), week)
    truth = float(paired.mean())
    loop.gates.append(
        {
            "week": week,
            "challenger": challenger.label,
            "champion": champion.label,
            "estimate": compared[challenger.label].difference,
            "estimate_champion_twin": compared[champion.label].difference,
            "lower": lower,
            "promoted": bool(promoted),
            "challenger_value": float(loop.truth.of_view(challenger, loop.world).mean()),
            "true_difference": truth,
            "true_difference_se": float(paired.std(ddof=1) / math.sqrt(len(paired))),
            "false_promotion": bool(promoted and truth < 0),
            "held_back_better": bool(not promoted and truth > 0),
        }
    )
    if promoted:
        d.champion = challenger
    d.challenger, loop.test_start = None, {}
    return "promoted" if promoted else "refused"


def _audit(view: View, week: int, threshold: float) -> dict[str, Any]:
    """The week's purchases against the twin's expectation: overall and per action z."""
    sums = view.week_evidence(week).sums  # every customer-day, no action included
    observed = float(sums["bought"].sum())
    expected = float((sums["base"] + sums["uplift"]).sum())  # the one-day-ahead purchases
    z = (observed - expected) / math.sqrt(expected) if expected > 0 else 0.0
    contact = sums["sends"][1:] > 0
    predicted = (sums["base"] + sums["uplift"])[1:][contact]
    spread = np.sqrt(np.maximum(sums["buy_var"][1:][contact], 1e-12))
    action_z = (sums["bought"][1:][contact] - predicted) / spread
    worst = float(np.abs(action_z).max()) if action_z.size else 0.0
    return {
        "observed_purchases": observed,
        "expected_purchases": expected,
        "audit_z": z,
        "worst_action_z": worst,
        "drifted": bool(abs(z) > threshold or worst > threshold),
    }


def _truth_row(loop: _Loop, view: View | None = None) -> dict[str, Any]:
    """``view`` (default: the champion) in the world's truth, against the references."""
    refs = loop.truth.references(loop.world, loop.world_reference())
    view = view or loop.deciders.champion
    value = float(loop.truth.of_view(view, loop.world).mean())
    bau, best, planner = refs["business_as_usual"], refs["optimum"], refs["world_twin"]
    return {
        "champion_value": value,
        "business_as_usual_value": bau,
        "optimum_value": best,
        "world_twin_value": planner,
        "regret": best - value,
        "share": (value - bau) / (best - bau) if best != bau else float("nan"),
        "share_of_world_twin": (value - bau) / (planner - bau) if planner != bau else float("nan"),
    }


def _lift_row(loop: _Loop) -> dict[str, Any]:
    main, treated_shadow, control_shadow = loop.populations
    treated = ~main.control
    compared = welch_difference(main.loop_reward[treated], main.loop_reward[~treated], TWO_SIDED_95)
    truth = float(treated_shadow.loop_reward.mean() - control_shadow.loop_reward.mean())
    return {
        "lift": compared.difference,
        "lift_lower": compared.difference_lower,
        "lift_upper": compared.difference_upper,
        "true_lift": truth,
        "lift_covered": bool(compared.difference_lower <= truth <= compared.difference_upper),
    }


def _summary(
    loop: _Loop, weeks: pd.DataFrame, gates: pd.DataFrame, seconds: float
) -> dict[str, Any]:
    """The loop's headline numbers: shares against the world twin (full information beside)."""
    spec, last = loop.spec, weeks.iloc[-1]
    recovery = detected = None
    if spec.change is not None:
        after = weeks[weeks["week"] >= spec.change.week]
        back = after[after["share_of_world_twin"] >= spec.recovery_level]
        if len(back):
            recovery = int(back["week"].iloc[0] - spec.change.week)
        flagged = after[after["drifted"]]
        if len(flagged):  # 0: the audit at the end of the change's own week
            detected = int(flagged["week"].iloc[0] - spec.change.week)
    decisions = len(gates)

    def count(column: str) -> int:
        return int(gates[column].sum()) if decisions else 0

    return {
        "week12_share": float(last["share_of_world_twin"]),
        "week12_share_full_information": float(last["share"]),
        "recovery_weeks": recovery,
        "change_detected_after_weeks": detected,
        "drift_weeks": int(weeks["drifted"].sum()),
        "gate_decisions": decisions,
        "promotions": count("promoted"),
        "false_promotions": count("false_promotion"),
        "held_back_better": count("held_back_better"),
        "lift": float(last["lift"]),
        "lift_lower": float(last["lift_lower"]),
        "lift_upper": float(last["lift_upper"]),
        "true_lift": float(last["true_lift"]),
        "lift_covered": bool(last["lift_covered"]),
        "seconds": seconds,
    }
