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
import numpy.typing as npt
import pandas as pd

from nba.contact_rules import RuleChecks, check_rules
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.serving.capacity import allocate
from nba.serving.schema import ParsedRequest, RequestSchema, ScoringInputError
from nba.serving.spec import ExportedPolicy, load_exported
from nba.state import StateSpace
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

    policy: ExportedPolicy = field(repr=False)
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
        self.space = StateSpace(self.arrays)
        self.action_names = pd.Index([a["name"] for a in catalogue])
        self.channel_names = pd.Index(scenario.channel_names)
        self.offer_names = pd.Index(scenario.offer_names)
        self.action_channel = self.arrays.rules.action_channel  # -1 for no action
        self.action_offer = self.arrays.action_offer
        self._day_tables: dict[int, _DayTable] = {}
        # plain lists: indexing pd.Index or arrays costs microseconds on the single path
        self._names = list(self.action_names)
        self._action_channel = self.action_channel.tolist()
        self._action_offer = self.action_offer.tolist()
        self._channels, self._offers = list(self.channel_names), list(self.offer_names)
        texts = _reason_table(scenario, self.arrays)
        self.reason_names, self._reason_code = np.unique(np.asarray(texts), return_inverse=True)
        self._reasons = [str(text) for text in self.reason_names]

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
        """The decision for one customer given as a mapping of fields.

        Latency path: validation into plain Python values, then one row of the planning day's
        decision table (every state and weekday under its persona's consent, computed once by
        the batch path's own code). Custom consent, timestamps or exploration take the general
        route below; the tests hold both equal to :meth:`score_batch`.
        """
        one = self.schema.parse_one(customer, as_of=as_of)
        if one is None or not one.default_consent or self.exploration.kind != "greedy":
            return self._score_general(self.schema.parse_mapping(customer, as_of=as_of))
        index = self.space.encode_one(
            one.persona, one.stage, one.pressure, one.habit, one.opted_out, one.days_since
        )
        table = self._day_table(one.day)
        row = one.weekday * self.space.size + index
        count = table.count[row]
        order = table.order[row, :count].tolist()
        probabilities = table.probability[row, :count].tolist()
        names = self._names
        action = table.greedy[row]
        top = table.suppressed[row]
        channel, offer = self._action_channel[action], self._action_offer[action]
        return Decision(
            customer_id=str(one.customer_id),
            action=action,
            action_name=names[action],
            channel=self._channels[channel] if channel >= 0 else None,
            offer=self._offers[offer] if offer >= 0 else None,
            propensity=1.0,
            value_estimate=table.value[row],
            model_version=self.model_version,
            explored=False,
            alternatives=[
                {"action": names[a], "probability": p}
                for a, p in zip(order, probabilities, strict=True)
            ],
            suppressed=None
            if top < 0
            else {"action": names[top], "reason": self._reasons[table.reason[row]]},
        )

    def _score_general(self, request: ParsedRequest) -> Decision:
        """One customer with custom consent, timestamps or exploration (arrays, one row)."""
        state = request.state
        index = int(self.space.encode(state)[0])
        weekday, day = int(request.weekday[0]), int(request.day[0])
        table = self._day_table(day)
        row = weekday * self.space.size + index
        preference, value = table.preferences[row], table.value[row]
        checks = self._checks(request)
        allowed = checks.allowed[0]
        masked = np.where(allowed, preference, -np.inf)
        probabilities = self._policy_probabilities(masked[None, :])[0]
        greedy = int(np.argmax(masked))
        chosen, propensities, was_explored = self._explore(
            masked[None, :], allowed[None, :], np.array([greedy]), probabilities[None, :]
        )
        action, propensity = int(chosen[0]), float(propensities[0])
        names = self._names
        order = np.argsort(-masked, kind="stable")
        order = order[np.isfinite(masked[order]) & (probabilities[order] > 0)]
        alternatives = [
            {"action": names[a], "probability": p}
            for a, p in zip(order.tolist(), probabilities[order].tolist(), strict=True)
        ]
        top = int(np.argmax(preference))
        suppressed = None
        if not allowed[top]:
            code = int(self._rule_reason(checks, np.zeros(1, dtype=np.int64), np.array([top]))[0])
            suppressed = {"action": names[top], "reason": self._reasons[code]}
        channel, offer = self._action_channel[action], self._action_offer[action]
        return Decision(
            customer_id=str(request.customer_id[0]),
            action=action,
            action_name=names[action],
            channel=self._channels[channel] if channel >= 0 else None,
            offer=self._offers[offer] if offer >= 0 else None,
            propensity=propensity,
            value_estimate=value,
            model_version=self.model_version,
            explored=bool(was_explored[0]),
            alternatives=alternatives,
            suppressed=suppressed,
        )

    def _checks(self, request: ParsedRequest) -> RuleChecks:
        state = request.state
        return check_rules(
            self.arrays.rules, request.consent, state.pressure, state.days_since, request.weekday
        )

    def _rule_reason(self, checks: RuleChecks, rows: IntArray, top: IntArray) -> IntArray:
        """Index into ``reason_names`` of the first rule that blocks ``top`` on each row."""
        failing = np.select(
            [~checks.consent[rows, top], ~checks.caps[rows, top], ~checks.pressure[rows, top]],
            [0, 1, 2],
            default=3,
        )
        return self._reason_code[failing * len(self._names) + top]

    def _day_table(self, day: int) -> _DayTable:
        """Decisions for every (weekday, state) of a planning day under default consent."""
        table = self._day_tables.get(day)
        if table is None:
            if len(self._day_tables) >= 4:
                self._day_tables.pop(next(iter(self._day_tables)))
            table = self._day_tables[day] = _DayTable.build(self, day)
        return table

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
        checks = check_rules(
            self.arrays.rules, request.consent, state.pressure, state.days_since, request.weekday
        )
        allowed = checks.allowed
        # Features depend only on (state, day, weekday) and the ranking also on the mask: work
        # once per distinct combination (thousands at most), then spread to every row.
        key = (self.space.encode(state) * self.policy.scenario.horizon_days + request.day) * 7
        key += request.weekday
        bits = np.packbits(allowed, axis=1, bitorder="little")
        mask_code = np.zeros(len(key), dtype=np.int64)
        for byte in range(bits.shape[1]):
            mask_code |= bits[:, byte].astype(np.int64) << (8 * byte)
        combination = (key << allowed.shape[1]) | mask_code
        _, first, inverse = np.unique(combination, return_index=True, return_inverse=True)
        unique = _Unique.evaluate(self, state, request, allowed, first)

        n = len(key)
        rows = np.arange(n)
        greedy = unique.greedy[inverse]
        if capacity:
            if self.exploration.kind != "greedy":
                raise NBAValidationError(
                    "capacity: allocation is deterministic; use greedy exploration with it"
                )
            chosen, displaced = self._allocate(unique.masked[inverse], allowed, capacity)
            propensity, explored = np.ones(n), np.zeros(n, dtype=bool)
        elif self.exploration.kind == "greedy":
            chosen, propensity, explored = greedy, np.ones(n), np.zeros(n, dtype=bool)
            displaced = np.zeros(n, dtype=bool)
        else:
            masked = unique.masked[inverse]
            chosen, propensity, explored = self._explore(
                masked, allowed, greedy, unique.probabilities[inverse]
            )
            displaced = np.zeros(n, dtype=bool)

        result = self._frame(
            frame.index,
            request,
            chosen,
            propensity,
            explored,
            unique,
            inverse,
            checks,
            displaced,
            top_k,
            rows,
        )
        if log is not None:
            log.append(
                customer_id=request.customer_id,
                decided_at=request.as_of,
                model_version=self.model_version,
                actions=chosen,
                action_names=self.action_names.to_numpy()[chosen],
                feature_names=self.features.names,
                propensities=propensity,
                explored=explored,
                features=unique.obs[inverse],
                probabilities=unique.probabilities[inverse],
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
        unique: _Unique,
        inverse: IntArray,
        checks: RuleChecks,
        displaced: BoolArray,
        top_k: int,
        rows: IntArray,
    ) -> pd.DataFrame:
        names = self.action_names
        n_actions = len(names)
        columns: dict[str, Any] = {
            "customer_id": request.customer_id,
            "action": chosen,
            "action_name": pd.Categorical.from_codes(chosen, categories=names),
            "channel": pd.Categorical.from_codes(self.action_channel[chosen], self.channel_names),
            "offer": pd.Categorical.from_codes(self.action_offer[chosen], self.offer_names),
            "propensity": propensity,
            "explored": explored,
            "value_estimate": unique.value[inverse],
        }
        # the policy's own top choice, when a rule (or capacity) kept it from being chosen
        top = unique.top[inverse]
        blocked = ~unique.top_allowed[inverse]
        reason = np.where(blocked, self._rule_reason(checks, rows, top), -1)
        suppressed = np.where(blocked, top, -1)
        # displaced by capacity: report the allowed favourite that went to someone else
        favourite = unique.greedy[inverse]
        displaced_reason = self._reason_code[len(_RULES) * n_actions + favourite]
        reason = np.where(displaced, displaced_reason, reason)
        suppressed = np.where(displaced, favourite, suppressed)
        columns["suppressed_action"] = pd.Categorical.from_codes(suppressed, names)
        columns["suppressed_reason"] = pd.Categorical.from_codes(reason, self.reason_names)
        ranked, ranked_probability = unique.ranking(top_k)
        for k in range(ranked.shape[1]):
            columns[f"rank_{k + 1}_action"] = pd.Categorical.from_codes(ranked[inverse, k], names)
            columns[f"rank_{k + 1}_probability"] = ranked_probability[inverse, k]
        columns["model_version"] = self.model_version
        return pd.DataFrame(columns, index=index)


