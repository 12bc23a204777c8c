"""A scenario compiled to numpy arrays, indexed the way the twin, rules and kernel index them.

Index conventions: action 0 is "no action"; action ``a >= 1`` is ``scenario.actions[a - 1]``.
Channel, offer, persona and stage indices follow the scenario's list order. Offer index ``-1``
and channel index ``-1`` stand for "no action".
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from nba.contact_rules import ContactRuleArrays
from nba.scenario import Scenario
from nba.types import WEEKDAYS, BoolArray, FloatArray, IntArray


@dataclass(frozen=True)
class ScenarioArrays:
    """Numeric view of a :class:`~nba.scenario.Scenario` used on every hot path."""

    scenario: Scenario
    rules: ContactRuleArrays
    # actions
    action_offer: IntArray  # (A,) offer index, -1 for no action
    action_cost: FloatArray  # (A,) contact cost
    action_discount: FloatArray  # (A,)
    # personas
    persona_share: FloatArray  # (P,)
    persona_base_rate: FloatArray  # (P,)
    persona_basket: FloatArray  # (P,)
    persona_price_sensitivity: FloatArray  # (P,)
    persona_affinity: FloatArray  # (P, C)
    persona_consent: BoolArray  # (P, C)
    persona_initial_stage: FloatArray  # (P, K)
    persona_initial_habit: FloatArray  # (P,)
    barrier_match: BoolArray  # (P, O) offer addresses persona's barrier
    persona_offer_response: FloatArray  # (P, O) multiplier on the offer's lift
    # stages
    stage_purchase_multiplier: FloatArray  # (K,)
    stage_spend_multiplier: FloatArray  # (K,)
    stage_referral_value: FloatArray  # (K,)
    stage_can_buy: BoolArray  # (K,)
    purchase_transition: FloatArray  # (K, K) row-stochastic, after a purchase
    daily_transition: FloatArray  # (K, K) row-stochastic, day without purchase
    # offers
    offer_lift: FloatArray  # (O, K) purchase lift per offer and stage
    offer_moves: FloatArray  # (O + 1, K, K) row-stochastic; last slice = identity (no offer)
    channel_unsubscribe: FloatArray  # (C,)
    churn_stage: int
    # individual levels (one each, multiplier 1, without a heterogeneity block)
    rate_level_multiplier: FloatArray  # (Lr,) on the daily purchase probability
    rate_level_share: FloatArray  # (Lr,)
    dropout_level_multiplier: FloatArray  # (Ld,) on the moves into dropout stages
    dropout_level_share: FloatArray  # (Ld,)
    purchase_transition_by_level: FloatArray  # (Ld, K, K) purchase_transition per level
    daily_transition_by_level: FloatArray  # (Ld, K, K) daily_transition per level

    @property
    def n_actions(self) -> int:
        return self.rules.n_actions

    @property
    def n_rate_levels(self) -> int:
        return int(self.rate_level_share.shape[0])

    @property
    def n_dropout_levels(self) -> int:
        return int(self.dropout_level_share.shape[0])

    @property
    def n_personas(self) -> int:
        return int(self.persona_share.shape[0])

    @property
    def n_stages(self) -> int:
        return int(self.stage_purchase_multiplier.shape[0])

    @cached_property
    def weekday_of_start(self) -> int:
        return WEEKDAYS.index(self.scenario.start_weekday)

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> ScenarioArrays:
        stage_and_offer = _stage_and_offer_arrays(scenario)
        return cls(
            scenario=scenario,
            rules=ContactRuleArrays.from_scenario(scenario),
            **_action_arrays(scenario),
            **_persona_arrays(scenario),
            **stage_and_offer,
            **_level_arrays(scenario, stage_and_offer),
            channel_unsubscribe=np.array([c.unsubscribe_risk for c in scenario.channels]),
            churn_stage=scenario.stage_names.index(scenario.churn_stage),
        )


def _action_arrays(scenario: Scenario) -> dict[str, Any]:
    """Offer, contact cost and discount of each action (index 0: no action)."""
    channels, offers = scenario.channel_names, scenario.offer_names
    action_channel = np.array(
        [-1, *(channels.index(a.channel) for a in scenario.actions)], dtype=np.int64
    )
    action_offer = np.array(
        [-1, *(offers.index(a.offer) for a in scenario.actions)], dtype=np.int64
    )
    channel_cost = np.array([c.cost for c in scenario.channels])
    offer_discount = np.array([o.discount for o in scenario.offers])
    return {
        "action_offer": action_offer,
        "action_cost": np.where(action_channel >= 0, channel_cost[action_channel], 0.0),
        "action_discount": np.where(action_offer >= 0, offer_discount[action_offer], 0.0),
    }


def _persona_arrays(scenario: Scenario) -> dict[str, Any]:
    """Every per-persona table: shares, rates, affinities, consent, start distribution."""
    stages, channels, personas = scenario.stage_names, scenario.channel_names, scenario.personas
    initial_stage = np.array([[p.initial_stages.get(s, 0.0) for s in stages] for p in personas])
    initial_stage /= initial_stage.sum(axis=1, keepdims=True)
    return {
        "persona_share": np.array([p.share for p in personas]),
        "persona_base_rate": np.array([p.base_purchase_rate for p in personas]),
        "persona_basket": np.array([p.basket_value for p in personas]),
        "persona_price_sensitivity": np.array([p.price_sensitivity for p in personas]),
        "persona_affinity": np.array([[p.channel_affinity[c] for c in channels] for p in personas]),
        # a channel that needs no consent (paid social audiences) is open to every persona
        "persona_consent": np.array(
            [
                [c.name in p.consent or not c.requires_consent for c in scenario.channels]
                for p in personas
            ]
        ),
        "persona_initial_stage": initial_stage,
        "persona_initial_habit": np.array([p.initial_discount_habit for p in personas]),
        "barrier_match": np.array(
            [[p.barrier in o.addresses for o in scenario.offers] for p in personas]
        ),
        "persona_offer_response": np.array(
            [[p.offer_response.get(o.name, 1.0) for o in scenario.offers] for p in personas]
        ),
    }


def _stage_and_offer_arrays(scenario: Scenario) -> dict[str, Any]:
    """Per-stage multipliers and transitions, and each offer's lift and stage moves."""
    stages = scenario.stage_names
    n_stages, n_offers = len(stages), len(scenario.offer_names)
    offer_lift = np.array(
        [[o.purchase_lift * o.lift_by_stage.get(s, 1.0) for s in stages] for o in scenario.offers]
    )
    can_buy = np.array([not s.absorbing for s in scenario.stages])
    offer_moves = np.stack(
        [
            *(_transition_matrix(stages, o.stage_moves) for o in scenario.offers),
            np.eye(n_stages),
        ]
    )
    assert offer_moves.shape == (n_offers + 1, n_stages, n_stages)
    return {
        "stage_purchase_multiplier": np.array([s.purchase_multiplier for s in scenario.stages]),
        "stage_spend_multiplier": np.array([s.spend_multiplier for s in scenario.stages]),
        "stage_referral_value": np.array([s.referral_value for s in scenario.stages]),
        "stage_can_buy": can_buy,
        "purchase_transition": _transition_matrix(
            stages, {s.name: s.on_purchase for s in scenario.stages}
        ),
        "daily_transition": _transition_matrix(stages, {s.name: s.daily for s in scenario.stages}),
        "offer_lift": np.clip(offer_lift * can_buy[None, :], 0.0, 1.0),
        "offer_moves": offer_moves,
    }


