"""Assemble the calibrated scenario from the fitted pieces, and validate it.

The pieces arrive as one typed :class:`FittedScenario`; stages take the template's names
(through :class:`priors.Priors`), channels and offers the log's, and whatever the log cannot
say (fatigue's opt-out and churn response, the contact budget, the discount) the template's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.personas import PersonaModel
from nba.calibration.priors import Move, Priors
from nba.calibration.response import Action, Response
from nba.calibration.stages import CHURNED, STAGES, StageRules
from nba.scenario import Scenario
from nba.types import FloatArray

TIER_NAMES = ("low", "mid", "high")  # one per rate tier (heterogeneity.RATE_TIERS)


@dataclass(frozen=True)
class FittedScenario:
    """Everything calibration fitted or assumed, in the calibration's own indexing.

    Personas are persona-model clusters (P), stages the rule stages (:data:`STAGES`), actions
    the logged (channel, offer) pairs.
    """

    name: str
    data_label: str
    reference: pd.Timestamp
    window_days: int
    horizon_days: int
    margin_rate: float
    priors: Priors
    rules: StageRules
    personas: PersonaModel
    describe: list[str]  # (P,) one line per cluster
    shares: FloatArray  # (P,)
    initial: FloatArray  # (P, K) starting stage shares
    base: FloatArray  # (P,) base purchase rate per day
    baskets: list[float]  # (P,)
    tiers: list[FloatArray]  # per cluster: its rate tiers' multipliers
    tier_cuts: list[list[float]]
    stage_multiplier: dict[str, float]  # rule stage -> purchase multiplier
    daily: dict[Move, float]
    on_purchase: dict[Move, float]
    channels: list[str]
    actions: list[Action]
    response: Response
    unsubscribe: dict[str, float]  # channel -> risk per noticed send
    notice_drop: float
    customers: int
    observation_end: pd.Timestamp | None = None  # the explicit end of the record, if given
    template_contact: bool = False  # no sends logged: channels/offers/actions are the template's
    heterogeneity: dict[str, Any] | None = None  # each customer's own levels (levels.py), if fitted
    history_start: str | None = None  # how the filter reads its customers, where not the default


def assemble(fit: FittedScenario, parameters: pd.DataFrame) -> Scenario:
    """Build and validate the scenario from the fitted pieces and the parameter table."""
    priors = fit.priors
    offers, actions = _catalogue(fit)
    data = {
        "name": fit.name,
        "description": f"Calibrated from {fit.data_label} at {fit.reference.isoformat()}.",
        "horizon_days": int(fit.horizon_days),
        "discount_factor": priors.discount_factor,
        "margin_rate": float(fit.margin_rate),
        "churn_stage": priors.stage_names[STAGES[CHURNED]],
        "stages": _stages(fit),
        "channels": _channels(fit),
        "offers": offers,
        "actions": actions,
        "personas": _personas(fit),
        "response": {"barrier_match_boost": 0.0, "source": "per-persona offer_response instead"},
        "fatigue": {
            "notice_drop": float(fit.notice_drop),
            "unsubscribe_multiplier": priors.unsubscribe_multiplier,
            "churn_at_full_pressure": priors.churn_at_full_pressure,
            "source": "notice_drop per the calibration table; the rest is the "
            f"{priors.source} prior",
        },
        "discount_habit": {
            "gain": 0.0,
            "decay": 0.0,
            "full_price_penalty": 0.0,
            "discount_response_bonus": 0.0,
            "source": "no discount information in the log",
        },
        "contact_rules": {
            "pressure_capacity": priors.pressure_capacity,
            "pressure_drain": priors.pressure_drain,
        },
        "calibration": _calibration(fit, parameters),
    }
    if fit.heterogeneity is not None:  # absent otherwise: the scenario is as it always was
        data["heterogeneity"] = fit.heterogeneity
    return Scenario.from_dict(data)


def _catalogue(fit: FittedScenario) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Offers and actions: the logged ones, or the template's when the log has no sends."""
    if fit.template_contact:
        return list(fit.priors.template_offers), list(fit.priors.template_actions)
    offers, actions = [], []
    for a, (channel, action) in enumerate(fit.actions):
        offer = fit.response.offers[a]
        offers.append(
            {
                "name": offer,
                "description": f"what the log calls '{action}'"
                + (f" on {channel}" if offer != action else ""),
                "purchase_lift": float(fit.response.pooled_lift[a]),
            }
        )
        actions.append({"name": f"{channel}_{action}", "channel": channel, "offer": offer})
    return offers, actions