@dataclass
class _Unique:
    """Network outputs and rankings for each distinct (features, mask) combination."""

    obs: FloatArray
    preferences: FloatArray  # network outputs
    masked: FloatArray  # preferences, -inf where not allowed
    probabilities: FloatArray
    greedy: IntArray
    top: IntArray  # the policy's favourite ignoring the rules
    top_allowed: BoolArray
    value: FloatArray

    @classmethod
    def evaluate(
        cls,
        scorer: PolicyScorer,
        state: Any,
        request: ParsedRequest,
        allowed: BoolArray,
        first: IntArray,
    ) -> _Unique:
        """Evaluate the representative rows ``first`` of each distinct combination."""
        obs = scorer.features.build(
            state.take(first), request.day[first], weekday=request.weekday[first]
        )
        allowed_first = allowed[first]
        preferences = scorer.policy.policy.forward(obs).astype(np.float64)
        masked = np.where(allowed_first, preferences, -np.inf)
        greedy = np.argmax(masked, axis=1)
        top = np.argmax(preferences, axis=1)
        if scorer.policy.value is not None:
            value = scorer.policy.value.forward(obs)[:, 0].astype(np.float64)
            value *= scorer.policy.value_scale
        else:
            value = masked[np.arange(len(greedy)), greedy]
        return cls(
            obs=obs,
            preferences=preferences,
            masked=masked,
            probabilities=scorer._policy_probabilities(masked),
            greedy=greedy,
            top=top,
            top_allowed=allowed_first[np.arange(len(top)), top],
            value=value,
        )

    def ranking(self, top_k: int) -> tuple[IntArray, FloatArray]:
        """The ``top_k`` allowed actions by preference (-1 past the allowed ones)."""
        k = max(0, min(top_k, self.masked.shape[1]))
        order = np.argsort(-self.masked, axis=1, kind="stable")[:, :k]
        rows = np.arange(order.shape[0])[:, None]
        valid = np.isfinite(self.masked[rows, order])
        return np.where(valid, order, -1), np.where(valid, self.probabilities[rows, order], 0.0)


