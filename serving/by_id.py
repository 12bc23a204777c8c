"""Decide from the customer-state store: score by customer id, and decide for the whole base.

The store (:mod:`nba.store`) answers each customer's observed state in the scoring request's
own field names, a belief summary, and the joint belief over the latent parts (persona, stage,
own levels), which a company never observes.

- A policy trained on BELIEF observations (``scorer.features.observation == "belief"``) decides
  on the store's joint belief itself (:meth:`PolicyScorer.score_batch` with ``belief=``).
- A policy trained on the full state decides on each customer's MOST LIKELY persona and stage
  (and levels where the scenario has them) under the belief: the issue's "act on the most
  likely state" belief baseline.

Either way the scoring is :meth:`PolicyScorer.score_batch`: rules, capacity, exploration and the
decision log exactly as for an explicit batch. Every decision carries the belief summary (most
likely persona and stage with their probabilities) and, where the twin is finite, the expected
value under the twin of the chosen action and of the best allowed ones (:func:`explanations`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.types import FloatArray

if TYPE_CHECKING:
    from nba.contact_rules import RuleMasks
    from nba.serving.decision import Decision
    from nba.serving.schema import ParsedRequest
    from nba.serving.scorer import PolicyScorer
    from nba.store import StateStore

#: belief-summary columns of the store's state carried to each decision (when present)
BELIEF_COLUMNS = (
    "persona",
    "persona_probability",
    "stage",
    "stage_probability",
    "discount_habit_probability",
)
#: allowed actions whose expected values explain a decision, best first
EXPLAINED_ACTIONS = 3
#: the explanation columns: the chosen action's expected value, and the best allowed actions'
EXPLANATION_COLUMNS = (
    "expected_value",
    *[
        f"best_{k}_{part}"
        for k in range(1, EXPLAINED_ACTIONS + 1)
        for part in ("action", "expected_value")
    ],
)

_VALUES_LOCK = threading.Lock()


class TwinMismatchError(NBAValidationError):
    """The model was trained on another twin than the one the store's beliefs come from."""


@dataclass(frozen=True)
class StoreRead:
    """What the store answered for a batch at one moment: the state frame and, when used,
    the (N, T, K) float64 joint belief in the tracker's order."""

    state: pd.DataFrame
    belief: FloatArray | None


def check_same_twin(scorer: PolicyScorer, store: StateStore) -> None:
    """Refuse a model whose scenario fingerprint differs from the store's scenario.

    The store's beliefs and observed state follow its scenario's rules; a policy trained on
    another twin would decide on them without any error: a silent wrong answer.
    """
    scenario = getattr(store, "scenario", None)
    if scenario is None:  # a store that does not say its scenario cannot be checked
        return
    model = scorer.policy.scenario
    if model.fingerprint() != scenario.fingerprint():
        where = getattr(store, "path", "the store")
        raise TwinMismatchError(
            f"--model: trained on scenario {model.name!r} (fingerprint "
            f"{model.fingerprint()[:12]}), but store {str(where)!r} holds scenario "
            f"{scenario.name!r} (fingerprint {scenario.fingerprint()[:12]}); deciding with a "
            "model of another twin is refused"
        )


def is_belief_model(scorer: PolicyScorer) -> bool:
    """Whether the model was trained on belief observations (it then reads the joint belief)."""
    return scorer.features.observation == "belief"


