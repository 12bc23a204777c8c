"""The hidden world of a closed-loop simulation (``nba loop --world WORLD.yaml``).

A world is a scenario that plays the customers and only emits what a company sees. The system
starts from a twin of it whose response parameters are wrong: each channel's attention
(``channel_affinity``, for every persona) and each offer's ``purchase_lift`` scaled by its own
factor drawn uniformly in ``[1 - twin_error, 1 + twin_error]``. Those are the parameters the
calibration calls the channel response, and the ones a company's logs can correct: opens tell
attention, purchases after a noticed offer tell its lift (:mod:`nba.loop.response_fit`).

Partway the world changes (:class:`WorldChange`): a channel's response is scaled (it halves), or
a competitor raises churn (every stage's daily move to the churn stage scaled). The system is
not told; its audit has to notice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import Field, ValidationError, model_validator

from nba.errors import NBAValidationError
from nba.scenario import Scenario
from nba.scenario_base import ConfigModel
from nba.scenarios import load_scenario

#: the weeks past the loop's end the world's horizon adds, so late decisions still look ahead
LOOK_AHEAD_WEEKS = 4


class WorldError(NBAValidationError):
    """A world file or option is unusable (names the field)."""


class WorldChange(ConfigModel):
    """What changes in the world at the start of loop week ``week``."""

    week: int = Field(ge=1, description="The loop week the change starts (1 = the first).")
    kind: Literal["channel_response", "churn"] = Field(
        description="channel_response: the channel's attention scaled by factor; churn: every "
        "stage's daily move to the churn stage scaled by factor."
    )
    channel: str | None = Field(None, description="The channel (channel_response only).")
    factor: float = Field(gt=0.0, le=20.0, description="The scale: 0.5 halves it.")

    @model_validator(mode="after")
    def _channel_given(self) -> WorldChange:
        if (self.kind == "channel_response") != (self.channel is not None):
            raise ValueError("channel: needed for kind channel_response, and only for it")
        return self


class WorldSpec(ConfigModel):
    """A closed-loop simulation: the world, the system's starting error, the loop's settings."""

    scenario: str = Field("retail", description="The world's scenario: a built-in name or YAML.")
    customers: int = Field(20_000, ge=200, le=5_000_000)
    burn_in_weeks: int = Field(
        2, ge=1, le=26, description="Weeks of business-as-usual logs the first twin is fitted on."
    )
    weeks: int = Field(12, ge=1, le=104, description="Loop weeks after the burn-in.")
    horizon_days: int | None = Field(
        None, ge=7, description="The world's horizon (default: burn-in + weeks + 4 weeks)."
    )
    twin_error: float = Field(0.3, ge=0.0, le=0.9)
    holdout_share: float = Field(0.1, gt=0.0, le=0.5)
    holdout_salt: str = Field("loop-holdout", min_length=1)
    epsilon: float = Field(0.05, ge=0.0, le=1.0, description="Exploration of treated customers.")
    challenger_share: float = Field(
        0.5, gt=0.0, lt=1.0, description="Treated customers a challenger decides in its test week."
    )
    test_weeks: int = Field(
        1, ge=1, le=8, description="Weeks a challenger is tested before the gate decides."
    )
    drift_threshold: float = Field(4.0, gt=0.0, description="|z| past which the twin drifted.")
    recovery_level: float = Field(
        0.8, gt=0.0, description="Share of the world twin's gap counted as recovered."
    )
    fit_weeks: int = Field(1, ge=1, le=26, description="Latest weeks a recalibration fits on.")
    min_sends: int = Field(
        200, ge=1, description="Sends of a channel or offer a factor needs to be refitted."
    )
    eval_customers: int = Field(10_000, ge=100, description="World-truth evaluation cohort.")
    shadow_customers: int = Field(
        20_000, ge=100, description="Cohorts replaying treated and control for the true lift."
    )
    change: WorldChange | None = WorldChange(
        week=6, kind="channel_response", channel="sms", factor=0.5
    )

    @property
    def loop_start(self) -> int:
        """The first day the system decides (after the burn-in)."""
        return 7 * self.burn_in_weeks

    @property
    def days(self) -> int:
        return 7 * (self.burn_in_weeks + self.weeks)

    @model_validator(mode="after")
    def _fits(self) -> WorldSpec:
        if self.horizon_days is not None and self.horizon_days < self.days:
            raise ValueError(
                f"horizon_days: {self.horizon_days} is shorter than the burn-in and loop "
                f"({self.days} days)"
            )
        if self.change is not None and self.change.week > self.weeks:
            raise ValueError(f"change.week: {self.change.week} is past the loop's {self.weeks}")
        return self


def load_world(source: str | Path | dict[str, Any] | None = None, **overrides: Any) -> WorldSpec:
    """A validated world from a YAML file, a dict or the defaults, with ``overrides`` applied."""
    if source is None:
        data: dict[str, Any] = {}
    elif isinstance(source, dict):
        data = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise WorldError(f"world: no file at {str(path)!r}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise WorldError(f"world: {path.name} is not YAML ({error})") from None
        if not isinstance(data, dict):
            raise WorldError(f"world: {path.name} must be a mapping of settings")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        spec = WorldSpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "world"
        raise WorldError(f"world: {field}: {first['msg']}") from None
    scenario = world_scenario(spec)
    if spec.change is not None and spec.change.channel is not None:
        if spec.change.channel not in scenario.channel_names:
            raise WorldError(
                f"world: change.channel: unknown {spec.change.channel!r}; expected one of "
                f"{scenario.channel_names}"
            )
    return spec


def world_scenario(spec: WorldSpec) -> Scenario:
    """The world's scenario before any change, its horizon long enough for the loop."""
    try:
        scenario = load_scenario(spec.scenario)
    except (NBAValidationError, OSError) as error:
        raise WorldError(f"world: scenario: {error}") from None
    horizon = spec.horizon_days or spec.days + 7 * LOOK_AHEAD_WEEKS
    return _validated(scenario, {"horizon_days": horizon, "name": f"{scenario.name}-world"})


