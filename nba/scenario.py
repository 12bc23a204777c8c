"""Validated scenario configs: the single description of a customer base that the twin simulates.

A scenario names journey stages, channels, offers, actions (channel x offer), personas, the
response and long-run-effect parameters, and the contact rules. It is a frozen pydantic model:
anything inconsistent is refused at load time with a :class:`~nba.errors.ScenarioError` whose
message names the field (``personas[2].channel_affinity.sms: ...``). Scenarios round-trip to YAML.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from nba.errors import ScenarioError
from nba.scenario_base import SUM_TOLERANCE as _SUM_TOLERANCE
from nba.scenario_base import Barrier, NonNegative, PositiveInt, Probability, Weekday, hashed_form
from nba.scenario_base import ConfigModel as _Config
from nba.scenario_base import check_known as _check_known
from nba.scenario_base import unique_names as _unique_names
from nba.scenario_levels import Heterogeneity, Level, check_heterogeneity
from nba.scenario_rules import (
    MAX_CAPS,
    MAX_EXCLUSIONS,
    CapRule,
    ContactRules,
    Exclusion,
    check_contact_rules,
)
from nba.scenario_yaml import (
    MAX_YAML_ALIASES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    read_scenario_yaml,
)

__all__ = [
    "MAX_CAPS",
    "MAX_EXCLUSIONS",
    "MAX_YAML_ALIASES",
    "MAX_YAML_BYTES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "NO_ACTION",
    "Action",
    "Barrier",
    "Calibration",
    "CapRule",
    "Channel",
    "ContactRules",
    "DiscountHabit",
    "Exclusion",
    "Fatigue",
    "FittedValue",
    "Heterogeneity",
    "JourneyMapStep",
    "Level",
    "NonNegative",
    "Offer",
    "Persona",
    "PositiveInt",
    "Probability",
    "Response",
    "Scenario",
    "Stage",
    "Weekday",
]

NO_ACTION = "no_action"
_FIELD_PREFIX = re.compile(r"^[A-Za-z_][\w.\[\]*]*: ")

# Bounds on what a scenario may ask of us: the catalogues stay small enough that validation and
# the arrays built from them are instant (the YAML limits live in nba.scenario_yaml).
MAX_STAGES = 64
MAX_CHANNELS = 64
MAX_OFFERS = 256
MAX_ACTIONS = 1024
MAX_PERSONAS = 1024


class Stage(_Config):
    """A journey stage and how customers leave it."""

    name: str = Field(min_length=1)
    description: str = ""
    purchase_multiplier: NonNegative = Field(
        description="Daily purchase probability = persona base rate x this multiplier."
    )
    spend_multiplier: NonNegative = 1.0
    referral_value: NonNegative = Field(
        0.0, description="Expected margin per day from referrals made by a customer in this stage."
    )
    on_purchase: dict[str, Probability] = Field(
        default_factory=dict, description="Next-stage probabilities after a purchase; rest stays."
    )
    daily: dict[str, Probability] = Field(
        default_factory=dict, description="Next-stage probabilities on a day without purchase."
    )
    absorbing: bool = False
    source: str = Field("", description="Where the sizes of this stage's effects come from.")

    @model_validator(mode="after")
    def _check_sums(self) -> Stage:
        for field in ("on_purchase", "daily"):
            total = sum(getattr(self, field).values())
            if total > 1.0 + _SUM_TOLERANCE:
                raise ValueError(f"{field}: probabilities sum to {total:.4f} > 1")
        if self.absorbing and (self.on_purchase or self.daily or self.purchase_multiplier > 0):
            raise ValueError("absorbing stage must have no transitions and purchase_multiplier 0")
        return self


class Channel(_Config):
    """A contact channel: what a touch costs, how much it tires, how often it drives opt-outs."""

    name: str = Field(min_length=1)
    description: str = ""
    cost: NonNegative = Field(description="Cost of one contact, in currency units.")
    pressure: int = Field(ge=0, description="Contact-pressure units one contact adds.")
    unsubscribe_risk: Probability = Field(
        description="Probability that a customer who notices the contact opts out (rested)."
    )
    requires_consent: bool = True
    daily_capacity: int | None = Field(
        None, ge=0, description="Contacts the channel can make per day across all customers."
    )
    reports_opens: bool = Field(
        True,
        description="Whether the channel's system records that a contact was noticed (an "
        "email open, an app notification tap); a letter or a call centre's script does not.",
    )


class Offer(_Config):
    """What a message carries, which barriers it lowers and how it moves customers."""

    name: str = Field(min_length=1)
    description: str = ""
    discount: float = Field(0.0, ge=0.0, lt=1.0, description="Share of basket value given away.")
    purchase_lift: Probability = Field(
        description="Chance that a noticed message turns a non-buyer into a buyer today."
    )
    lift_by_stage: dict[str, NonNegative] = Field(
        default_factory=dict, description="Multiplier on purchase_lift per stage (default 1)."
    )
    addresses: list[Barrier] = Field(default_factory=list)
    stage_moves: dict[str, dict[str, Probability]] = Field(
        default_factory=dict, description="When noticed: from-stage -> {to-stage: probability}."
    )

    @model_validator(mode="after")
    def _check_moves(self) -> Offer:
        for origin, moves in self.stage_moves.items():
            total = sum(moves.values())
            if total > 1.0 + _SUM_TOLERANCE:
                raise ValueError(f"stage_moves.{origin}: probabilities sum to {total:.4f} > 1")
        return self


class Action(_Config):
    """One intervention the agent can choose: an offer sent through a channel."""

    name: str = Field(min_length=1)
    channel: str
    offer: str


class Persona(_Config):
    """A segment of customers sharing reachability, price sensitivity and a main barrier."""

    name: str = Field(min_length=1)
    description: str = ""
    share: Probability
    barrier: Barrier | None = Field(None, description="The main barrier offers may address.")
    price_sensitivity: Probability = Field(description="Scales how much discounts lift purchase.")
    base_purchase_rate: Probability = Field(description="Daily purchase probability when active.")
    basket_value: float = Field(gt=0.0)
    channel_affinity: dict[str, Probability] = Field(
        description="Probability that a contact on each channel is noticed (rested customer)."
    )
    consent: list[str] = Field(description="Channels the persona has consented to at the start.")
    initial_stages: dict[str, Probability]
    initial_discount_habit: Probability = 0.0
    offer_response: dict[str, NonNegative] = Field(
        default_factory=dict,
        description="Multiplier on each offer's purchase lift for this persona (default 1); "
        "what a randomized test identifies per segment.",
    )

    @model_validator(mode="after")
    def _check_initial_stages(self) -> Persona:
        total = sum(self.initial_stages.values())
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"initial_stages: probabilities sum to {total:.4f}, expected 1")
        return self


class FittedValue(_Config):
    """One calibrated quantity, its uncertainty, and whether the data or a prior set it."""

    name: str = Field(min_length=1, description="Dotted path of the quantity in the scenario.")
    estimate: float
    lower: float | None = None
    upper: float | None = None
    confidence: float | None = Field(default=None, gt=0.0, lt=1.0)
    source: Literal["fitted", "assumed"]
    method: str = ""

    @model_validator(mode="before")
    @classmethod
    def _legacy_interval_names(cls, data: Any) -> Any:
        """Scenarios calibrated before the shared vocabulary said ``low``/``high`` (95%)."""
        if isinstance(data, dict) and ("low" in data or "high" in data):
            data = dict(data)
            data.setdefault("lower", data.pop("low", None))
            data.setdefault("upper", data.pop("high", None))
            if data["lower"] is not None or data["upper"] is not None:
                data.setdefault("confidence", 0.95)
        return data


class Calibration(_Config):
    """Provenance of a scenario fitted from event logs (``nba calibrate``)."""

    data: str = Field(description="What the scenario was fitted from.")
    reference_time: str = Field(description="Calibration cutoff (ISO 8601, UTC).")
    response_window_days: int = Field(ge=1)
    persona_model: dict[str, Any] = Field(
        description="How a customer's attributes map to a persona (scaler and centroids)."
    )
    persona_tiers: list[PositiveInt] = Field(
        default_factory=list,
        description="Scenario personas per persona-model cluster, in cluster order: a cluster "
        "whose customers' rates spread widely is split into latent rate tiers. Empty: one each.",
    )
    persona_tier_cuts: list[list[float]] = Field(
        default_factory=list,
        description="Per cluster, the yearly purchase counts that separate its tiers when a "
        "customer is placed by rules (tiers - 1 ascending values; empty for one tier).",
    )
    stage_rules: dict[str, Any] = Field(description="Recency/frequency thresholds of stages.")
    observables: dict[str, Any] = Field(
        default_factory=dict, description="Rates that are measured but do not drive dynamics."
    )
    parameters: list[FittedValue] = Field(default_factory=list)


class Response(_Config):
    """How offers meet personas."""

    barrier_match_boost: NonNegative = Field(
        description="purchase_lift x (1 + boost) when the offer addresses the persona's barrier."
    )
    source: str = ""


class Fatigue(_Config):
    """Over-contact: attention falls, and opt-outs and churn rise, as contact pressure builds."""

    notice_drop: Probability = Field(description="Share of attention lost at full pressure.")
    unsubscribe_multiplier: NonNegative = Field(
        description="Unsubscribe risk x (1 + multiplier x pressure/capacity)."
    )
    churn_at_full_pressure: Probability = Field(
        description="Churn probability of a noticed contact that fills the pressure capacity."
    )
    source: str = ""


class DiscountHabit(_Config):
    """Habitual discounts: sales now, fewer full-price purchases later."""

    gain: Probability = Field(description="P(habit forms) after a purchase made with a discount.")
    decay: Probability = Field(description="Daily P(habit fades) without a discounted purchase.")
    full_price_penalty: Probability = Field(description="Full-price purchase rate x (1 - this).")
    discount_response_bonus: NonNegative = Field(description="Discount lift x (1 + this).")
    source: str = ""


class JourneyMapStep(_Config):
    """One line of a hand-drawn journey map: in this stage, send this action on a fixed cadence."""

    stage: str
    action: str
    every_days: int = Field(ge=1)
    offset_days: int = Field(0, ge=0)


class Scenario(_Config):
    """A complete, validated description of a customer base and its business rules."""

    name: str = Field(min_length=1)
    description: str = ""
    horizon_days: int = Field(ge=1, le=3650)
    discount_factor: float = Field(gt=0.0, le=1.0)
    margin_rate: Probability = Field(description="Gross margin on full-price revenue.")
    start_weekday: Weekday = "mon"
    churn_stage: str
    stages: list[Stage] = Field(min_length=2, max_length=MAX_STAGES)
    channels: list[Channel] = Field(min_length=1, max_length=MAX_CHANNELS)
    offers: list[Offer] = Field(min_length=1, max_length=MAX_OFFERS)
    actions: list[Action] = Field(min_length=1, max_length=MAX_ACTIONS)
    personas: list[Persona] = Field(min_length=1, max_length=MAX_PERSONAS)
    response: Response
    fatigue: Fatigue
    discount_habit: DiscountHabit
    contact_rules: ContactRules
    journey_map: list[JourneyMapStep] = Field(
        default_factory=list,
        max_length=MAX_STAGES,
        description="The static stage -> action cadence a journey map prescribes (a baseline).",
    )
    calibration: Calibration | None = Field(
        None, description="Set by `nba calibrate`: where the numbers came from, with intervals."
    )
    heterogeneity: Heterogeneity | None = Field(
        None,
        description="Each customer's own purchase-rate and dropout levels (absent: one each).",
        exclude_if=lambda value: value is None,  # absent when unset: older fingerprints hold
    )

    @model_validator(mode="after")
    def _check_references(self) -> Scenario:
        problems: list[str] = []
        stages = _unique_names("stages", self.stages, problems)
        channels = _unique_names("channels", self.channels, problems)
        offers = _unique_names("offers", self.offers, problems)
        actions = _unique_names("actions", self.actions, problems)
        _unique_names("personas", self.personas, problems)
        if NO_ACTION in actions:
            problems.append(f"actions: '{NO_ACTION}' is reserved (it is always action 0)")

        if self.churn_stage not in stages:
            problems.append(f"churn_stage: unknown stage '{self.churn_stage}'")
        elif not self.stages[stages.index(self.churn_stage)].absorbing:
            problems.append(f"churn_stage: stage '{self.churn_stage}' must be absorbing")

        for i, stage in enumerate(self.stages):
            for field in ("on_purchase", "daily"):
                _check_known(f"stages[{i}].{field}", getattr(stage, field), stages, problems)
        for i, offer in enumerate(self.offers):
            _check_known(f"offers[{i}].lift_by_stage", offer.lift_by_stage, stages, problems)
            _check_known(f"offers[{i}].stage_moves", offer.stage_moves, stages, problems)
            for origin, moves in offer.stage_moves.items():
                _check_known(f"offers[{i}].stage_moves.{origin}", moves, stages, problems)
        for i, action in enumerate(self.actions):
            _check_known(f"actions[{i}].channel", [action.channel], channels, problems)
            _check_known(f"actions[{i}].offer", [action.offer], offers, problems)

        for i, persona in enumerate(self.personas):
            where = f"personas[{i}]"
            _check_known(f"{where}.channel_affinity", persona.channel_affinity, channels, problems)
            missing = [c for c in channels if c not in persona.channel_affinity]
            if missing:
                problems.append(f"{where}.channel_affinity: missing channels {missing}")
            _check_known(f"{where}.consent", persona.consent, channels, problems)
            _check_known(f"{where}.initial_stages", persona.initial_stages, stages, problems)
            _check_known(f"{where}.offer_response", persona.offer_response, offers, problems)
        share_total = sum(p.share for p in self.personas)
        if abs(share_total - 1.0) > _SUM_TOLERANCE:
            problems.append(f"personas[*].share: shares sum to {share_total:.4f}, expected 1")

        check_contact_rules(self.contact_rules, self.channels, stages, offers, problems)
        check_heterogeneity(self.heterogeneity, stages, problems)
        for i, step in enumerate(self.journey_map):
            _check_known(f"journey_map[{i}].stage", [step.stage], stages, problems)
            _check_known(f"journey_map[{i}].action", [step.action], [NO_ACTION, *actions], problems)
        mapped = [step.stage for step in self.journey_map]
        if len(set(mapped)) != len(mapped):
            problems.append("journey_map: each stage may appear at most once")
        tiers = self.calibration.persona_tiers if self.calibration else []
        if tiers and sum(tiers) != len(self.personas):
            problems.append(
                f"calibration.persona_tiers: {tiers} add up to {sum(tiers)} personas, "
                f"the scenario has {len(self.personas)}"
            )
        cuts = self.calibration.persona_tier_cuts if self.calibration else []
        if cuts and [len(c) + 1 for c in cuts] != tiers:
            problems.append(
                f"calibration.persona_tier_cuts: expected tiers - 1 cuts per cluster {tiers}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # ----------------------------------------------------------------------------------------
    # Construction and serialisation: these are the public doors, and they raise ScenarioError.
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """Validate a plain mapping (as read from YAML or JSON); ``extends: <built-in name>``
        starts from that scenario and replaces its top-level fields with the mapping's."""
        if not isinstance(data, Mapping):
            raise ScenarioError(f"scenario: expected a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(_extended(data))
        except ValidationError as exc:
            raise ScenarioError(_format_validation_error(exc)) from None

    @classmethod
    def from_yaml(cls, source: str | Path) -> Scenario:
        """Load from a YAML file path or a YAML string."""
        return cls.from_dict(read_scenario_yaml(source))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise to YAML; write atomically to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)
        if path is not None:
            from nba.io import write_text_atomic

            write_text_atomic(Path(path), text)
        return text

    def updated(self, changes: Mapping[str, Any]) -> Scenario:
        """A validated copy with top-level fields replaced (``model_copy`` skips validation)."""
        data = self.to_dict()
        data.update(changes)
        return Scenario.from_dict(data)

    def fingerprint(self) -> str:
        """Stable SHA-256 of the canonical JSON form: ties models and logs to their scenario.

        Calibrated provenance is hashed in the interval names it was first written with
        (95% intervals as ``low``/``high``), so exports and logs made before the shared
        ``lower``/``upper``/``confidence`` vocabulary still match their scenario.
        """
        canonical = json.dumps(hashed_form(self.to_dict()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    # Convenience catalogues, in the index order the arrays use.
    @property
    def action_names(self) -> list[str]:
        return [NO_ACTION, *(a.name for a in self.actions)]

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    @property
    def channel_names(self) -> list[str]:
        return [c.name for c in self.channels]

    @property
    def persona_names(self) -> list[str]:
        return [p.name for p in self.personas]

    @property
    def offer_names(self) -> list[str]:
        return [o.name for o in self.offers]


def _format_validation_error(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        location = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        for part in message.split("; "):
            if location and _FIELD_PREFIX.match(part):
                lines.append(f"{location}.{part}")  # a nested validator named its own field
            else:
                lines.append(f"{location or 'scenario'}: {part}")
    return "invalid scenario: " + "; ".join(lines)


def _extended(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data``, or with ``extends`` the built-in scenario it names with ``data``'s top-level
    fields in place of its own (a variant in a few lines, never a copy that drifts)."""
    if "extends" not in data:
        return dict(data)
    from nba.scenarios import builtin_scenario_names, load_scenario  # it imports this module

    base = data["extends"]
    if not isinstance(base, str) or base not in builtin_scenario_names():
        raise ScenarioError(
            f"extends: {base!r} is not a built-in scenario; expected one of "
            f"{builtin_scenario_names()}"
        )
    merged = load_scenario(base).to_dict()
    merged.update({key: value for key, value in data.items() if key != "extends"})
    return merged
