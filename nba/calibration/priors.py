"""Priors for what an event log cannot identify, read from a template scenario.

A log rarely shows every quantity the twin needs: churn is invisible to recency rules, a
stage nobody is in has no purchase rate, a channel without a randomized control has no
attention. Those are taken from a template scenario of the same business (by default the
built-in ``retail``, whose values are sourced in its YAML), stage by stage through
:func:`nba.calibration.stages.stage_roles`, and marked ``assumed`` in the parameter table. The
template also names the calibrated scenario's stages and supplies the costs and pressures of
channels it knows by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nba.calibration.events import EventLogError
from nba.calibration.stages import ACTIVE, CHURNED, STAGES, stage_roles
from nba.scenario import Scenario

Move = tuple[str, str]  # (from, to) in rule-stage names (STAGES)


@dataclass(frozen=True)
class Priors:
    """The template's values, keyed by rule stage (:data:`STAGES`) where they concern stages.

    ``affinity``, ``lift`` and the channel defaults are generic: a log names its own channels
    and offers, so the template rarely has the same ones.
    """

    source: str  # the template's name, quoted in every assumed row's method
    stage_names: dict[str, str]  # rule stage -> the calibrated scenario's stage name
    daily: dict[Move, float]  # daily moves between rule stages, by source stage
    on_purchase: dict[Move, float]  # moves on a purchase day, grouped by destination
    stage_multiplier: dict[str, float]  # purchase multiplier relative to ``active``
    channels: dict[str, tuple[float, int]]  # template channel -> (cost, pressure)
    notice_drop: float
    unsubscribe_multiplier: float
    churn_at_full_pressure: float
    discount_factor: float
    pressure_capacity: int
    pressure_drain: int
    affinity: float = 0.2
    lift: float = 0.02
    channel_cost: float = 0.05
    channel_pressure: int = 1
    unsubscribe_risk: float = 0.005
    # the template's own channels, offers and actions (as scenario dicts) and its share-weighted
    # attention per channel: what a log without sends is given to act with
    template_channels: tuple[dict[str, Any], ...] = ()
    template_offers: tuple[dict[str, Any], ...] = ()
    template_actions: tuple[dict[str, Any], ...] = ()
    template_affinity: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_template(cls, template: Scenario, stages: Mapping[str, str] | None = None) -> Priors:
        """Read ``template``; ``stages`` maps rule stages to its stage names (see stage_roles)."""
        names = stage_roles(template, stages)
        by_name = {stage.name: stage for stage in template.stages}
        role_of = {name: role for role, name in names.items()}
        order = {role: k for k, role in enumerate(STAGES)}
        daily, on_purchase = {}, {}
        for role in STAGES:
            stage = by_name[names[role]]
            for dst, p in stage.daily.items():
                if dst in role_of and p > 0:
                    daily[(role, role_of[dst])] = float(p)
            for dst, p in stage.on_purchase.items():
                if dst in role_of and p > 0:
                    on_purchase[(role, role_of[dst])] = float(p)
        anchor = by_name[names[STAGES[ACTIVE]]].purchase_multiplier
        if anchor <= 0:
            raise EventLogError(
                f"template: stage {names[STAGES[ACTIVE]]!r} (the rules' 'active') has purchase "
                "multiplier 0, so stage multipliers relative to it are undefined"
            )
        multiplier = {
            role: by_name[names[role]].purchase_multiplier / anchor for role in STAGES[:CHURNED]
        }
        rules = template.contact_rules
        return cls(
            source=template.name,
            stage_names=names,
            daily=daily,
            on_purchase=dict(
                sorted(on_purchase.items(), key=lambda m: (order[m[0][1]], order[m[0][0]]))
            ),
            stage_multiplier=multiplier,
            channels={c.name: (c.cost, c.pressure) for c in template.channels},
            notice_drop=template.fatigue.notice_drop,
            unsubscribe_multiplier=template.fatigue.unsubscribe_multiplier,
            churn_at_full_pressure=template.fatigue.churn_at_full_pressure,
            discount_factor=template.discount_factor,
            pressure_capacity=rules.pressure_capacity,
            pressure_drain=rules.pressure_drain,
            **_template_catalogue(template, set(names.values())),
        )

    def channel(self, name: str) -> tuple[float, int]:
        """(cost, pressure) of a logged channel: the template's when it has one of that name."""
        return self.channels.get(name, (self.channel_cost, self.channel_pressure))


def _template_catalogue(template: Scenario, stages: set[str]) -> dict[str, Any]:
    """The template's channels, offers and actions, and its mean attention per channel.

    Offers keep only the stage-keyed effects of stages the calibrated scenario has (``stages``):
    retail's ``considering`` and ``advocate`` have no rule stage, so moves into or out of them
    are dropped.
    """
    offers = []
    for offer in template.offers:
        spec = offer.model_dump(mode="json")
        spec["lift_by_stage"] = {k: v for k, v in spec["lift_by_stage"].items() if k in stages}
        spec["stage_moves"] = {
            src: kept
            for src, moves in spec["stage_moves"].items()
            if src in stages and (kept := {d: v for d, v in moves.items() if d in stages})
        }
        offers.append(spec)
    total = sum(p.share for p in template.personas) or 1.0
    affinity = {
        c.name: sum(p.share * p.channel_affinity.get(c.name, 0.0) for p in template.personas)
        / total
        for c in template.channels
    }
    return {
        "template_channels": tuple(c.model_dump(mode="json") for c in template.channels),
        "template_offers": tuple(offers),
        "template_actions": tuple(a.model_dump(mode="json") for a in template.actions),
        "template_affinity": affinity,
    }
