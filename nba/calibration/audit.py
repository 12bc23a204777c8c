"""Audit a calibrated twin against held-out reality, KPI by KPI, with intervals and pass/fail.

The held-out customers are put into the twin as they were at the reference time (persona from
the scenario's stored persona model, stage from its stage rules), receive the actions that were
actually logged for them, and are simulated through the response window many times. For every
group (everyone, each logged arm, each named segment) and KPI, the observed held-out mean gets a
95% customer-bootstrap interval; the twin passes a KPI when its simulated mean lies inside.
Because the twin was itself fitted on a finite sample, even a perfect model misses that interval
now and then (about one KPI in six for equal halves); ``consistent`` is the two-sample check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap, interval, safe_ratio
from nba.calibration.events import EventLog
from nba.calibration.population import ObservedCustomers, observe
from nba.calibration.segments import Segment, parse_segments
from nba.scenario import Scenario
from nba.twin import CustomerTwin
from nba.types import BoolArray, FloatArray

KPIS = ("conversion", "spend", "visit")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class AuditResult:
    """One row per (group, KPI): observed mean and interval (``lower``, ``upper`` at
    ``confidence``), simulated mean, verdict."""

    table: pd.DataFrame
    customers: int
    replicates: int

    @property
    def passed(self) -> bool:
        return bool(self.table["passed"].all())

    def summary(self) -> dict[str, float | int | bool]:
        return {
            "customers": self.customers,
            "kpis": len(self.table),
            "passed": int(self.table["passed"].sum()),
            "all_passed": self.passed,
            "consistent": int(self.table["consistent"].sum()),
            "mean_abs_z": float(self.table["z"].abs().mean()),
            "max_abs_z": float(self.table["z"].abs().max()),
        }


def audit(
    scenario: Scenario,
    log: EventLog,
    *,
    segments: dict[str, str] | None = None,
    replicates: int = 20,
    n_bootstrap: int = 400,
    seed: int = 0,
) -> AuditResult:
    """Compare the twin with ``log`` (held-out customers or period) under the logged actions.

    :param segments: name -> condition over the customer snapshot (attributes, RFM), e.g.
        ``{"newbie": "newbie", "recent": "recency_months <= 3 and not newbie"}``, in the
        restricted language of :mod:`nba.calibration.segments` (parsed, never evaluated as
        code); each is audited next to the arms.
    """
    parsed = parse_segments(segments or {})  # bad text fails before any simulation
    people = observe(scenario, log)
    calibration = people.calibration
    table, cluster, actions = people.table, people.cluster, people.actions
    personas = people.personas
    groups = _groups(table, actions, scenario, parsed)
    simulated = _simulate(scenario, people, replicates, seed)
    organic = np.asarray(calibration.observables.get("organic_visit_rate", []), dtype=float)
    observed = {
        "conversion": (table["purchases"].to_numpy() > 0).astype(float),
        "spend": table["spend"].to_numpy(dtype=float),
        "visit": table["visited"].to_numpy().astype(float),
    }
    rng = np.random.default_rng(seed)
    if len(organic) == personas.k:
        # a visit: organic (the control group's rate, buyers included) or a noticed message
        # clicked through
        clicks = np.ones((len(scenario.action_names), personas.k))
        for name, rates in calibration.observables.get("click_through", {}).items():
            if name in scenario.action_names:
                clicks[scenario.action_names.index(name)] = rates
        shape = simulated["noticed"].shape
        organic_visit = rng.random(shape) < organic[cluster][None, :]
        clicked = simulated["noticed"] & (rng.random(shape) < clicks[actions, cluster][None, :])
        simulated["visit"] = (organic_visit | clicked).astype(float)
        kpis = KPIS
    else:
        kpis = ("conversion", "spend")
    simulated["conversion"] = simulated["bought"].astype(float)

    boot = Bootstrap.draw(len(table), n_bootstrap, rng)
    # Two independent samples: the held-out one, and the one the twin was fitted on. A KPI is
    # "consistent" when the gap is within 1.96 standard errors of their difference, the
    # twin's error approximated as the held-out one scaled by the sample sizes.
    fitted_on = float(calibration.observables.get("calibration_customers", 0)) or np.inf
    inflation = float(np.sqrt(1.0 + len(table) / fitted_on))
    rows = [
        _kpi_row(group_name, kpi, members, observed[kpi], simulated[kpi], boot, inflation)
        for group_name, members in groups.items()
        if members.sum() > 0
        for kpi in kpis
    ]
    return AuditResult(pd.DataFrame(rows), len(table), replicates)


def _kpi_row(
    group: str,
    kpi: str,
    members: BoolArray,
    observed: FloatArray,
    simulated: FloatArray,
    boot: Bootstrap,
    inflation: float,
) -> dict[str, object]:
    """One KPI of one group: held-out mean with its interval against the twin's mean."""
    member = members.astype(np.int64) - 1  # 0 for members, -1 for the rest
    values = np.stack([observed, np.ones(len(observed))], axis=1)
    sums = boot.group_sums(values, member, 1)[:, 0]
    means = safe_ratio(sums[:, 0], sums[:, 1])
    lower, upper = interval(means[:, None], CONFIDENCE)
    per_replicate = simulated[:, members].mean(axis=1)
    sim = float(per_replicate.mean())
    sim_se = float(per_replicate.std(ddof=1) / np.sqrt(len(per_replicate)))
    se = float(np.nanstd(means[1:], ddof=1))
    mean = float(means[0])
    return {
        "group": group,
        "kpi": kpi,
        "customers": int(members.sum()),
        "observed": mean,
        "lower": float(lower[0]),
        "upper": float(upper[0]),
        "confidence": CONFIDENCE,
        "simulated": sim,
        "simulated_se": sim_se,
        "z": (sim - mean) / se if se > 0 else 0.0,
        "relative_error": (sim - mean) / mean if mean > 0 else np.nan,
        "passed": bool(lower[0] <= sim <= upper[0]),
        # the twin's own sampling error: its calibration sample was finite too
        "consistent": bool(abs(sim - mean) <= 1.96 * se * inflation),
    }


def _groups(
    table: pd.DataFrame, actions: np.ndarray, scenario: Scenario, segments: list[Segment]
) -> dict[str, BoolArray]:
    groups: dict[str, BoolArray] = {"all": np.ones(len(table), dtype=bool)}
    held_out = (table["contact"] == "held_out").fillna(False).to_numpy()
    if held_out.any():
        groups["arm: held out"] = held_out
    for a in np.unique(actions[actions > 0]):
        groups[f"arm: {scenario.action_names[a]}"] = actions == a
    for segment in segments:
        groups[f"segment: {segment.name}"] = segment.select(table)
    return groups


def _simulate(
    scenario: Scenario, people: ObservedCustomers, replicates: int, seed: int
) -> dict[str, FloatArray]:
    """(R, N) outcomes of each customer over the window, R independent replicates."""
    twin = CustomerTwin(scenario, seed=seed)
    n = len(people.persona)
    twin.set_state(people.initial_state(scenario, copies=replicates))
    first = twin.step(np.tile(people.actions, replicates))
    noticed = first.noticed.copy()
    idle = np.zeros(n * replicates, dtype=np.int64)
    for _ in range(people.window_days - 1):
        twin.step(idle)
    kpis = twin.kpis
    return {
        "bought": (kpis.purchases > 0).reshape(replicates, n),
        "spend": (kpis.revenue + kpis.discount_cost).reshape(replicates, n),
        "noticed": noticed.reshape(replicates, n),
    }