def _channels(fit: FittedScenario) -> list[dict[str, Any]]:
    if fit.template_contact:  # the template's channels, opt-out risk as in the table
        return [
            c | {"unsubscribe_risk": fit.unsubscribe[c["name"]]}
            for c in fit.priors.template_channels
        ]
    channels = []
    for name in fit.channels:
        cost, pressure = fit.priors.channel(name)
        channels.append(
            {
                "name": name,
                "description": "calibrated from the event log",
                "cost": cost,
                "pressure": pressure,
                "unsubscribe_risk": fit.unsubscribe[name],
            }
        )
    return channels


def _stages(fit: FittedScenario) -> list[dict[str, Any]]:
    names = fit.priors.stage_names

    def moves(table: dict[Move, float], src: str) -> dict[str, float]:
        return {
            names[dst]: round(float(v), 6) for (s, dst), v in table.items() if s == src and v > 0
        }

    stages: list[dict[str, Any]] = [
        {
            "name": names[role],
            "purchase_multiplier": round(float(fit.stage_multiplier.get(role, 0.0)), 6),
            "on_purchase": moves(fit.on_purchase, role),
            "daily": moves(fit.daily, role),
        }
        for role in STAGES[:CHURNED]
    ]
    stages.append({"name": names[STAGES[CHURNED]], "purchase_multiplier": 0.0, "absorbing": True})
    return stages


def _personas(fit: FittedScenario) -> list[dict[str, Any]]:
    """One persona per cluster, or its rate tiers; shares renormalised to sum to one."""
    names, response = fit.priors.stage_names, fit.response
    personas = []
    for p in range(fit.personas.k):
        start = {names[STAGES[k]]: float(np.nan_to_num(fit.initial[p, k])) for k in range(CHURNED)}
        total = sum(start.values()) or 1.0
        start = {k: v / total for k, v in start.items()}
        offer_response = {}
        for a, offer in enumerate(response.offers):
            pooled = response.pooled_lift[a]
            if response.lift_source[p, a] == "fitted" and pooled > 0:
                offer_response[offer] = round(float(response.lift[p, a] / pooled), 6)
        persona = {
            "name": f"persona_{p}",
            "description": fit.describe[p],
            "share": float(fit.shares[p]),
            "price_sensitivity": 0.5,
            "base_purchase_rate": float(fit.base[p]),
            "basket_value": max(float(fit.baskets[p]), 0.01),
            "channel_affinity": {
                name: float(response.affinity[p, c]) for c, name in enumerate(fit.channels)
            },
            "consent": list(fit.channels),
            "initial_stages": start,
            "offer_response": offer_response,
        }
        personas.extend(tiered(persona, fit.tiers[p]))
    shares = np.array([p["share"] for p in personas])
    for p, share in zip(personas, shares / shares.sum(), strict=True):
        p["share"] = float(share)
    return personas


def tiered(persona: dict[str, Any], multipliers: FloatArray) -> list[dict[str, Any]]:
    """The persona, or its equal-share rate tiers (``persona_3_low``, ``_mid``, ``_high``)."""
    if len(multipliers) == 1:
        return [persona]
    return [
        persona
        | {
            "name": f"{persona['name']}_{name}",
            "description": f"{persona['description']} (rate tier {name}: x{m:.2f})",
            "share": persona["share"] / len(multipliers),
            "base_purchase_rate": min(persona["base_purchase_rate"] * float(m), 1.0),
        }
        for name, m in zip(TIER_NAMES, multipliers, strict=True)
    ]


def _calibration(fit: FittedScenario, parameters: pd.DataFrame) -> dict[str, Any]:
    """The scenario's calibration block: provenance, persona model, rules, observables."""
    names = [fit.priors.stage_names[role] for role in STAGES]
    action_names = [action["name"] for action in _catalogue(fit)[1]]
    return {
        "data": fit.data_label,
        "reference_time": fit.reference.isoformat(),
        "response_window_days": int(fit.window_days),
        "persona_model": fit.personas.to_dict(),
        "persona_tiers": [len(m) for m in fit.tiers],
        "persona_tier_cuts": fit.tier_cuts,
        "stage_rules": fit.rules.to_dict(names),
        "observables": {
            "calibration_customers": int(fit.customers),
            "organic_visit_rate": [float(v) for v in fit.response.organic_visit],
            "click_through": {
                name: [float(v) for v in fit.response.click[:, a]]
                for a, name in enumerate(action_names)
            },
            **_provenance(fit),
        },
        "parameters": [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in parameters.to_dict(orient="records")
        ],
    }


def _provenance(fit: FittedScenario) -> dict[str, Any]:
    """Observables only some calibrations have (absent otherwise, so older twins are unchanged):
    ``sends_logged: false`` for a purchase-only log, the explicit ``observation_end``, and
    ``history_start`` where the filter should read customers other than from the log's start."""
    extra: dict[str, Any] = {"sends_logged": False} if fit.template_contact else {}
    if fit.observation_end is not None:
        extra["observation_end"] = fit.observation_end.isoformat()
    if fit.history_start is not None:
        extra["history_start"] = fit.history_start
    return extra
