"""A batch's choice with a persistent holdout: the control group gets the control's decision.

Membership is :class:`~nba.holdout.Holdout`'s salted hash of the customer id, so the same
customers are held out on every run and by every model version. A control customer gets the
control policy's action (no action, or the journey map) with propensity 1; the model's own
probabilities are still what the decision log records for them (what it would have done), so
off-policy evaluation can treat those rows as logged by the control. Control decisions take a
scarce channel's capacity first; the treated customers share what is left, so no limit is
exceeded and no capacity goes to a customer who will not use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nba.holdout import control_actions
from nba.policy_head import HeadOutput
from nba.serving import batch
from nba.serving.capacity import scarce_limits
from nba.serving.capacity_plan import CapacityPlan, CapacityRecorder
from nba.serving.schema import ParsedRequest, ScoringInputError
from nba.types import BoolArray, IntArray

if TYPE_CHECKING:
    from nba.serving.decision import Decision
    from nba.serving.scorer import PolicyScorer


def choose_with_holdout(
    scorer: PolicyScorer,
    head: HeadOutput,
    inverse: IntArray,
    allowed: BoolArray,
    request: ParsedRequest,
    capacity: Mapping[str, int | None] | None,
    plan: CapacityPlan | CapacityRecorder | None = None,
) -> tuple[batch.Choice, BoolArray | None]:
    """:func:`nba.serving.batch.choose`, and each row's holdout membership (``None``: the
    scorer has no holdout). A global capacity ``plan`` has the control's use subtracted
    already; a recorder notes this partition's."""
    holdout = scorer.holdout
    if holdout is None:
        return batch.choose(scorer, head, inverse, allowed, request, capacity, plan), None
    member = holdout.assign(request.customer_id)
    control = np.flatnonzero(member)
    if not control.size:
        return batch.choose(scorer, head, inverse, allowed, request, capacity, plan), member
    treated = np.flatnonzero(~member)
    held = control_actions(
        scorer,
        holdout.control,
        request.state.take(control),
        request.day[control],
        allowed[control],
        request.weekday[control],
    )
    left = _capacity_left(scorer, capacity, held, plan)
    part = batch.choose(
        scorer,
        head,
        inverse[treated],
        allowed[treated],
        take_request(request, treated),
        left,
        plan,
    )
    n = len(inverse)
    chosen = np.zeros(n, dtype=np.int64)
    propensity, explored, displaced = np.ones(n), np.zeros(n, bool), np.zeros(n, bool)
    chosen[treated], chosen[control] = part[0], held
    propensity[treated], explored[treated], displaced[treated] = part[1], part[2], part[3]
    probabilities = None
    if part[4] is not None:  # the model's probabilities for control rows too
        probabilities = head.probabilities[inverse].copy()
        probabilities[treated] = part[4]
    return (chosen, propensity, explored, displaced, probabilities), member


def score_one_by_batch(
    scorer: PolicyScorer, customer: Mapping[str, Any], as_of: datetime | None
) -> Decision:
    """One customer through :meth:`~PolicyScorer.score_batch` with every limit lifted (a
    holdout's control decisions are the batch's), as the single path's :class:`Decision`."""
    from nba.serving.by_id import decision_of_row

    if not isinstance(customer, Mapping):
        raise ScoringInputError(f"input: expected a mapping, got {type(customer).__name__}")
    lifted: dict[str, int | None] = {str(c): None for c in scorer.channel_names}
    frame = pd.DataFrame([dict(customer)])
    row = scorer.score_batch(frame, capacity=lifted, as_of=as_of, top_k=len(scorer.action_names))
    return decision_of_row(row.iloc[0])


def _capacity_left(
    scorer: PolicyScorer,
    capacity: Mapping[str, int | None] | None,
    held: IntArray,
    plan: CapacityPlan | CapacityRecorder | None,
) -> dict[str, int | None]:
    """The batch's limits less what the control decisions use of each scarce channel (a
    recorder notes the use; a global plan's limits have it subtracted already)."""
    names = scorer.policy.scenario.channel_names
    used = np.bincount(scorer.action_channel[held] + 1, minlength=len(names) + 1)[1:]
    if isinstance(plan, CapacityRecorder):
        plan.note_control_use(used)
    limits = scarce_limits(scorer.policy.scenario, capacity)
    # the scarce channels first, in the limits' own order: the allocation's columns (and so
    # its choice among equally good plans) do not depend on whether a holdout took a share
    left: dict[str, int | None] = {
        channel: max(0, limit - int(used[names.index(channel)]))
        for channel, limit in limits.items()
    }
    left.update({k: v for k, v in (capacity or {}).items() if k not in limits})
    return left


def take_request(request: ParsedRequest, rows: IntArray) -> ParsedRequest:
    """The request rows ``rows`` (a per-row decision time is taken too)."""
    as_of = request.as_of
    if isinstance(as_of, pd.Series):
        as_of = as_of.iloc[rows].reset_index(drop=True)
    return ParsedRequest(
        customer_id=np.asarray(request.customer_id)[rows],
        state=request.state.take(rows),
        consent=request.consent[rows],
        day=request.day[rows],
        weekday=request.weekday[rows],
        as_of=as_of,
    )