def split_state(scorer: PolicyScorer, state: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(request rows the model's schema accepts, belief summary columns) of a store's state."""
    fields = scorer.schema.fields
    request = state[[c for c in state.columns if c in fields]]
    belief = state[[c for c in BELIEF_COLUMNS if c in state.columns]]
    return request, belief


def read_store(
    scorer: PolicyScorer,
    store: StateStore,
    customer_ids: Any,
    as_of: pd.Timestamp | str | None = None,
    explain: bool = True,
) -> StoreRead:
    """The state of ``customer_ids`` and, for a belief model or explanations, their belief.

    Both from one read (``store.read``: one snapshot at ``as_of``, else now, fixed once here).
    ``customer_ids`` None: every customer, in the store's order.
    """
    when = as_of if as_of is not None else pd.Timestamp.now(tz="UTC")
    wanted = is_belief_model(scorer) or (explain and explainable(scorer))
    state, joint = store.read(customer_ids, as_of=when)
    return StoreRead(state, tracker_belief(scorer, joint) if wanted else None)


def tracker_belief(scorer: PolicyScorer, joint: np.ndarray) -> FloatArray:
    """A stored (N, P, Lr, Ld, K) joint as (N, T, K) float64 in the tracker's order.

    Types are persona-major, then rate level, then dropout level: the joint's own axis order, so
    a reshape is the whole conversion. The store keeps float32; each row is renormalised so its
    rounding is not mistaken for a belief that does not sum to 1.
    """
    n = joint.shape[0]
    flat = np.asarray(joint, dtype=np.float64).reshape(n, -1)
    flat /= flat.sum(axis=1, keepdims=True)
    belief: FloatArray = flat.reshape(n, *scorer.features.latent_shape)
    return belief


def decide_from_store(
    scorer: PolicyScorer,
    store: StateStore,
    customer_ids: Any = None,
    as_of: pd.Timestamp | str | None = None,
    capacity: dict[str, int | None] | None = None,
    top_k: int = 3,
    log: Any | None = None,
    batch_id: str | None = None,
) -> pd.DataFrame:
    """One decision per customer (default: every customer in the store), in ``customer_ids``
    order, each with its belief summary in the store's names (``persona``,
    ``persona_probability``, ``stage``, ``stage_probability``, ``discount_habit_probability``)
    and its explanation (:func:`explanations`).

    A belief model decides on the joint belief, a state model on the most likely state (see the
    module docstring). ``capacity``, ``top_k``, ``log`` and ``batch_id`` are
    :meth:`PolicyScorer.score_batch`'s. Unknown ids are refused by the store, naming them.
    """
    decisions, _ = decide_timed(scorer, store, customer_ids, as_of, capacity, top_k, log, batch_id)
    return decisions


def decide_timed(
    scorer: PolicyScorer,
    store: StateStore,
    customer_ids: Any = None,
    as_of: pd.Timestamp | str | None = None,
    capacity: dict[str, int | None] | None = None,
    top_k: int = 3,
    log: Any | None = None,
    batch_id: str | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """:func:`decide_from_store` and its seconds split (``state_s``, ``score_s``)."""
    check_same_twin(scorer, store)
    began = time.perf_counter()
    read = read_store(scorer, store, customer_ids, as_of)  # None: the whole base, one scan
    done = time.perf_counter()
    decisions = decide_state(scorer, read.state, capacity, top_k, log, batch_id, read.belief)
    return decisions, {"state_s": done - began, "score_s": time.perf_counter() - done}


def decide_state(
    scorer: PolicyScorer,
    state: pd.DataFrame,
    capacity: dict[str, int | None] | None = None,
    top_k: int = 3,
    log: Any | None = None,
    batch_id: str | None = None,
    belief: FloatArray | None = None,
) -> pd.DataFrame:
    """Decisions for a state frame the store answered, with its belief summary appended.

    ``belief`` (N, T, K), the store's joint for the same rows: a belief model decides on it (a
    state model on the frame's most likely state); with it the explanation columns are added
    where the twin is finite (:func:`explanations`).
    """
    request, summary = split_state(scorer, state)
    parsed = scorer.schema.parse(request)  # once: the scoring and the explanations read it
    masks = scorer.rule_masks(parsed)
    decisions = scorer._decide(
        request,
        as_of=None,
        capacity=capacity,
        top_k=top_k,
        log=log,
        batch_id=batch_id,
        belief=belief if is_belief_model(scorer) else None,
        parsed=(parsed, masks),
    )
    # (worked out beside the scoring on a thread of its own, 1M rows took ~1 s longer on 2
    # cores: the scoring's blocks already use both)
    for column in summary.columns:  # as stored (text stays text: no object round trip)
        decisions[column] = summary[column].array
    if belief is not None and explainable(scorer):
        chosen = decisions["action"].to_numpy()
        for name, values in _explanation_columns(scorer, parsed, masks, belief, chosen).items():
            decisions[name] = values
    return decisions


def score_id(
    scorer: PolicyScorer, customer_id: str, store: StateStore, as_of: Any = None
) -> Decision:
    """One customer's decision from the store; no capacity applies, as for ``score``.

    A state model: ``PolicyScorer.score`` on the stored most likely state. A belief model: the
    one-row batch of :meth:`PolicyScorer.score_batch` on the stored belief with every channel's
    limit lifted, as a :class:`Decision` (:func:`decision_of_row`).
    """
    check_same_twin(scorer, store)
    read = read_store(scorer, store, [str(customer_id)], as_of, explain=False)
    request, _ = split_state(scorer, read.state)
    if read.belief is None:
        return scorer.score(request_row(request))
    lifted: dict[str, int | None] = {str(c): None for c in scorer.channel_names}
    row = scorer.score_batch(
        request, capacity=lifted, top_k=len(scorer.action_names), belief=read.belief
    )
    return decision_of_row(row.iloc[0])


def decision_of_row(row: pd.Series) -> Decision:
    """A batch row (scored with ``top_k`` = every action) as the single path's
    :class:`Decision`: alternatives are the allowed actions with a positive probability, best
    first; ``suppressed`` the favourite a rule (or capacity) kept from being chosen, and why."""
    from nba.serving.decision import Decision

    alternatives = []
    k = 1
    while f"rank_{k}_action" in row.index:
        action, probability = row[f"rank_{k}_action"], float(row[f"rank_{k}_probability"])
        if not pd.isna(action) and probability > 0:
            alternatives.append({"action": str(action), "probability": probability})
        k += 1
    suppressed = None
    if not pd.isna(row["suppressed_action"]):
        suppressed = {
            "action": str(row["suppressed_action"]),
            "reason": str(row["suppressed_reason"]),
        }
    return Decision(
        customer_id=str(row["customer_id"]),
        action=int(row["action"]),
        action_name=str(row["action_name"]),
        channel=None if pd.isna(row["channel"]) else str(row["channel"]),
        offer=None if pd.isna(row["offer"]) else str(row["offer"]),
        propensity=float(row["propensity"]),
        value_estimate=float(row["value_estimate"]),
        model_version=str(row["model_version"]),
        explored=bool(row["explored"]),
        alternatives=alternatives,
        suppressed=suppressed,
        holdout=bool(row.get("holdout", False)),
    )


# ------------------------------------------------------------------ explanations
def explainable(scorer: PolicyScorer) -> bool:
    """Whether expected values can be given: the twin's kernel (S x A) must be tabulated.

    A scenario whose ``S x A`` exceeds :data:`nba.twin.TABULATE_LIMIT` (e.g. ``retail_levels``)
    has no exact solution to average, so its decisions carry no explanation columns.
    """
    from nba.twin import TABULATE_LIMIT

    return scorer.space.size * len(scorer.action_names) <= TABULATE_LIMIT


def belief_values(scorer: PolicyScorer) -> Any:
    """The scenario's :class:`~nba.belief_values.BeliefValues`, built on first use (its kernel
    and exact solution cost seconds) and kept on the scorer."""
    values = scorer.__dict__.get("_belief_values")
    if values is None:
        with _VALUES_LOCK:
            values = scorer.__dict__.get("_belief_values")
            if values is None:
                from nba.belief_values import BeliefValues

                values = BeliefValues(scorer.policy.scenario)
                scorer.__dict__["_belief_values"] = values
    return values


def explanations(
    scorer: PolicyScorer,
    request: pd.DataFrame,
    belief: FloatArray,
    chosen: np.ndarray,
    parsed: tuple[ParsedRequest, RuleMasks] | None = None,
) -> pd.DataFrame | None:
    """Why the twin backs each decision: expected values under the twin, averaged over the belief.

    ``expected_value``: the chosen action's QMDP value (its expected reward today and the
    full-information optimum afterwards, averaged over the belief); ``best_<k>_action`` and
    ``best_<k>_expected_value`` for the :data:`EXPLAINED_ACTIONS` best actions the contact rules
    allow, best first (missing where fewer are allowed), as the ``rank_<k>_*`` columns name the
    policy's own ranking. ``None`` (no columns) where the twin is too large to tabulate
    (:func:`explainable`). ``parsed``: the request rows' parse and rule masks when the caller
    has them (else parsed here).
    """
    if not explainable(scorer):
        return None
    if parsed is None:
        request_parsed = scorer.schema.parse(request)
        parsed = request_parsed, scorer.rule_masks(request_parsed)
    return pd.DataFrame(_explanation_columns(scorer, parsed[0], parsed[1], belief, chosen))


def _explanation_columns(
    scorer: PolicyScorer,
    parsed: ParsedRequest,
    masks: RuleMasks,
    belief: FloatArray,
    chosen: np.ndarray,
) -> dict[str, Any]:
    """The columns of :func:`explanations`, from the (N, A) QMDP values under the masks."""
    allowed = masks.allowed
    q = np.asarray(belief_values(scorer).q(belief, parsed.state, parsed.day), dtype=np.float64)
    rows = np.arange(len(q))
    # disallowed actions rank last (-inf; stable, so ties keep the catalogue's order)
    order = np.argsort(np.where(allowed, -q, np.inf), axis=1, kind="stable")[:, :EXPLAINED_ACTIONS]
    listed = np.take_along_axis(allowed, order, axis=1)
    best = np.take_along_axis(q, order, axis=1)
    columns: dict[str, Any] = {"expected_value": q[rows, np.asarray(chosen)]}
    for k in range(order.shape[1]):
        codes = np.where(listed[:, k], order[:, k], -1)
        columns[f"best_{k + 1}_action"] = pd.Categorical.from_codes(codes, scorer.action_names)
        columns[f"best_{k + 1}_expected_value"] = np.where(listed[:, k], best[:, k], np.nan)
    return columns


def request_row(request: pd.DataFrame) -> dict[str, Any]:
    """The first request row as a mapping of plain values (a never-made contact is ``None``)."""
    row = request.iloc[0].to_dict()
    return {str(k): _plain(v) for k, v in row.items()}


def _plain(value: Any) -> Any:
    """A frame cell as the single path reads it: Python scalars, ``None`` for missing."""
    if value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value
