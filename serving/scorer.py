"""``PolicyScorer``: score customer states with an exported policy, numpy and pandas only.

Input: one row per customer with the state the twin tracks (see :data:`INPUT_COLUMNS` and
:meth:`PolicyScorer.input_schema`). The scorer validates every row, builds features with the
same :class:`~nba.features.FeatureBuilder` as training, applies the same contact rules, runs
the network and returns the best allowed action, its probability under the policy restricted
to allowed actions, and the policy's value estimate. It never imports torch or unpickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.contact_rules import action_mask
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.serving.spec import ExportedPolicy, load_exported
from nba.state import CustomerState

#: Columns every request needs; ``days_since_<cap>`` exist once per cap rule of the scenario.
INPUT_COLUMNS = ("persona", "stage", "pressure", "discount_habit", "opted_out")


class ScoringInputError(NBAValidationError):
    """A request row that cannot be scored; the message names the row, field and problem."""


@dataclass
class PolicyScorer:
    """Scores customers with an exported policy.

    :param policy: a loaded export (see :meth:`load`).
    :param model_version: reported with every decision (registry version or a label).
    """

    policy: ExportedPolicy
    model_version: str = "local"

    def __post_init__(self) -> None:
        self.arrays = ScenarioArrays.from_scenario(self.policy.scenario)
        self.features = FeatureBuilder(self.arrays)
        if self.features.names != self.policy.feature_names:
            raise NBAValidationError("policy.json features: do not match the scenario's features")
        self.cap_columns = [
            f"days_since_{cap.name}" for cap in self.policy.scenario.contact_rules.caps
        ]

    @classmethod
    def load(cls, source: str | Path, model_version: str | None = None) -> PolicyScorer:
        """Load from an export directory, or an MLflow ``models:/...`` / ``runs:/...`` URI."""
        text = str(source)
        if text.startswith(("models:/", "runs:/")):
            import mlflow.artifacts

            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
            folder = (
                local / "artifacts" / "policy"
                if (local / "artifacts" / "policy").is_dir()
                else local
            )
            return cls(load_exported(folder), model_version or text)
        return cls(load_exported(source), model_version or "local")

    @property
    def required_columns(self) -> list[str]:
        return [*INPUT_COLUMNS, *self.cap_columns]

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of one request row."""
        scenario = self.policy.scenario
        properties: dict[str, Any] = {
            "persona": {"type": "string", "enum": scenario.persona_names},
            "stage": {"type": "string", "enum": scenario.stage_names},
            "pressure": {
                "type": "integer",
                "minimum": 0,
                "maximum": scenario.contact_rules.pressure_capacity,
            },
            "discount_habit": {"type": "boolean"},
            "opted_out": {"type": "boolean"},
            "day": {"type": "integer", "minimum": 0, "maximum": scenario.horizon_days - 1},
        }
        for cap, column in zip(scenario.contact_rules.caps, self.cap_columns, strict=True):
            properties[column] = {"type": "integer", "minimum": 1, "description": cap.name}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": properties,
            "required": self.required_columns,
            "additionalProperties": True,
        }

    def score_batch(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One decision per row, in input order."""
        state, day = self._parse(frame)
        obs = self.features.build(state, day)
        weekday = (self.arrays.weekday_of_start + day) % 7
        mask = action_mask(
            self.arrays.rules, state.consent(self.arrays), state.pressure, state.days_since, weekday
        )
        preferences = self.policy.policy.forward(obs).astype(np.float64)
        masked = np.where(mask, preferences, -np.inf)
        action = np.argmax(masked, axis=1)
        if self.policy.output_kind == "logits":
            shifted = np.exp(masked - masked.max(axis=1, keepdims=True))
            probability = shifted[np.arange(len(action)), action] / shifted.sum(axis=1)
        else:
            probability = np.ones(len(action))
        if self.policy.value is not None:
            value = self.policy.value.forward(obs)[:, 0] * self.policy.value_scale
        else:
            value = np.max(masked, axis=1)
        catalogue = self.policy.spec["actions"]
        return pd.DataFrame(
            {
                "action": action,
                "action_name": [catalogue[a]["name"] for a in action],
                "channel": [catalogue[a]["channel"] for a in action],
                "offer": [catalogue[a]["offer"] for a in action],
                "probability": probability,
                "value_estimate": value,
                "model_version": self.model_version,
            },
            index=frame.index,
        )

    def score(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """Score one customer given as a mapping; returns the decision as a dict."""
        return self.score_batch(pd.DataFrame([dict(customer)])).iloc[0].to_dict()

    # ------------------------------------------------------------------ validation
    def _parse(self, frame: pd.DataFrame) -> tuple[CustomerState, np.ndarray]:
        if not isinstance(frame, pd.DataFrame):
            raise ScoringInputError(
                f"input: expected a pandas DataFrame, got {type(frame).__name__}"
            )
        missing = [c for c in self.required_columns if c not in frame.columns]
        if missing:
            raise ScoringInputError(f"input: missing column(s) {missing}")
        scenario = self.policy.scenario
        persona = _categories(frame, "persona", scenario.persona_names)
        stage = _categories(frame, "stage", scenario.stage_names)
        capacity = scenario.contact_rules.pressure_capacity
        pressure = _integers(frame, "pressure", 0, capacity)
        days = [
            np.minimum(_integers(frame, column, 1, None), cap.window_days)
            for column, cap in zip(self.cap_columns, scenario.contact_rules.caps, strict=True)
        ]
        day = (
            _integers(frame, "day", 0, scenario.horizon_days - 1)
            if "day" in frame.columns
            else np.zeros(len(frame), dtype=np.int64)
        )
        state = CustomerState(
            persona=persona,
            stage=stage,
            pressure=pressure,
            days_since=np.stack(days, axis=1) if days else np.zeros((len(frame), 0), np.int64),
            habit=_booleans(frame, "discount_habit"),
            opted_out=_booleans(frame, "opted_out"),
        )
        return state, day


def _first_bad(frame: pd.DataFrame, bad: np.ndarray) -> Any:
    return frame.index[int(np.flatnonzero(bad)[0])]


def _categories(frame: pd.DataFrame, column: str, names: list[str]) -> np.ndarray:
    values = frame[column]
    codes = pd.Categorical(values, categories=names).codes.astype(np.int64)
    bad = codes < 0
    if bad.any():
        row = _first_bad(frame, bad)
        raise ScoringInputError(
            f"row {row!r}, {column}: unknown value {values.loc[row]!r}; expected one of {names}"
        )
    return codes


def _integers(frame: pd.DataFrame, column: str, low: int, high: int | None) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = _first_bad(frame, bad)
        raise ScoringInputError(
            f"row {row!r}, {column}: expected a whole number, got {frame[column].loc[row]!r}"
        )
    bad = (values < low) | ((values > high) if high is not None else False)
    if np.any(bad):
        row = _first_bad(frame, np.asarray(bad))
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ScoringInputError(
            f"row {row!r}, {column}: {frame[column].loc[row]!r} is outside {bounds}"
        )
    return values.astype(np.int64)


def _booleans(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy()
    mapped = values.map({True: True, False: False})
    bad = mapped.isna().to_numpy()
    if bad.any():
        row = _first_bad(frame, bad)
        raise ScoringInputError(
            f"row {row!r}, {column}: expected true or false, got {values.loc[row]!r}"
        )
    return mapped.to_numpy(dtype=bool)
