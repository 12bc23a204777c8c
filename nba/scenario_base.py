"""What every part of the scenario format shares: the strict frozen model, value types, checks.

:mod:`nba.scenario` and :mod:`nba.scenario_rules` build on these; users import the models from
:mod:`nba.scenario`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
PositiveInt = Annotated[int, Field(ge=1)]
Barrier = Literal["price", "trust", "awareness", "convenience"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

#: How far probabilities that must sum to 1 (or at most 1) may stray: float rounding only.
SUM_TOLERANCE = 1e-6


class ConfigModel(BaseModel):
    """A scenario section: unknown keys are refused and a loaded value never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def unique_names(field: str, items: Iterable[Any], problems: list[str]) -> list[str]:
    """The items' names; a duplicate is added to ``problems`` under ``field``."""
    names = [item.name for item in items]
    duplicates = sorted(n for n, count in Counter(names).items() if count > 1)
    if duplicates:
        problems.append(f"{field}: duplicate names {duplicates}")
    return names


def check_known(field: str, keys: Iterable[str], known: list[str], problems: list[str]) -> None:
    """Add to ``problems`` every key of ``field`` that is not one of ``known``."""
    unknown = [k for k in keys if k not in known]
    if unknown:
        problems.append(f"{field}: unknown {unknown}, expected one of {known}")


def hashed_form(data: dict[str, Any]) -> dict[str, Any]:
    """A scenario's plain form as its fingerprint hashes it: fields added later are hashed only
    when set away from their default (channels' ``reports_opens``), and calibrated 95%
    intervals in the ``low``/``high`` names they were first written with, so exports and logs
    made before stay matched to their scenario."""
    for channel in data.get("channels", []):
        if channel.get("reports_opens") is True:
            del channel["reports_opens"]
    calibration = data.get("calibration")
    if calibration:
        calibration["parameters"] = [
            _legacy_fitted_value(row) for row in calibration.get("parameters", [])
        ]
    return data


def _legacy_fitted_value(row: dict[str, Any]) -> dict[str, Any]:
    """A fitted value as scenarios wrote it before ``lower``/``upper``/``confidence``."""
    if row.get("confidence") not in (None, 0.95):
        return row
    legacy = {k: v for k, v in row.items() if k not in ("lower", "upper", "confidence")}
    return {**legacy, "low": row.get("lower"), "high": row.get("upper")}
