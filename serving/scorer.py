"""``PolicyScorer``: decide the next best action for live customers, numpy and pandas only.

Per request the scorer validates the rows (:mod:`nba.serving.schema`), builds features with the
training :class:`~nba.features.FeatureBuilder`, applies the contact rules with the training
:func:`~nba.contact_rules.check_rules`, runs the exported network, ranks the allowed actions,
optionally explores with known propensities, optionally shares scarce channels across the batch
(:mod:`nba.serving.capacity`), and can append every decision to a decision log for off-policy
evaluation. It never imports torch and never unpickles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from nba.contact_rules import RuleChecks, check_rules
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.serving.capacity import allocate
from nba.serving.schema import ParsedRequest, RequestSchema, ScoringInputError
from nba.serving.spec import ExportedPolicy, load_exported
from nba.types import WEEKDAYS, BoolArray, FloatArray, IntArray

__all__ = ["Decision", "Exploration", "PolicyScorer", "ScoringInputError"]

_RULES = ("consent", "cap", "global_cap", "quiet_day")


@dataclass(frozen=True)
class Exploration:
    """How the scorer departs from the greedy choice, with propensities it can log.

    ``epsilon``: with probability ``epsilon`` a uniformly random allowed action.
    ``softmax``: sample from the policy's preferences divided by ``temperature``.
    """

    kind: Literal["greedy", "epsilon", "softmax"] = "greedy"
    epsilon: float = 0.0
    temperature: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("greedy", "epsilon", "softmax"):
            raise NBAValidationError(f"exploration.kind: unknown {self.kind!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise NBAValidationError(f"exploration.epsilon: {self.epsilon} is outside [0, 1]")
        if not self.temperature > 0.0:
            raise NBAValidationError(f"exploration.temperature: {self.temperature} must be > 0")


@dataclass
class Decision:
    """The decision for one customer."""

    customer_id: str
    action: int
    action_name: str
    channel: str | None
    offer: str | None
    propensity: float
    value_estimate: float
    model_version: str
    explored: bool
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    suppressed: dict[str, str] | None = None


@dataclass
class PolicyScorer:
    """Scores customers with an exported policy.

    :param policy: a loaded export (see :meth:`load`).
    :param model_version: reported with every decision and logged.
    :param exploration: greedy by default.
    """

    policy: ExportedPolicy
    model_version: str = "local"
    exploration: Exploration = field(default_factory=Exploration)

    def __post_init__(self) -> None:
        self.arrays = ScenarioArrays.from_scenario(self.policy.scenario)
        self.features = FeatureBuilder(self.arrays)
        if self.features.names != self.policy.feature_names:
            raise NBAValidationError("policy.json features: do not match the scenario's features")
        self.schema = RequestSchema(self.arrays)
        self.rng = np.random.default_rng(self.exploration.seed)
        scenario = self.policy.scenario
        catalogue = self.policy.spec["actions"]
        self.action_names = pd.Index([a["name"] for a in catalogue])
        self.action_channel_names = [a["channel"] for a in catalogue]
        self.action_offer_names = [a["offer"] for a in catalogue]
        self._reason_text = _reason_table(scenario, self.arrays)

    @classmethod
    def load(
        cls,
        source: str | Path,
        model_version: str | None = None,
        exploration: Exploration | None = None,
    ) -> PolicyScorer:
        """From an export directory, or an MLflow ``models:/...`` or ``runs:/...`` URI."""
        text = str(source)
        if text.startswith(("models:/", "runs:/")):
            import mlflow.artifacts

            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
            nested = local / "artifacts" / "policy"
            folder = nested if nested.is_dir() else local
            version = model_version or text
        else:
            folder, version = Path(text), model_version or "local"
        return cls(load_exported(folder), version, exploration or Exploration())

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of one request row."""
        return self.schema.json_schema()

    # ------------------------------------------------------------------ scoring
    def score(self, customer: Mapping[str, Any], as_of: datetime | None = None) -> Decision:
        """The decision for one customer given as a mapping of fields."""
        if not isinstance(customer, Mapping):
            raise ScoringInputError(f"input: expected a mapping, got {type(customer).__name__}")
        frame = pd.DataFrame([dict(customer)])
        result = self._decide(frame, as_of=as_of, capacity=None, top_k=self.arrays.n_actions)
        row = result.iloc[0]
        alternatives = [
            {"action": row[f"rank_{k}_action"], "probability": float(row[f"rank_{k}_probability"])}
            for k in range(1, self.arrays.n_actions + 1)
            if row[f"rank_{k}_action"] is not None and float(row[f"rank_{k}_probability"]) > 0
        ]
        suppressed = (
            {"action": row["suppressed_action"], "reason": row["suppressed_reason"]}
            if row["suppressed_action"] is not None
            else None
        )
        return Decision(
            customer_id=str(row["customer_id"]),
            action=int(row["action"]),
            action_name=str(row["action_name"]),
            channel=row["channel"],
            offer=row["offer"],
            propensity=float(row["propensity"]),
            value_estimate=float(row["value_estimate"]),
            model_version=self.model_version,
            explored=bool(row["explored"]),
            alternatives=alternatives,
            suppressed=suppressed,
        )

    def score_batch(
        self,
        frame: pd.DataFrame,
        capacity: Mapping[str, int] | None = None,
        as_of: datetime | None = None,
        top_k: int = 3,
        log: Any | None = None,
    ) -> pd.DataFrame:
        """One decision per row, in input order.

        :param capacity: contacts available per scarce channel in this batch, e.g.
            ``{"call_centre": 500}``; shared to maximise the total gain.
        :param as_of: decision time for rows without ``as_of`` (default: now, UTC).
        :param top_k: ranked alternatives reported per row.
        :param log: a :class:`~nba.serving.decision_log.DecisionLog` to append the decisions to.
        """
        return self._decide(frame, as_of=as_of, capacity=capacity, top_k=top_k, log=log)

    # ------------------------------------------------------------------ internals
    def _decide(
        self,
        frame: pd.DataFrame,
        as_of: datetime | None,
        capacity: Mapping[str, int] | None,
        top_k: int,
        log: Any | None = None,
    ) -> pd.DataFrame:
        request = self.schema.parse(frame, as_of=as_of)
        state = request.state
        obs = self.features.build(state, request.day, weekday=request.weekday)
        checks = check_rules(
            self.arrays.rules, request.consent, state.pressure, state.days_since, request.weekday
        )
        allowed = checks.allowed
        preferences = self.policy.policy.forward(obs).astype(np.float64)
        masked = np.where(allowed, preferences, -np.inf)
        probabilities = self._policy_probabilities(masked)
        greedy = np.argmax(masked, axis=1)
        rows = np.arange(greedy.shape[0])

        if capacity:
            if self.exploration.kind != "greedy":
                raise NBAValidationError(
                    "capacity: allocation is deterministic; use greedy exploration with it"
                )
            chosen, displaced = self._allocate(masked, allowed, capacity)
            propensity = np.ones(greedy.shape[0])
            explored = np.zeros(greedy.shape[0], dtype=bool)
        else:
            chosen, propensity, explored = self._explore(masked, allowed, greedy, probabilities)
            displaced = np.zeros(greedy.shape[0], dtype=bool)

        if self.policy.value is not None:
            value = (
                self.policy.value.forward(obs)[:, 0].astype(np.float64) * self.policy.value_scale
            )
        else:
            value = masked[rows, greedy]
        result = self._frame(
            frame.index,
            request,
            chosen,
            propensity,
            explored,
            value,
            masked,
            probabilities,
            preferences,
            checks,
            displaced,
            top_k,
        )
        if log is not None:
            log.append(
                customer_id=request.customer_id,
                decided_at=request.as_of,
                model_version=self.model_version,
                actions=chosen,
                action_names=self.action_names.to_numpy()[chosen],
                propensities=propensity,
                explored=explored,
                features=obs,
                probabilities=probabilities,
            )
        return result

    def _policy_probabilities(self, masked: FloatArray) -> FloatArray:
        """The policy's distribution over allowed actions (softmax of logits; greedy for Q)."""
        if self.policy.output_kind == "logits":
            shifted = np.exp(masked - masked.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        greedy = np.argmax(masked, axis=1)
        probabilities = np.zeros_like(masked)
        probabilities[np.arange(masked.shape[0]), greedy] = 1.0
        return probabilities

    def _explore(
        self, masked: FloatArray, allowed: BoolArray, greedy: IntArray, probabilities: FloatArray
    ) -> tuple[IntArray, FloatArray, BoolArray]:
        n = greedy.shape[0]
        rows = np.arange(n)
        how = self.exploration
        if how.kind == "greedy":
            return greedy, np.ones(n), np.zeros(n, dtype=bool)
        if how.kind == "epsilon":
            count = allowed.sum(axis=1)
            uniform = _sample(allowed / count[:, None], self.rng)
            explore = self.rng.random(n) < how.epsilon
            chosen = np.where(explore, uniform, greedy)
            propensity = how.epsilon / count + (1.0 - how.epsilon) * (chosen == greedy)
            return chosen, propensity, chosen != greedy
        tempered = np.exp((masked - masked.max(axis=1, keepdims=True)) / how.temperature)
        tempered /= tempered.sum(axis=1, keepdims=True)
        chosen = _sample(tempered, self.rng)
        return chosen, tempered[rows, chosen], chosen != greedy

    def _allocate(
        self, masked: FloatArray, allowed: BoolArray, capacity: Mapping[str, int]
    ) -> tuple[IntArray, BoolArray]:
        channels = self.policy.scenario.channel_names
        for name, limit in capacity.items():
            if name not in channels:
                raise NBAValidationError(
                    f"capacity: unknown channel {name!r}; expected one of {channels}"
                )
            if not isinstance(limit, int | np.integer) or limit < 0:
                raise NBAValidationError(f"capacity.{name}: expected a non-negative integer")
        action_channel = self.arrays.rules.action_channel
        scarce = [channels.index(name) for name in capacity]
        on_scarce = np.isin(action_channel, scarce) & (action_channel >= 0)
        fallback_pref = np.where(on_scarce[None, :], -np.inf, masked)
        fallback = np.argmax(fallback_pref, axis=1)  # no action is never scarce, always allowed
        best_fallback = fallback_pref[np.arange(masked.shape[0]), fallback]
        gains = np.empty((masked.shape[0], len(scarce)))
        best_scarce = np.empty((masked.shape[0], len(scarce)), dtype=np.int64)
        for k, channel in enumerate(scarce):
            on_channel = np.where((action_channel == channel)[None, :], masked, -np.inf)
            best_scarce[:, k] = np.argmax(on_channel, axis=1)
            gains[:, k] = on_channel[np.arange(masked.shape[0]), best_scarce[:, k]] - best_fallback
        assigned = allocate(gains, [int(capacity[channels[c]]) for c in scarce])
        chosen = np.where(
            assigned >= 0,
            best_scarce[np.arange(masked.shape[0]), np.maximum(assigned, 0)],
            fallback,
        )
        displaced = (gains.max(axis=1) > 0) & (assigned < 0)
        return chosen, displaced

    def _frame(
        self,
        index: pd.Index,
        request: ParsedRequest,
        chosen: IntArray,
        propensity: FloatArray,
        explored: BoolArray,
        value: FloatArray,
        masked: FloatArray,
        probabilities: FloatArray,
        preferences: FloatArray,
        checks: RuleChecks,
        displaced: BoolArray,
        top_k: int,
    ) -> pd.DataFrame:
        names = self.action_names
        n_actions = masked.shape[1]
        columns: dict[str, Any] = {
            "customer_id": request.customer_id,
            "action": chosen,
            "action_name": pd.Categorical.from_codes(chosen, categories=names),
            "channel": np.asarray(self.action_channel_names, dtype=object)[chosen],
            "offer": np.asarray(self.action_offer_names, dtype=object)[chosen],
            "propensity": propensity,
            "explored": explored,
            "value_estimate": value,
        }
        # the policy's own top choice, when a rule (or capacity) kept it from being chosen
        top = np.argmax(preferences, axis=1)
        rows = np.arange(top.shape[0])
        blocked = ~checks.allowed[rows, top]
        failing = np.select(
            [~checks.consent[rows, top], ~checks.caps[rows, top], ~checks.pressure[rows, top]],
            [0, 1, 2],
            default=3,
        )
        reason_code = np.where(blocked, failing * n_actions + top, -1)
        suppressed = np.where(blocked, top, -1)
        # displaced by capacity: report the allowed favourite that went to someone else
        favourite = np.argmax(masked, axis=1)
        reason_code = np.where(displaced, len(_RULES) * n_actions + favourite, reason_code)
        suppressed = np.where(displaced, favourite, suppressed)
        columns["suppressed_action"] = _names_or_none(names, suppressed)
        columns["suppressed_reason"] = _names_or_none(self._reason_text, reason_code)
        ranked = np.argsort(-masked, axis=1, kind="stable")[:, : max(0, min(top_k, n_actions))]
        for k in range(ranked.shape[1]):
            action = ranked[:, k]
            valid = np.isfinite(masked[rows, action])
            columns[f"rank_{k + 1}_action"] = _names_or_none(names, np.where(valid, action, -1))
            columns[f"rank_{k + 1}_probability"] = np.where(valid, probabilities[rows, action], 0.0)
        columns["model_version"] = self.model_version
        return pd.DataFrame(columns, index=index)


def _sample(probabilities: FloatArray, rng: np.random.Generator) -> IntArray:
    cumulative = np.cumsum(probabilities, axis=1)
    draw = rng.random(probabilities.shape[0])[:, None] * cumulative[:, -1:]
    return np.minimum((draw >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _names_or_none(names: pd.Index, codes: IntArray) -> np.ndarray:
    values = np.asarray(names, dtype=object)[np.maximum(codes, 0)]
    return np.where(codes >= 0, values, None)


def _reason_table(scenario: Any, arrays: ScenarioArrays) -> pd.Index:
    """Reason text per (rule, action): what stopped the policy's top choice."""
    rules = arrays.rules
    texts = []
    channel_names = scenario.channel_names
    action_names = scenario.action_names
    cap_names = {
        c: [cap.name for cap in scenario.contact_rules.caps if c in cap.channels]
        for c in channel_names
    }
    for rule in (*_RULES, "capacity"):
        for a, channel in enumerate(rules.action_channel):
            name = channel_names[channel] if channel >= 0 else "none"
            if rule == "consent":
                texts.append(f"consent: no consent for {name}")
            elif rule == "cap":
                texts.append(f"cap: contact cap {cap_names.get(name, [])} still open for {name}")
            elif rule == "global_cap":
                texts.append(f"global_cap: contact pressure too high for {name}")
            elif rule == "quiet_day":
                quiet = [WEEKDAYS[d] for d in range(7) if channel >= 0 and rules.quiet[d, channel]]
                texts.append(f"quiet_day: {name} is silent on {quiet}")
            else:
                texts.append(f"capacity: {name} went to higher-gain customers ({action_names[a]})")
    return pd.Index(texts)