def _level_arrays(scenario: Scenario, stage_arrays: dict[str, Any]) -> dict[str, Any]:
    """Each level's multiplier and share, and the stage transitions of each dropout level."""
    levels = scenario.heterogeneity
    purchase, daily = stage_arrays["purchase_transition"], stage_arrays["daily_transition"]
    if levels is None:  # one level each: today's matrices, untouched
        return {
            "rate_level_multiplier": np.ones(1),
            "rate_level_share": np.ones(1),
            "dropout_level_multiplier": np.ones(1),
            "dropout_level_share": np.ones(1),
            "purchase_transition_by_level": purchase[None].copy(),
            "daily_transition_by_level": daily[None].copy(),
        }
    stages = scenario.stage_names
    dropout = np.isin(stages, levels.dropout_stages or [scenario.churn_stage])
    multipliers = np.array([level.multiplier for level in levels.dropout_levels])
    return {
        "rate_level_multiplier": np.array([level.multiplier for level in levels.rate_levels]),
        "rate_level_share": np.array([level.share for level in levels.rate_levels]),
        "dropout_level_multiplier": multipliers,
        "dropout_level_share": np.array([level.share for level in levels.dropout_levels]),
        "purchase_transition_by_level": np.stack(
            [scale_dropout(purchase, dropout, m) for m in multipliers]
        ),
        "daily_transition_by_level": np.stack(
            [scale_dropout(daily, dropout, m) for m in multipliers]
        ),
    }


def scale_dropout(matrix: FloatArray, dropout: BoolArray, multiplier: float) -> FloatArray:
    """A row-stochastic matrix whose moves into ``dropout`` stages are scaled by ``multiplier``.

    Each row's dropout mass (moves to another stage that is a dropout stage) is multiplied, at
    most up to the whole row; the rest of the row (staying included) shrinks or grows in
    proportion so the row still sums to 1. Multiplier 1 returns the same numbers.
    """
    into = dropout[None, :] & ~np.eye(matrix.shape[0], dtype=bool)
    mass = np.where(into, matrix, 0.0).sum(axis=1)
    scaled = np.minimum(mass * multiplier, 1.0)
    rest = 1.0 - mass
    keep = np.divide(1.0 - scaled, rest, out=np.ones_like(rest), where=rest > 0.0)
    factor = np.where(mass > 0.0, scaled / np.where(mass > 0.0, mass, 1.0), 1.0)
    result: FloatArray = np.where(into, matrix * factor[:, None], matrix * keep[:, None])
    return result


def _transition_matrix(stages: list[str], moves: dict[str, dict[str, float]]) -> FloatArray:
    """Row-stochastic matrix from sparse "from -> {to: p}" moves; the remainder stays put."""
    matrix = np.zeros((len(stages), len(stages)))
    for origin, targets in moves.items():
        i = stages.index(origin)
        for target, probability in targets.items():
            matrix[i, stages.index(target)] += probability
    stay = 1.0 - matrix.sum(axis=1)
    matrix[np.arange(len(stages)), np.arange(len(stages))] += np.clip(stay, 0.0, 1.0)
    return matrix
