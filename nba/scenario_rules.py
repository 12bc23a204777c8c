"""The scenario's contact rules section: consent settings live on channels, the rest here.

Each rule kind is a model (caps, quiet days, the global cap, exclusions) validated against the
scenario's catalogues by :func:`check_contact_rules`; :mod:`nba.contact_rules` compiles and
decides them. A new rule kind is a field here plus its declaration there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from nba.scenario_base import ConfigModel, Weekday, check_known, unique_names

MAX_CAPS = 16
MAX_EXCLUSIONS = 64


class CapRule(ConfigModel):
    """At most one contact on the listed channels in any rolling window of ``window_days``."""

    name: str = Field(min_length=1)
    channels: list[str] = Field(min_length=1)
    window_days: int = Field(ge=2, le=60)


class Exclusion(ConfigModel):
    """Offers a customer in one of ``stages`` must not get (a business rule, not a preference).

    An action is excluded when the customer's stage is listed and the action's offer is in
    ``offers`` and its channel in ``channels``; an empty ``offers`` or ``channels`` means every
    offer or channel. For example, no plan upgrade pitched to a customer at risk of cancelling::

        exclusions:
          - {name: no_upsell_at_risk, stages: [at_risk], offers: [plan_upgrade]}
    """

    name: str = Field(min_length=1, description="Reported as the reason an action is blocked.")
    description: str = ""
    stages: list[str] = Field(min_length=1, description="Stages the exclusion applies in.")
    offers: list[str] = Field(
        default_factory=list, description="Offers excluded in those stages (empty: every offer)."
    )
    channels: list[str] = Field(
        default_factory=list,
        description="Channels the exclusion covers (empty: every channel).",
    )


class ContactRules(ConfigModel):
    """Business rules applied before any contact: consent, caps, a global cap, quiet days and
    stage exclusions (:mod:`nba.contact_rules` decides them, in that module's order).

    The global cap is a leaky bucket (the usual frequency-capping algorithm): each contact adds
    its channel's ``pressure``, each day without contact drains ``pressure_drain``, and a contact
    that would overflow ``pressure_capacity`` is not allowed. The level doubles as fatigue.
    """

    pressure_capacity: int = Field(ge=1, le=30)
    pressure_drain: int = Field(ge=1)
    caps: list[CapRule] = Field(default_factory=list, max_length=MAX_CAPS)
    quiet_days: dict[str, list[Weekday]] = Field(default_factory=dict)
    exclusions: list[Exclusion] = Field(
        default_factory=list,
        max_length=MAX_EXCLUSIONS,
        description="Offers never made to customers in given stages (see Exclusion).",
        exclude_if=lambda value: not value,  # absent when empty: older fingerprints hold
    )


def check_contact_rules(
    rules: ContactRules,
    channels: Sequence[Any],
    stages: list[str],
    offers: list[str],
    problems: list[str],
) -> None:
    """Add to ``problems`` every reference to an unknown stage, offer or channel, every
    duplicate rule name, and every channel whose one contact would overflow the global cap."""
    names = [channel.name for channel in channels]
    for i, cap in enumerate(rules.caps):
        check_known(f"contact_rules.caps[{i}].channels", cap.channels, names, problems)
    unique_names("contact_rules.caps", rules.caps, problems)
    check_known("contact_rules.quiet_days", rules.quiet_days, names, problems)
    unique_names("contact_rules.exclusions", rules.exclusions, problems)
    for i, exclusion in enumerate(rules.exclusions):
        where = f"contact_rules.exclusions[{i}]"
        check_known(f"{where}.stages", exclusion.stages, stages, problems)
        check_known(f"{where}.offers", exclusion.offers, offers, problems)
        check_known(f"{where}.channels", exclusion.channels, names, problems)
    for i, channel in enumerate(channels):
        if channel.pressure > rules.pressure_capacity:
            problems.append(
                f"channels[{i}].pressure: {channel.pressure} exceeds "
                f"contact_rules.pressure_capacity {rules.pressure_capacity}: never allowed"
            )