def changed_world(scenario: Scenario, change: WorldChange) -> Scenario:
    """The world after ``change``."""
    if change.kind == "channel_response":
        assert change.channel is not None
        return scale_response(scenario, {change.channel: change.factor}, {}, name="-changed")
    data = scenario.model_dump()
    churn = scenario.churn_stage
    for stage in data["stages"]:
        if churn in stage.get("daily", {}):
            stage["daily"][churn] = min(1.0, stage["daily"][churn] * change.factor)
    data["name"] = f"{scenario.name}-changed"
    return Scenario.model_validate(data)


def scale_response(
    scenario: Scenario,
    channel_factor: dict[str, float],
    offer_factor: dict[str, float],
    name: str = "",
) -> Scenario:
    """``scenario`` with each named channel's attention (every persona's affinity, at most 1)
    and each named offer's purchase lift scaled by its factor."""
    data = scenario.model_dump()
    for persona in data["personas"]:
        affinity = persona["channel_affinity"]
        for channel, factor in channel_factor.items():
            if channel in affinity:
                affinity[channel] = float(min(1.0, affinity[channel] * factor))
    for offer in data["offers"]:
        if offer["name"] in offer_factor:
            offer["purchase_lift"] = float(offer["purchase_lift"] * offer_factor[offer["name"]])
    if name:
        data["name"] = scenario.name + name
    return Scenario.model_validate(data)


def wrong_twin(
    scenario: Scenario, error: float, rng: np.random.Generator
) -> tuple[Scenario, dict[str, dict[str, float]]]:
    """A twin whose channel attention and offer lifts are each off by a factor drawn uniformly
    in ``[1 - error, 1 + error]``; the factors are returned for the report."""
    channels = {c: float(rng.uniform(1 - error, 1 + error)) for c in scenario.channel_names}
    offers = {o.name: float(rng.uniform(1 - error, 1 + error)) for o in scenario.offers}
    twin = scale_response(scenario, channels, offers, name="-twin")
    return twin, {"channel_attention": channels, "offer_lift": offers}


def _validated(scenario: Scenario, update: dict[str, Any]) -> Scenario:
    return Scenario.model_validate({**scenario.model_dump(), **update})
