"""``PolicyScorer``: decide the next best action for live customers, numpy and pandas only.

Per request the scorer validates the rows (:mod:`nba.serving.schema`), builds features with the
training :class:`~nba.features.FeatureBuilder`, applies the contact rules with the training
:func:`~nba.contact_rules.check_rules`, runs the exported network, ranks the allowed actions,
optionally explores with known propensities, optionally shares scarce channels across the batch
(:mod:`nba.serving.capacity`), and can append every decision to a decision log for off-policy
evaluation. It never imports torch and never unpickles.
"""

from __future__ import annotations

import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba import policy_head
from nba.contact_rules import RuleChecks, check_rules
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.policy_head import Exploration, HeadOutput
from nba.serving.capacity import allocate, open_to
from nba.serving.schema import ParsedRequest, RequestSchema, ScoringInputError
from nba.serving.spec import ExportedPolicy, load_exported
from nba.state import StateSpace
from nba.types import WEEKDAYS, BoolArray, FloatArray, IntArray

__all__ = ["Decision", "Exploration", "PolicyScorer", "ScoringInputError", "ServedPolicy"]

_CHUNK = 262_144  # rows per network call when evaluating many states: bounds the activations

_RULES = ("consent", "cap", "global_cap", "quiet_day")

DAY_CACHE_BYTES = 256 * 2**20  # the default day-table cache holds at most this much
_CONSENT_PATTERNS = 4096  # consent verdicts kept (2**channels patterns exist at most)
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


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


class TracedDecision(NamedTuple):
    """A single-path decision with the context a decision log records for it."""

    decision: Decision
    decided_at: pd.Timestamp  # UTC
    features: FloatArray  # (F,) the network's input row
    probabilities: FloatArray  # (A,) the policy's probabilities over every action


