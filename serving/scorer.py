"""``PolicyScorer``: decide the next best action for live customers, numpy and pandas only.

Per request the scorer validates the rows (:mod:`nba.serving.schema`), builds features with the
training :class:`~nba.features.FeatureBuilder`, applies the contact rules with the training
:func:`~nba.contact_rules.rule_masks`, runs the exported network, ranks the allowed actions,
optionally explores with known propensities, optionally shares scarce channels across the batch
(:mod:`nba.serving.capacity`), and can append every decision to a decision log for off-policy
evaluation. Why a favourite was not chosen is the contact rules' own explanation
(:mod:`nba.serving.reasons`); the single-customer path reads precomputed day tables
(:mod:`nba.serving.decision_table`). It never imports torch and never unpickles.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba import policy_head
from nba.contact_rules import RuleMasks, consent_mask, rule_masks
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.holdout import Holdout
from nba.parameters import ScenarioArrays
from nba.policy_head import Exploration, HeadOutput
from nba.serving import batch
from nba.serving.capacity import default_capacity
from nba.serving.capacity_plan import CapacityPlan, CapacityRecorder
from nba.serving.decision import Decision, TracedDecision, decision_times, nanoseconds
from nba.serving.decision_table import BuildOnceLRU, DayTable, Evaluated
from nba.serving.holdout_batch import choose_with_holdout, score_one_by_batch
from nba.serving.reasons import ReasonTable
from nba.serving.schema import ParsedRequest, RequestSchema, ScoringInputError
from nba.serving.served_policy import ServedPolicy
from nba.serving.spec import ExportedPolicy, load_exported
from nba.state import StateSpace
from nba.types import BoolArray, FloatArray

__all__ = [
    "Decision",
    "Exploration",
    "PolicyScorer",
    "ScoringInputError",
    "ServedPolicy",
    "TracedDecision",
]


DAY_CACHE_BYTES = 256 * 2**20  # the default day-table cache holds at most this much
_CONSENT_PATTERNS = 4096  # consent verdicts kept (2**channels patterns exist at most)


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
    :param holdout: a persistent control group (:class:`~nba.holdout.Holdout`): its customers
        get the control's decision on every path, marked ``holdout`` and logged as such
        (:mod:`nba.serving.holdout_batch`).

    Safe to share between threads: the caches are locked, a table is built once however many
    threads ask for its day, and decisions draw from no shared generator.
    """

    policy: ExportedPolicy = field(repr=False)
    model_version: str = "local"
    exploration: Exploration = field(default_factory=Exploration)
    day_cache_size: int | None = None
    holdout: Holdout | None = None

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
            per_table = DayTable.estimate_bytes(self.space.size, len(catalogue))
            budget = max(1, DAY_CACHE_BYTES // per_table)
            self.day_cache_size = max(1, min(scenario.horizon_days, budget))
        elif isinstance(self.day_cache_size, bool) or not (
            isinstance(self.day_cache_size, int) and self.day_cache_size >= 1
        ):
            raise NBAValidationError(
                f"day_cache_size: expected a whole number >= 1, got {self.day_cache_size!r}"
            )
        self._day_tables: BuildOnceLRU[int, DayTable] = BuildOnceLRU(self.day_cache_size)
        self._consent_verdicts: BuildOnceLRU[tuple[bool, ...], list[bool]] = BuildOnceLRU(
            _CONSENT_PATTERNS
        )
        # plain lists: indexing pd.Index or arrays costs microseconds on the single path
        self._names = list(self.action_names)
        self._action_channel = self.action_channel.tolist()
        self._action_offer = self.action_offer.tolist()
        self._channels, self._offers = list(self.channel_names), list(self.offer_names)
        self.reasons = ReasonTable.build(scenario, self.arrays.rules)
        self.reason_names = self.reasons.names
        self._reasons = self.reasons.texts
        self._consent_rule = [r.name for r in self.arrays.rules.rules].index("consent")

    @classmethod
    def load(
        cls,
        source: str | Path,
        model_version: str | None = None,
        exploration: Exploration | None = None,
        day_cache_size: int | None = None,
        *,
        holdout: Holdout | None = None,
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
        scorer = cls(policy, version, exploration or Exploration(), day_cache_size, holdout)
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
            index = self.space.encode_one(*one.state)  # in the declaration's order
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

        Latency path: plain Python validation, then one row of the day's decision table
        (built once by the batch path's own code); custom consent or exploration re-decide
        that row under the customer's own mask (:meth:`_decide_row`). The tests hold every
        route equal to :meth:`score_batch`. Capacity applies only to batches.
        """
        if self.holdout is not None:  # membership and the control's decision: the batch's
            return score_one_by_batch(self, customer, as_of)
        one = self.schema.parse_one(customer, as_of=as_of)
        if one is None:
            return self._score_general(self.schema.parse_mapping(customer, as_of=as_of))
        index = self.space.encode_one(*one.state)  # in the declaration's order
        table = self._day_table(one.day)
        row = one.weekday * self.space.size + index
        if not one.default_consent or self.exploration.kind != "greedy":
            return self._decide_row(
                str(one.customer_id), one.consent, table, row, nanoseconds(one.as_of)
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

    def score_id(self, customer_id: str, store: Any, as_of: datetime | None = None) -> Decision:
        """One customer's decision from a customer-state store: on the stored belief for a
        belief-trained policy, else on the most likely persona and stage
        (:func:`nba.serving.by_id.score_id`); no capacity applies, as for :meth:`score`."""
        from nba.serving.by_id import score_id

        return score_id(self, customer_id, store, as_of)

    def _score_general(self, request: ParsedRequest) -> Decision:
        """One customer parsed by the frame parser (timestamps only pandas reads)."""
        index = int(self.space.encode(request.state)[0])
        table = self._day_table(int(request.day[0]))
        row = int(request.weekday[0]) * self.space.size + index
        consent = tuple(request.consent[0].tolist())
        decided_at = int(decision_times(request.as_of, 1)[0])
        return self._decide_row(str(request.customer_id[0]), consent, table, row, decided_at)

    def _decide_row(
        self,
        customer_id: str,
        consent: tuple[bool, ...],
        table: DayTable,
        row: int,
        decided_at: int,
    ) -> Decision:
        """One customer under their own consent and the scorer's exploration, plain Python.

        The table row holds the network's outputs and the consent-free rule verdicts for the
        customer's state and weekday; the consent verdicts come from the consent rule once per
        consent pattern. The policy head's one-row functions decide and explore, with the
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
            # the first blocking rule in precedence order, as a batch names it
            blocker = table.blocker[row]
            if not consent_ok[top] and (blocker < 0 or self._consent_rule < blocker):
                blocker = self._consent_rule
            code = self.reasons.code[blocker * len(names) + top]  # plain ints: no arrays
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
        """Per action, whether the consent rule lets this consent pattern use it (cached)."""
        return self._consent_verdicts.get(consent, self._build_consent_verdict)

    def _build_consent_verdict(self, consent: tuple[bool, ...]) -> list[bool]:
        verdict: list[bool] = consent_mask(self.arrays.rules, np.array([consent], dtype=bool))[
            0
        ].tolist()
        return verdict

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

    def rule_masks(self, request: ParsedRequest) -> RuleMasks:
        """The contact rules' masks for parsed requests, under each request's own consent."""
        return rule_masks(self.arrays.rules, request.state, request.weekday, request.consent)

    def _day_table(self, day: int) -> DayTable:
        """Decisions for every (weekday, state) of a planning day under default consent.

        Built once per day however many threads ask at once (the others wait for it), kept in
        a least-recently-used cache of ``day_cache_size`` days.
        """
        return self._day_tables.get(day, self._build_day_table)

    def _build_day_table(self, day: int) -> DayTable:
        return DayTable.build(self, day)

    def score_batch(
        self,
        frame: pd.DataFrame,
        capacity: Mapping[str, int | None] | None = None,
        as_of: datetime | None = None,
        top_k: int = 3,
        log: Any | None = None,
        batch_id: str | None = None,
        belief: FloatArray | None = None,
        capacity_plan: CapacityPlan | CapacityRecorder | None = None,
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
        :param belief: (N, T, K) each row's belief over (type, stage) in the tracker's order
            (``features.latent_shape``), for a policy trained on belief observations: it
            replaces the rows' latent fields in the features (the contact rules still read the
            request). Without one a belief policy scores each row's state as certain.
        :param capacity_plan: this batch is one partition of a base: record its candidates for
            scarce channels, or decide them by the base's plan (:mod:`.capacity_plan`).
        """
        return self._decide(
            frame,
            as_of=as_of,
            capacity=capacity,
            top_k=top_k,
            log=log,
            batch_id=batch_id,
            belief=belief,
            plan=capacity_plan,
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
        belief: FloatArray | None = None,
        parsed: tuple[ParsedRequest, RuleMasks] | None = None,
        plan: CapacityPlan | CapacityRecorder | None = None,
    ) -> pd.DataFrame:
        # ``parsed``: the frame's own parse and masks, when a caller needs them too (by_id's
        # explanations): parsing 1M rows costs ~0.6 s, the masks ~0.3 s
        if parsed is None:
            request = self.schema.parse(frame, as_of=as_of)
            masks = self.rule_masks(request)
        else:
            request, masks = parsed
        allowed = masks.allowed
        if belief is None:
            first, inverse = batch.distinct_combinations(self, request, allowed)
            unique = Evaluated.evaluate(self, request.state, request, allowed, first)
        else:  # every row its own combination: ``inverse`` is the identity
            checked = batch.checked_belief(self, belief, len(allowed))
            unique = batch.evaluate_beliefs(self, request, allowed, checked)
            inverse = np.arange(len(allowed))
        # the head decided each distinct combination once; rows take its results by ``inverse``
        # (spreading whole (n, A) arrays, or ranking every row, cost more than the network)
        head = unique.head
        choice, held = choose_with_holdout(self, head, inverse, allowed, request, capacity, plan)
        value = unique.value[inverse]
        result = batch.decision_frame(
            self, frame.index, request, choice, head, inverse, value, masks, top_k
        )
        if held is not None:
            result["holdout"] = held
        if log is not None:
            chosen, propensity, explored, _, probabilities = choice
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
                holdout=held,
            )
        return result

    def uniforms(self, request: ParsedRequest) -> FloatArray:
        """Each row's exploration draw: a function of seed, customer and decision time only."""
        return policy_head.exploration_uniforms(
            self.exploration_seed,
            request.customer_id,
            decision_times(request.as_of, len(request.customer_id)),
        )

    @property
    def default_capacity(self) -> dict[str, int]:
        """The scenario's ``daily_capacity`` per channel that has one (what a batch gets)."""
        return default_capacity(self.policy.scenario)