@dataclass
class _DayTable:
    """One planning day's decisions for every (weekday, state) under its persona's consent.

    Row ``weekday * S + state``. Built by the batch path's own evaluator and rule code, so the
    single-customer path reads what :meth:`PolicyScorer.score_batch` would compute; per-row
    results are plain lists because indexing them is most of the single-path cost.
    """

    preferences: FloatArray  # (7S, A) network outputs, for the general single path
    value: list[float]
    greedy: list[int]
    count: list[int]  # allowed actions with positive probability: a prefix of ``order``
    order: npt.NDArray[np.int16]  # (7S, A) allowed actions by preference
    probability: FloatArray  # (7S, A) their policy probabilities
    suppressed: list[int]  # the policy's favourite when a rule blocks it, else -1
    reason: list[int]  # index into the scorer's reason names when suppressed

    @classmethod
    def build(cls, scorer: PolicyScorer, day: int) -> _DayTable:
        size = scorer.space.size
        rows = np.arange(7 * size)
        every = scorer.space.all_states().take(rows % size)
        request = ParsedRequest(
            customer_id=rows,
            state=every,
            consent=every.consent(scorer.arrays),
            day=np.full(7 * size, day),
            weekday=rows // size,
            as_of=pd.Timestamp(0, tz="UTC"),
        )
        checks = scorer._checks(request)
        unique = _Unique.evaluate(scorer, every, request, checks.allowed, rows)
        order, probability = unique.ranking(len(scorer._names))
        blocked = ~unique.top_allowed
        return cls(
            preferences=unique.preferences,
            value=unique.value.tolist(),
            greedy=unique.greedy.tolist(),
            count=((order >= 0) & (probability > 0)).sum(axis=1).tolist(),
            order=np.maximum(order, 0).astype(np.int16),
            probability=probability,
            suppressed=np.where(blocked, unique.top, -1).tolist(),
            reason=np.where(blocked, scorer._rule_reason(checks, rows, unique.top), -1).tolist(),
        )


def _sample(probabilities: FloatArray, rng: np.random.Generator) -> IntArray:
    cumulative = np.cumsum(probabilities, axis=1)
    draw = rng.random(probabilities.shape[0])[:, None] * cumulative[:, -1:]
    return np.minimum((draw >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


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