@dataclass
class PolicyScorer:
    """Scores customers with an exported policy.

    :param policy: a loaded export (see :meth:`load`).
    :param model_version: reported with every decision and logged.
    :param exploration: greedy by default. Each customer's draw is a function of the seed, the
        customer id and the decision time only (:func:`nba.policy_head.exploration_uniforms`);
        without a seed one is drawn from the OS at construction (``exploration_seed``).
    :param day_cache_size: planning days whose decision tables the single-customer path keeps
        (least recently used goes first); default: the whole horizon, up to
        :data:`DAY_CACHE_BYTES` of tables.

    Safe to share between threads: the caches are locked, a table is built once however many
    threads ask for its day, and decisions draw from no shared generator.
    """

    policy: ExportedPolicy = field(repr=False)
    model_version: str = "local"
    exploration: Exploration = field(default_factory=Exploration)
    day_cache_size: int | None = None

    def __post_init__(self) -> None:
        self.arrays = ScenarioArrays.from_scenario(self.policy.scenario)
        try:
            self.features = FeatureBuilder.for_names(self.arrays, self.policy.feature_names)
        except NBAValidationError:
            raise NBAValidationError(
                "policy.json features: do not match the scenario's features"
            ) from None
        self.schema = RequestSchema(self.arrays)
        seed = self.exploration.seed
        self.exploration_seed: int = secrets.randbits(63) if seed is None else int(seed)
        scenario = self.policy.scenario
        catalogue = self.policy.spec["actions"]
        self.space = StateSpace(self.arrays)
        self.action_names = pd.Index([a["name"] for a in catalogue])
        self.channel_names = pd.Index(scenario.channel_names)
        self.offer_names = pd.Index(scenario.offer_names)
        self.action_channel = self.arrays.rules.action_channel  # -1 for no action
        self.action_offer = self.arrays.action_offer
        if self.day_cache_size is None:
            per_table = _DayTable.estimate_bytes(self.space.size, len(catalogue))
            budget = max(1, DAY_CACHE_BYTES // per_table)
            self.day_cache_size = max(1, min(scenario.horizon_days, budget))
        elif isinstance(self.day_cache_size, bool) or not (
            isinstance(self.day_cache_size, int) and self.day_cache_size >= 1
        ):
            raise NBAValidationError(
                f"day_cache_size: expected a whole number >= 1, got {self.day_cache_size!r}"
            )
        self._day_tables: _BuildOnceLRU[int, _DayTable] = _BuildOnceLRU(self.day_cache_size)
        self._consent_verdicts: _BuildOnceLRU[tuple[bool, ...], list[bool]] = _BuildOnceLRU(
            _CONSENT_PATTERNS
        )
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
        day_cache_size: int | None = None,
        *,
        trusted_scenario: Any = None,
        signing_key: bytes | str | None = None,
    ) -> PolicyScorer:
        """From an export directory, or an MLflow ``models:/...`` or ``runs:/...`` URI.

        The export is checked by :func:`~nba.serving.spec.load_exported`: against
        ``trusted_scenario`` (a Scenario, name or path) and the signing key (default
        ``NBA_SIGNING_KEY``) when given.

        An alias is resolved once, here: decisions report (and the decision log records) the
        version it pointed at, e.g. ``"nba-retail/3"``, and the run that trained it
        (``scorer.run_id``), not the alias, which may move later. Runs report ``"run:<id>"``;
        an export directory its ``metadata.mlflow_run_id`` when it has one. ``model_version``
        relabels the text and keeps the resolved name, number and run id.
        """
        from nba.serving.provenance import ModelVersion, resolve_model_uri

        text = str(source)
        if text.startswith(("models:/", "runs:/")):
            import mlflow.artifacts

            pinned, resolved = resolve_model_uri(text)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=pinned))
            nested = local / "artifacts" / "policy"
            folder = nested if nested.is_dir() else local
            policy = load_exported(
                folder, trusted_scenario=trusted_scenario, signing_key=signing_key
            )
        else:
            policy = load_exported(
                Path(text), trusted_scenario=trusted_scenario, signing_key=signing_key
            )
            run_id = (policy.spec.get("metadata") or {}).get("mlflow_run_id")
            resolved = ModelVersion(
                f"run:{run_id}" if run_id else "local", run_id=str(run_id) if run_id else None
            )
        version = resolved.relabel(model_version) if model_version else resolved
        scorer = cls(policy, version, exploration or Exploration(), day_cache_size)
        scorer.run_id = version.run_id
        return scorer

    def input_schema(self) -> dict[str, Any]:
        """JSON Schema of one request row."""
        return self.schema.json_schema()

    def score_traced(
        self, customer: Mapping[str, Any], as_of: datetime | None = None
    ) -> TracedDecision:
        """:meth:`score`, plus what a decision log keeps of it (``nba serve --log``).

        The decision time is fixed once (``as_of``, else now) so that the decision and its
        logged features read the same day. ``features`` is the row the network saw for the
        customer; ``probabilities`` the policy's over every action, as the alternatives report
        them (the actions they leave out have probability 0), which is what a batch logs.
        """
        moment = as_of if as_of is not None else pd.Timestamp.now(tz="UTC")
        decision = self.score(customer, as_of=moment)
        one = self.schema.parse_one(customer, as_of=moment)
        if one is None:  # timestamps only the frame parser reads
            request = self.schema.parse_mapping(customer, as_of=moment)
            features = self.features.build(request.state, request.day, weekday=request.weekday)[0]
            decided_at = request.as_of
            if isinstance(decided_at, pd.Series):
                decided_at = decided_at.iloc[0]
        else:
            index = self.space.encode_one(
                one.persona, one.stage, one.pressure, one.habit, one.opted_out, one.days_since
            )
            features = self._feature_row(one.day, one.weekday, index)
            decided_at = one.as_of
        probabilities = np.zeros(len(self._names))
        for alternative in decision.alternatives:
            probabilities[self._names.index(alternative["action"])] = alternative["probability"]
        return TracedDecision(decision, decided_at, features, probabilities)

    def _feature_row(self, day: int, weekday: int, index: int) -> FloatArray:
        """One state's features on a day and weekday, cached (a build costs ~50 us)."""
        rows: dict[tuple[int, int, int], FloatArray] = self.__dict__.setdefault("_rows", {})
        key = (day, weekday, index)
        row = rows.get(key)
        if row is None:
            if len(rows) >= 16_384:
                rows.clear()
            state = self.space.decode(np.array([index]))
            row = self.features.build(state, np.array([day]), weekday=np.array([weekday]))[0]
            row.setflags(write=False)
            rows[key] = row
        return row

    # ------------------------------------------------------------------ scoring
    def score(self, customer: Mapping[str, Any], as_of: datetime | None = None) -> Decision:
        """The decision for one customer given as a mapping of fields.

        Latency path: validation into plain Python values (timestamps become days since per
        cap), then one row of the planning day's decision table (every state and weekday under
        its persona's consent, computed once by the batch path's own code). Custom consent or
        exploration re-decide that row through the policy head's one-row functions under the
        customer's own mask (:meth:`_decide_row`). Only timestamps spelled in ways just pandas
        reads (or bad ones) go through the frame parser. The tests hold every route equal to
        :meth:`score_batch`. One customer has no batch to share a scarce channel with: channel
        capacity (the scenario's ``daily_capacity``) applies only in :meth:`score_batch`.
        """
        one = self.schema.parse_one(customer, as_of=as_of)
        if one is None:
            return self._score_general(self.schema.parse_mapping(customer, as_of=as_of))
        index = self.space.encode_one(
            one.persona, one.stage, one.pressure, one.habit, one.opted_out, one.days_since
        )
        table = self._day_table(one.day)
        row = one.weekday * self.space.size + index
        if not one.default_consent or self.exploration.kind != "greedy":
            return self._decide_row(
                str(one.customer_id), one.consent, table, row, _nanoseconds(one.as_of)
            )
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
        """One customer parsed by the frame parser (timestamps only pandas reads)."""
        index = int(self.space.encode(request.state)[0])
        table = self._day_table(int(request.day[0]))
        row = int(request.weekday[0]) * self.space.size + index
        consent = tuple(request.consent[0].tolist())
        decided_at = int(_decision_times(request.as_of, 1)[0])
        return self._decide_row(str(request.customer_id[0]), consent, table, row, decided_at)

    def _decide_row(
        self,
        customer_id: str,
        consent: tuple[bool, ...],
        table: _DayTable,
        row: int,
        decided_at: int,
    ) -> Decision:
        """One customer under their own consent and the scorer's exploration, plain Python.

        The table row holds the network's outputs and the consent-free rule verdicts for the
        customer's state and weekday; the consent verdicts come from :func:`check_rules` once
        per consent pattern. The policy head's one-row functions decide and explore, with the
        customer's own uniform for ``decided_at`` (nanoseconds since the epoch), as the batch.
        """
        consent_ok = self._consent_verdict(consent)
        allowed = [c and r for c, r in zip(consent_ok, table.rest[row].tolist(), strict=True)]
        head = policy_head.decide_row(
            table.preferences[row].tolist(), allowed, self.policy.output_kind
        )
        if self.exploration.kind == "greedy":
            action, propensity, explored = head.greedy, 1.0, False
        else:
            uniform = policy_head.exploration_uniform(
                self.exploration_seed, customer_id, decided_at
            )
            action, propensity, explored = policy_head.explore_row_with(
                head, self.exploration, uniform
            )
        names = self._names
        probabilities = head.probabilities
        alternatives = [
            {"action": names[a], "probability": probabilities[a]}
            for a in policy_head.ranking_row(head.masked)
            if probabilities[a] > 0
        ]
        top = head.top
        suppressed = None
        if not head.top_allowed:
            # the first failing rule in _RULES order, as _rule_reason picks it for a batch
            verdicts = (consent_ok[top], bool(table.caps[row, top]), bool(table.pressure[row, top]))
            failing = next((k for k, ok in enumerate(verdicts) if not ok), len(verdicts))
            code = self._reason_code[failing * len(names) + top]
            suppressed = {"action": names[top], "reason": self._reasons[code]}
        # without a value network the value is the chosen allowed preference, mask-dependent
        value = table.value[row] if self.policy.value is not None else head.masked[head.greedy]
        channel, offer = self._action_channel[action], self._action_offer[action]
        return Decision(
            customer_id=customer_id,
            action=action,
            action_name=names[action],
            channel=self._channels[channel] if channel >= 0 else None,
            offer=self._offers[offer] if offer >= 0 else None,
            propensity=propensity,
            value_estimate=value,
            model_version=self.model_version,
            explored=explored,
            alternatives=alternatives,
            suppressed=suppressed,
        )

    def _consent_verdict(self, consent: tuple[bool, ...]) -> list[bool]:
        """Per action, whether :func:`check_rules` lets this consent pattern use it (cached)."""
        return self._consent_verdicts.get(consent, self._build_consent_verdict)

    def _build_consent_verdict(self, consent: tuple[bool, ...]) -> list[bool]:
        rules = self.arrays.rules
        checks = check_rules(
            rules,
            np.array([consent], dtype=bool),
            np.zeros(1, dtype=np.int64),
            rules.cap_windows[None, :].astype(np.int64),
            np.zeros(1, dtype=np.int64),
        )
        return checks.consent[0].tolist()

    def decide_observations(self, obs: FloatArray, allowed: BoolArray) -> HeadOutput:
        """The served decision for ready-made observations under the given rule masks.

        What evaluation on the twin calls (:class:`ServedPolicy`): the network
        and the policy head of :meth:`score_batch`, without request parsing.
        """
        preferences = self.policy.policy.forward(np.asarray(obs, dtype=np.float32))
        return policy_head.decide(preferences, allowed, self.policy.output_kind)

    def as_policy(self, name: str = "model") -> ServedPolicy:
        """This scorer as a :class:`nba.policies.Policy`, greedy as served, for the twin."""
        return ServedPolicy(self, name)

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
        """Decisions for every (weekday, state) of a planning day under default consent.

        Built once per day however many threads ask at once (the others wait for it), kept in
        a least-recently-used cache of ``day_cache_size`` days.
        """
        return self._day_tables.get(day, self._build_day_table)

    def _build_day_table(self, day: int) -> _DayTable:
        return _DayTable.build(self, day)

    def score_batch(
        self,
        frame: pd.DataFrame,
        capacity: Mapping[str, int | None] | None = None,
        as_of: datetime | None = None,
        top_k: int = 3,
        log: Any | None = None,
        batch_id: str | None = None,
    ) -> pd.DataFrame:
        """One decision per row, in input order.

        :param capacity: contacts available per scarce channel in this batch, e.g.
            ``{"call_centre": 500}``; shared to maximise the total gain. A channel not named
            takes the scenario's ``daily_capacity`` (:attr:`default_capacity`; retail's call
            centre: 500); ``None`` lifts a channel's limit (``{"call_centre": None}``). Limits
            need greedy scoring: an exploring scorer applies no scenario limit (its propensities
            stay exact) and refuses limits the caller names. One batch is one day's allocation:
            the single-customer :meth:`score` shares nothing across calls.
        :param as_of: decision time for rows without ``as_of`` (default: now, UTC).
        :param top_k: ranked alternatives reported per row.
        :param log: a :class:`~nba.serving.decision_log.DecisionLog` to append the decisions to.
        :param batch_id: the log's idempotency key for this batch (default: a new UUID); a
            retry with the same id and decisions is not logged twice.
        """
        return self._decide(
            frame, as_of=as_of, capacity=capacity, top_k=top_k, log=log, batch_id=batch_id
        )

    # ------------------------------------------------------------------ internals
    def _decide(
        self,
        frame: pd.DataFrame,
        as_of: datetime | None,
        capacity: Mapping[str, int | None] | None,
        top_k: int,
        log: Any | None = None,
        batch_id: str | None = None,
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
        key_bits = int(self.space.size * self.policy.scenario.horizon_days * 7).bit_length()
        if key_bits + allowed.shape[1] <= 62:  # one int64 per row: the fast path
            mask_code = np.zeros(len(key), dtype=np.int64)
            for byte in range(bits.shape[1]):
                mask_code |= bits[:, byte].astype(np.int64) << (8 * byte)
            combination = (key << allowed.shape[1]) | mask_code
            _, first, inverse = np.unique(combination, return_index=True, return_inverse=True)
        else:  # a large catalogue: rows of (key, mask bytes), never a merged overflow
            rows_of = np.column_stack([key, bits.astype(np.int64)])
            _, first, inverse = np.unique(rows_of, axis=0, return_index=True, return_inverse=True)
            inverse = inverse.reshape(-1)
        unique = _Unique.evaluate(self, state, request, allowed, first)

        n = len(key)
        rows = np.arange(n)
        # the head decided each distinct combination once; rows take its results by ``inverse``
        # (spreading whole (n, A) arrays, or ranking every row, cost more than the network)
        head = unique.head
        displaced = np.zeros(n, dtype=bool)
        limits = self._limits(capacity)
        probabilities: FloatArray | None = None  # per row, when capacity reshapes the policy
        if limits and self.exploration.kind != "greedy":
            chosen, propensity, explored, displaced, probabilities = self._explore_within(
                head, inverse, allowed, limits, request
            )
        elif limits:
            chosen, displaced = self._allocate(head.masked, inverse, limits)
            propensity, explored = np.ones(n), np.zeros(n, dtype=bool)
        elif self.exploration.kind == "greedy":
            chosen, propensity, explored = head.greedy[inverse], np.ones(n), np.zeros(n, bool)
        else:
            chosen, propensity, explored = policy_head.explore_with(
                head.take(inverse), allowed, self.exploration, self._uniforms(request)
            )

        result = self._frame(
            frame.index,
            request,
            chosen,
            propensity,
            explored,
            head,
            inverse,
            unique.value[inverse],
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
                probabilities=(
                    head.probabilities[inverse] if probabilities is None else probabilities
                ),
                batch_id=batch_id,
            )
        return result

    def _uniforms(self, request: ParsedRequest) -> FloatArray:
        """Each row's exploration draw: a function of seed, customer and decision time only."""
        return policy_head.exploration_uniforms(
            self.exploration_seed,
            request.customer_id,
            _decision_times(request.as_of, len(request.customer_id)),
        )

    @property
    def default_capacity(self) -> dict[str, int]:
        """The scenario's ``daily_capacity`` per channel that has one (what a batch gets)."""
        return {
            c.name: int(c.daily_capacity)
            for c in self.policy.scenario.channels
            if c.daily_capacity is not None
        }

    def _limits(self, capacity: Mapping[str, int | None] | None) -> dict[str, int]:
        """The batch's limits: the caller's per channel, else the scenario's.

        ``None`` for a channel lifts its limit. An exploring scorer explores within the
        allocation: a scarce channel is open only to the customers the greedy allocation gave
        it, so no limit is exceeded and every propensity is exact under that mask.
        """
        given = dict(capacity or {})
        channels = self.policy.scenario.channel_names
        for name, limit in given.items():
            if name not in channels:
                raise NBAValidationError(
                    f"capacity: unknown channel {name!r}; expected one of {channels}"
                )
            if limit is not None and (
                isinstance(limit, bool | np.bool_)
                or not isinstance(limit, int | np.integer)
                or limit < 0
            ):
                raise NBAValidationError(
                    f"capacity.{name}: expected a non-negative integer or None, got {limit!r}"
                )
        explicit = {name: int(limit) for name, limit in given.items() if limit is not None}
        defaults = {k: v for k, v in self.default_capacity.items() if k not in given}
        return {**defaults, **explicit}

    def _allocate(
        self, masked: FloatArray, inverse: IntArray, capacity: Mapping[str, int]
    ) -> tuple[IntArray, BoolArray]:
        """Share the scarce channels: ``masked`` per distinct combination, rows by ``inverse``."""
        scarce, gains, best_scarce, fallback = self._scarce_gains(masked, inverse, capacity)
        channels = self.policy.scenario.channel_names
        assigned = allocate(gains, [int(capacity[channels[c]]) for c in scarce])
        chosen = np.where(
            assigned >= 0,
            best_scarce[np.arange(len(inverse)), np.maximum(assigned, 0)],
            fallback,
        )
        displaced = (gains.max(axis=1) > 0) & (assigned < 0)
        return chosen, displaced

    def _explore_within(
        self,
        head: HeadOutput,
        inverse: IntArray,
        allowed: BoolArray,
        capacity: Mapping[str, int],
        request: ParsedRequest,
    ) -> tuple[IntArray, FloatArray, BoolArray, BoolArray, FloatArray]:
        """Explore without exceeding a limit: each scarce channel is open to at most its
        capacity of customers, chosen before drawing (:func:`~nba.serving.capacity.open_to`),
        so every propensity is exact under the customer's mask."""
        scarce, gains, _, _ = self._scarce_gains(head.masked, inverse, capacity)
        channels = self.policy.scenario.channel_names
        opened = open_to(gains, [int(capacity[channels[c]]) for c in scarce])
        action_channel = self.arrays.rules.action_channel
        closed = np.zeros(allowed.shape, dtype=bool)
        for k, channel in enumerate(scarce):
            closed |= ~opened[:, k, None] & (action_channel == channel)[None, :]
        allowed = allowed & ~closed
        capped = policy_head.decide(head.preferences[inverse], allowed, self.policy.output_kind)
        chosen, propensity, explored = policy_head.explore_with(
            capped, allowed, self.exploration, self._uniforms(request)
        )
        displaced = closed[np.arange(len(inverse)), head.greedy[inverse]]  # favourite closed
        return chosen, propensity, explored, displaced, capped.probabilities

    def _scarce_gains(
        self, masked: FloatArray, inverse: IntArray, capacity: Mapping[str, int]
    ) -> tuple[list[int], FloatArray, IntArray, IntArray]:
        """Per row: each scarce channel's gain over the best unlimited action, its best action
        on that channel, and that fallback (computed per distinct combination, spread)."""
        channels = self.policy.scenario.channel_names
        action_channel = self.arrays.rules.action_channel
        scarce = [channels.index(name) for name in capacity]
        on_scarce = np.isin(action_channel, scarce) & (action_channel >= 0)
        distinct = np.arange(masked.shape[0])
        fallback_pref = np.where(on_scarce[None, :], -np.inf, masked)
        fallback = np.argmax(fallback_pref, axis=1)  # no action is never scarce, always allowed
        best_fallback = fallback_pref[distinct, fallback]
        gains = np.empty((masked.shape[0], len(scarce)))
        best_scarce = np.empty((masked.shape[0], len(scarce)), dtype=np.int64)
        for k, channel in enumerate(scarce):
            on_channel = np.where((action_channel == channel)[None, :], masked, -np.inf)
            best_scarce[:, k] = np.argmax(on_channel, axis=1)
            gains[:, k] = on_channel[distinct, best_scarce[:, k]] - best_fallback
        return scarce, gains[inverse], best_scarce[inverse], fallback[inverse]

    def _frame(
        self,
        index: pd.Index,
        request: ParsedRequest,
        chosen: IntArray,
        propensity: FloatArray,
        explored: BoolArray,
        head: HeadOutput,
        inverse: IntArray,
        value: FloatArray,
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
            "value_estimate": value,
        }
        # the policy's own top choice, when a rule (or capacity) kept it from being chosen
        top = head.top[inverse]
        blocked = ~head.top_allowed[inverse]
        reason = np.where(blocked, self._rule_reason(checks, rows, top), -1)
        suppressed = np.where(blocked, top, -1)
        # displaced by capacity: report the allowed favourite that went to someone else
        favourite = head.greedy[inverse]
        displaced_reason = self._reason_code[len(_RULES) * n_actions + favourite]
        reason = np.where(displaced, displaced_reason, reason)
        suppressed = np.where(displaced, favourite, suppressed)
        columns["suppressed_action"] = pd.Categorical.from_codes(suppressed, names)
        columns["suppressed_reason"] = pd.Categorical.from_codes(reason, self.reason_names)
        ranked, ranked_probability = head.ranking(top_k)
        for k in range(ranked.shape[1]):
            columns[f"rank_{k + 1}_action"] = pd.Categorical.from_codes(ranked[inverse, k], names)
            columns[f"rank_{k + 1}_probability"] = ranked_probability[inverse, k]
        columns["model_version"] = self.model_version
        return pd.DataFrame(columns, index=index)


@dataclass
class ServedPolicy:
    """An exported policy behind :class:`nba.policies.Policy`, greedy as served.

    Decides through :meth:`PolicyScorer.decide_observations` (the scorer's network and policy
    head), so the twin values exactly what the scorer serves: training's evaluation, the exact
    share, the promotion gate and ``nba evaluate --model`` all use it.
    """

    scorer: PolicyScorer
    name: str = "model"

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        # an export from before a trailing feature block reads the prefix it was trained on
        obs = obs[:, : self.scorer.features.size]
        actions = np.empty(obs.shape[0], dtype=np.int64)
        for start in range(0, obs.shape[0], _CHUNK):
            rows = slice(start, start + _CHUNK)
            actions[rows] = self.scorer.decide_observations(obs[rows], mask[rows]).greedy
        return actions, policy_head.one_hot(actions, mask.shape[1])


@dataclass
class _Unique:
    """Features, the policy head's decision and the value for each distinct combination."""

    obs: FloatArray
    head: HeadOutput
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
        return cls.from_features(scorer, obs, allowed[first])

    @classmethod
    def from_features(cls, scorer: PolicyScorer, obs: FloatArray, allowed: BoolArray) -> _Unique:
        head = scorer.decide_observations(obs, allowed)
        if scorer.policy.value is not None:
            value = scorer.policy.value.forward(obs)[:, 0].astype(np.float64)
            value *= scorer.policy.value_scale
        else:
            value = head.masked[np.arange(len(head.greedy)), head.greedy]
        return cls(obs=obs, head=head, value=value)


@dataclass
class _DayTable:
    """One planning day's decisions for every (weekday, state) under its persona's consent.

    Row ``weekday * S + state``. Built by the batch path's own evaluator and rule code, so the
    single-customer path reads what :meth:`PolicyScorer.score_batch` would compute; per-row
    results are plain lists because indexing them is most of the single-path cost.
    """

    preferences: FloatArray  # (7S, A) network outputs, for custom consent and exploration
    rest: BoolArray  # (7S, A) every rule but consent allows the action (check_rules' verdicts)
    caps: BoolArray  # (7S, A) the cap rules allow it (to name the rule that blocks)
    pressure: BoolArray  # (7S, A) the global cap allows it
    value: list[float]
    greedy: list[int]
    count: list[int]  # allowed actions with positive probability: a prefix of ``order``
    order: npt.NDArray[np.int16]  # (7S, A) allowed actions by preference
    probability: FloatArray  # (7S, A) their policy probabilities
    suppressed: list[int]  # the policy's favourite when a rule blocks it, else -1
    reason: list[int]  # index into the scorer's reason names when suppressed

    # per cell: preferences and probability (float64), order (int16), three rule verdicts;
    # per row: five list slots, and a float object for the value
    _CELL_BYTES = 8 + 8 + 2 + 3
    _ROW_BYTES = 5 * 8 + 24

    @classmethod
    def estimate_bytes(cls, states: int, actions: int) -> int:
        """Memory of one table for a state space and catalogue, before building it."""
        return 7 * states * (actions * cls._CELL_BYTES + cls._ROW_BYTES)

    def nbytes(self) -> int:
        """Memory this table holds (arrays, lists and the float objects of ``value``)."""
        arrays = (self.preferences, self.rest, self.caps, self.pressure, self.order)
        lists = (self.value, self.greedy, self.count, self.suppressed, self.reason)
        total = sum(a.nbytes for a in arrays) + self.probability.nbytes
        total += sum(sys.getsizeof(items) for items in lists)
        return total + len(self.value) * sys.getsizeof(0.5)

    @classmethod
    def build(cls, scorer: PolicyScorer, day: int) -> _DayTable:
        scorer.space.require_table(7 * len(scorer._names), "a day's decision table (7 x S x A)")
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
        head = unique.head
        order, probability = head.ranking(len(scorer._names))
        blocked = ~head.top_allowed
        return cls(
            preferences=head.preferences,
            rest=checks.caps & checks.pressure & checks.quiet,
            caps=checks.caps,
            pressure=checks.pressure,
            value=unique.value.tolist(),
            greedy=head.greedy.tolist(),
            count=((order >= 0) & (probability > 0)).sum(axis=1).tolist(),
            order=np.maximum(order, 0).astype(np.int16),
            probability=probability,
            suppressed=np.where(blocked, head.top, -1).tolist(),
            reason=np.where(blocked, scorer._rule_reason(checks, rows, head.top), -1).tolist(),
        )


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _BuildOnceLRU(Generic[K, V]):
    """A thread-safe least-recently-used cache that builds each missing key once.

    The first thread to miss a key builds it outside the lock; threads asking for the same key
    meanwhile wait for that build (and see its error if it fails), threads asking for other
    keys go on (building them in parallel). Nobody ever sees a half-built value.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.builds = 0  # completed builds, for tests and monitoring
        self._lock = threading.Lock()
        self._items: OrderedDict[K, V] = OrderedDict()
        self._pending: dict[K, Future[V]] = {}

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, key: K, build: Callable[[K], V]) -> V:
        with self._lock:
            value = self._items.get(key, _MISSING)
            if value is not _MISSING:
                self._items.move_to_end(key)
                return value  # type: ignore[return-value]
            pending = self._pending.get(key)
            building = pending is None
            if pending is None:
                pending = self._pending[key] = Future()
        if not building:
            return pending.result()
        try:
            value = build(key)
        except BaseException as exc:
            with self._lock:
                del self._pending[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            self._items[key] = value
            self.builds += 1
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
            del self._pending[key]
        pending.set_result(value)
        return value


_MISSING = object()


def _nanoseconds(moment: pd.Timestamp) -> int:
    """A decision time in nanoseconds since the epoch, mod 2**64 (any pandas resolution)."""
    try:
        return moment.value % 2**64
    except OverflowError:  # outside nanoseconds' years 1677-2262: from the coarser unit
        ticks = int(moment.asm8.view(np.int64))
        return (ticks * _NS_PER_UNIT[moment.unit]) % 2**64


def _decision_times(as_of: pd.Series | pd.Timestamp, n: int) -> npt.NDArray[np.uint64]:
    """(n,) decision times in nanoseconds mod 2**64, as :func:`_nanoseconds` gives each."""
    if isinstance(as_of, pd.Series):
        times = pd.DatetimeIndex(as_of)
        ticks = times.asi8.view(np.uint64)
        return ticks * np.uint64(_NS_PER_UNIT[times.unit])
    return np.full(n, _nanoseconds(as_of), dtype=np.uint64)


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
