"""A batch's decisions: distinct combinations, the choice under exploration and channel
limits, and the output frame (one row per customer, in input order).

Features depend only on (state, day, weekday) and the ranking also on the rule mask, so a batch
is evaluated once per distinct combination and spread to its rows; what stopped each row's
favourite is the contact rules' explanation (or capacity's), as :mod:`nba.serving.reasons`
numbers them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from nba import policy_head
from nba.contact_rules import RuleMasks
from nba.policy_head import HeadOutput
from nba.serving.capacity import ScarceGains, scarce_limits
from nba.serving.capacity_plan import CapacityPlan, CapacityRecorder
from nba.serving.decision_table import Evaluated
from nba.serving.schema import ParsedRequest, ScoringInputError
from nba.types import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:
    from nba.serving.scorer import PolicyScorer

#: what a batch's choice returns: action, propensity, explored, displaced, probabilities
Choice = tuple[IntArray, FloatArray, BoolArray, BoolArray, FloatArray | None]


def distinct_combinations(
    scorer: PolicyScorer, request: ParsedRequest, allowed: BoolArray
) -> tuple[IntArray, IntArray]:
    """First row of each distinct (state, day, weekday, mask) and each row's combination.

    Features depend only on (state, day, weekday) and the ranking also on the mask: the
    batch works once per distinct combination (thousands at most), then spreads to rows.
    """
    horizon = scorer.policy.scenario.horizon_days
    key = (scorer.space.encode(request.state) * horizon + request.day) * 7 + request.weekday
    bits = np.packbits(allowed, axis=1, bitorder="little")
    key_bits = int(scorer.space.size * horizon * 7).bit_length()
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
    return first, inverse


#: how far a belief's total may stray from 1 (float64 sums of a float32-stored joint do)
BELIEF_TOLERANCE = 1e-6


def checked_belief(scorer: PolicyScorer, belief: Any, n: int) -> FloatArray:
    """A batch's beliefs as (n, T, K) float64, or a :class:`ScoringInputError` naming ``belief``.

    Only a policy trained on belief observations reads one: a state-trained policy would drop it
    without a word and decide on the request's latent fields, a silent wrong answer.
    """
    features = scorer.features
    if features.observation != "belief":
        raise ScoringInputError(
            "belief: this model was trained on the full state (persona and stage as given), "
            "not on beliefs; score it without a belief"
        )
    shape = (n, *features.latent_shape)
    try:
        array = np.asarray(belief, dtype=np.float64)
    except (TypeError, ValueError):
        raise ScoringInputError(
            f"belief: expected an array of numbers of shape {shape}, got {type(belief).__name__}"
        ) from None
    if array.shape != shape:
        raise ScoringInputError(
            f"belief: expected shape {shape} (rows, types, stages), got {array.shape}"
        )
    flat = array.reshape(n, -1)
    total = flat.sum(axis=1)
    # one pass for the common case: finite, non-negative, summing to 1 (a non-finite cell makes
    # its row's total non-finite); the row-by-row reasons below only when something is off
    if not n or (
        np.isfinite(total).all()
        and flat.min() >= 0
        and np.abs(total - 1.0).max() <= BELIEF_TOLERANCE
    ):
        return array
    for bad, problem in (
        (~np.isfinite(flat).all(axis=1), "a non-finite probability"),
        ((flat < 0).any(axis=1), "a negative probability"),
    ):
        if bad.any():
            raise ScoringInputError(f"belief: row {int(np.argmax(bad))} has {problem}")
    off = np.abs(total - 1.0) > BELIEF_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise ScoringInputError(
            f"belief: row {row} sums to {total[row]!r}, expected 1 (within {BELIEF_TOLERANCE})"
        )
    return array


#: rows per feature build and network call on the belief path: bounds the activations (one
#: 64-unit layer over 1M rows holds 256 MB) and keeps them nearer the cache
BELIEF_BLOCK = 65_536
#: threads evaluating blocks at once (the project's machines have 2 cores)
BELIEF_WORKERS = min(2, os.cpu_count() or 1)


def evaluate_beliefs(
    scorer: PolicyScorer, request: ParsedRequest, allowed: BoolArray, belief: FloatArray
) -> Evaluated:
    """Every row evaluated on its own belief: beliefs are continuous, so no two rows are
    assumed alike (the batch's ``first`` and ``inverse`` are then the identity)."""
    n = len(allowed)
    obs = np.empty((n, scorer.features.size), dtype=np.float32)
    if n <= BELIEF_BLOCK:  # one block (an empty batch too)
        scorer.features.build(
            request.state, request.day, out=obs, weekday=request.weekday, belief=belief
        )
        return Evaluated.from_features(scorer, obs, allowed)
    joined: dict[str, np.ndarray] = {}
    value = np.empty(n)

    def block(start: int) -> None:
        rows = slice(start, min(start + BELIEF_BLOCK, n))
        scorer.features.build(
            request.state.take(np.arange(rows.start, rows.stop)),
            request.day[rows],
            out=obs[rows],
            weekday=request.weekday[rows],
            belief=belief[rows],
        )
        part = Evaluated.from_features(scorer, obs[rows], allowed[rows])
        for f in fields(HeadOutput):  # written into whole-batch arrays: no joining copies
            got = getattr(part.head, f.name)
            if f.name not in joined:  # the first block, before any other runs
                joined[f.name] = np.empty((n, *got.shape[1:]), dtype=got.dtype)
            joined[f.name][rows] = got
        value[rows] = part.value

    # blocks on BELIEF_WORKERS threads, each with one BLAS thread: numpy releases the GIL in
    # the products and ufuncs, and one BLAS thread per block avoids BLAS's own hand-offs on these
    # narrow layers (measured 1M rows, 2 cores, load ~4: the network 2.0 s -> 1.1 s per core)
    starts = list(range(0, n, BELIEF_BLOCK))
    with threadpool_limits(1, user_api="blas"):
        block(starts[0])
        with ThreadPoolExecutor(BELIEF_WORKERS) as pool:
            list(pool.map(block, starts[1:]))
    return Evaluated(obs=obs, head=HeadOutput(**joined), value=value)


def choose(
    scorer: PolicyScorer,
    head: HeadOutput,
    inverse: IntArray,
    allowed: BoolArray,
    request: ParsedRequest,
    capacity: Mapping[str, int | None] | None,
    plan: CapacityPlan | CapacityRecorder | None = None,
) -> Choice:
    """Each row's action under the scorer's exploration and the batch's channel limits
    (allocated by the batch, or by a global ``plan`` across partitions:
    :mod:`nba.serving.capacity_plan`)."""
    n = len(inverse)
    limits = scarce_limits(scorer.policy.scenario, capacity)
    if limits:
        channels = scorer.policy.scenario.channel_names
        scarce = ScarceGains.of(head.masked, inverse, limits, channels, scorer.action_channel)
        if isinstance(plan, CapacityRecorder):
            plan.record(request.customer_id, scarce.gains, scarce.channels, scarce.limits)
        if scorer.exploration.kind != "greedy":
            opened = None
            if isinstance(plan, CapacityPlan):
                opened = plan.opened_to(request.customer_id, scarce.gains, scarce.channels)
            return _explore_within(scorer, head, inverse, allowed, scarce, request, opened)
        assigned = None
        if isinstance(plan, CapacityPlan):
            assigned = plan.assignment(request.customer_id, scarce.channels)
        chosen, displaced = scarce.allocate(assigned)
        return chosen, np.ones(n), np.zeros(n, dtype=bool), displaced, None
    displaced = np.zeros(n, dtype=bool)
    if scorer.exploration.kind == "greedy":
        return head.greedy[inverse], np.ones(n), np.zeros(n, dtype=bool), displaced, None
    chosen, propensity, explored = policy_head.explore_with(
        head.take(inverse), allowed, scorer.exploration, scorer.uniforms(request)
    )
    return chosen, propensity, explored, displaced, None


def _explore_within(
    scorer: PolicyScorer,
    head: HeadOutput,
    inverse: IntArray,
    allowed: BoolArray,
    scarce: ScarceGains,
    request: ParsedRequest,
    opened: BoolArray | None = None,
) -> Choice:
    """Explore without exceeding a limit: each scarce channel is open to at most its
    capacity of customers, chosen before drawing (:func:`~nba.serving.capacity.open_to`),
    so every propensity is exact under the customer's mask."""
    closed = scarce.closed(scorer.action_channel, opened)
    allowed = allowed & ~closed
    capped = policy_head.decide(head.preferences[inverse], allowed, scorer.policy.output_kind)
    chosen, propensity, explored = policy_head.explore_with(
        capped, allowed, scorer.exploration, scorer.uniforms(request)
    )
    displaced = closed[np.arange(len(inverse)), head.greedy[inverse]]  # favourite closed
    return chosen, propensity, explored, displaced, capped.probabilities


def decision_frame(
    scorer: PolicyScorer,
    index: pd.Index,
    request: ParsedRequest,
    choice: Choice,
    head: HeadOutput,
    inverse: IntArray,
    value: FloatArray,
    masks: RuleMasks,
    top_k: int,
) -> pd.DataFrame:
    """The batch's answer: one row per customer with the chosen action, its propensity, the
    favourite a rule or capacity suppressed and why, and the ``top_k`` ranked alternatives."""
    chosen, propensity, explored, displaced, _ = choice
    rows = np.arange(len(inverse))
    names = scorer.action_names
    columns: dict[str, Any] = {
        "customer_id": request.customer_id,
        "action": chosen,
        "action_name": pd.Categorical.from_codes(chosen, categories=names),
        "channel": pd.Categorical.from_codes(scorer.action_channel[chosen], scorer.channel_names),
        "offer": pd.Categorical.from_codes(scorer.action_offer[chosen], scorer.offer_names),
        "propensity": propensity,
        "explored": explored,
        "value_estimate": value,
    }
    # the policy's own top choice, when a rule (or capacity) kept it from being chosen
    top = head.top[inverse]
    blocked = ~head.top_allowed[inverse]
    reason = np.where(blocked, scorer.reasons.blocking(masks, rows, top), -1)
    suppressed = np.where(blocked, top, -1)
    # displaced by capacity: report the allowed favourite that went to someone else
    favourite = head.greedy[inverse]
    displaced_reason = scorer.reasons.of_capacity(favourite)
    reason = np.where(displaced, displaced_reason, reason)
    suppressed = np.where(displaced, favourite, suppressed)
    columns["suppressed_action"] = pd.Categorical.from_codes(suppressed, names)
    columns["suppressed_reason"] = pd.Categorical.from_codes(reason, scorer.reason_names)
    ranked, ranked_probability = head.ranking(top_k)
    for k in range(ranked.shape[1]):
        columns[f"rank_{k + 1}_action"] = pd.Categorical.from_codes(ranked[inverse, k], names)
        columns[f"rank_{k + 1}_probability"] = ranked_probability[inverse, k]
    columns["model_version"] = scorer.model_version
    return pd.DataFrame(columns, index=index)
