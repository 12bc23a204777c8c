"""Customers of an event log seen through a calibrated scenario: persona, stage, logged action.

Audit and held-out policy evaluation both need the same view of held-out customers at the
calibration's reference time; this module is that one view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError
from nba.calibration.personas import PersonaModel
from nba.calibration.snapshot import take_snapshot
from nba.calibration.stages import StageRules
from nba.parameters import ScenarioArrays
from nba.scenario import Calibration, Scenario
from nba.state import CustomerState, rested_state
from nba.types import FloatArray, IntArray


@dataclass(frozen=True)
class ObservedCustomers:
    """Snapshot rows with the twin's persona and stage and the logged action of each."""

    table: pd.DataFrame
    persona: IntArray  # scenario persona (the middle rate tier of a tiered cluster)
    cluster: IntArray  # persona-model cluster: what per-cluster observables are indexed by
    stage: IntArray
    actions: IntArray  # twin action index (0: held out or not contacted)
    personas: PersonaModel
    window_days: int
    calibration: Calibration

    def initial_state(self, scenario: Scenario, copies: int = 1) -> CustomerState:
        """The customers as twin states on day 0 (rested, no habit, not opted out)."""
        arrays = ScenarioArrays.from_scenario(scenario)
        return rested_state(arrays, np.tile(self.persona, copies), np.tile(self.stage, copies))


def observe(scenario: Scenario, log: EventLog) -> ObservedCustomers:
    """Place every customer of ``log`` in the scenario at its calibration reference time."""
    calibration = _calibration(scenario)
    window = calibration.response_window_days
    snapshot = take_snapshot(log, pd.Timestamp(calibration.reference_time), window)
    table = snapshot.customers
    if table.empty:
        raise EventLogError("events: no customers to place in the twin")
    personas = PersonaModel.from_dict(calibration.persona_model)
    rules = StageRules(
        active_days=int(calibration.stage_rules["active_days"]),
        loyal_purchases=calibration.stage_rules.get("loyal_purchases"),
        fitted_from=str(calibration.stage_rules.get("fitted_from", "")),
    )
    wanted = [*personas.numeric, *personas.categorical]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise EventLogError(
            f"customers: the log lacks attribute(s) {missing} the personas were fitted on"
        )
    cluster = personas.assign(table[wanted].reset_index(drop=True))
    stage = rules.assign(table["recency_days"].to_numpy(), table["frequency"].to_numpy())
    return ObservedCustomers(
        table,
        persona_index(calibration, cluster, table["frequency"].to_numpy()),
        cluster,
        stage,
        logged_actions(scenario, table),
        personas,
        window,
        calibration,
    )


def persona_index(
    calibration: Calibration, cluster: IntArray, frequency: FloatArray | None = None
) -> IntArray:
    """Scenario persona of each customer from its persona-model cluster.

    A cluster with rate tiers places a customer by their yearly purchases against the cuts
    fitted on the calibration customers (the same thirds the tiers are); without
    ``frequency``, in the middle tier. Which tier a customer is in is latent: the forward
    filter (:mod:`nba.calibration.filtering`) infers it from the whole history instead.
    """
    if not calibration.persona_tiers:  # one scenario persona per cluster
        return cluster
    tiers = np.asarray(calibration.persona_tiers)
    if cluster.size and cluster.max() >= len(tiers):
        raise EventLogError(
            f"calibration.persona_tiers: lists {len(tiers)} clusters, the persona model "
            f"assigned cluster {int(cluster.max())}"
        )
    first = np.concatenate([[0], np.cumsum(tiers)[:-1]])
    tier = (tiers // 2)[cluster]
    cuts = calibration.persona_tier_cuts
    if frequency is not None and cuts:
        counts = np.nan_to_num(np.asarray(frequency, dtype=float), nan=0.0)
        for c in np.flatnonzero(tiers > 1):
            mine = cluster == c
            tier[mine] = np.searchsorted(cuts[c], counts[mine], side="right")
    return first[cluster] + tier


def logged_actions(scenario: Scenario, table: pd.DataFrame) -> IntArray:
    """Twin action index of each customer's logged decision (0: held out or not contacted)."""
    names = {name: i for i, name in enumerate(scenario.action_names)}
    sent = (table["contact"] == "sent").fillna(False).to_numpy()
    labels = (
        table["channel"].astype("string").fillna("")
        + "_"
        + table["action"].astype("string").fillna("message")
    ).to_numpy()
    actions = np.zeros(len(table), dtype=np.int64)
    for label in np.unique(labels[sent]):
        if label not in names:
            raise EventLogError(
                f"events: logged action {label!r} is not in the scenario's actions "
                f"{scenario.action_names[1:]}"
            )
        actions[sent & (labels == label)] = names[label]
    return actions


def _calibration(scenario: Scenario) -> Calibration:
    if scenario.calibration is None:
        raise EventLogError("scenario: has no calibration block; run `nba calibrate` first")
    return scenario.calibration
