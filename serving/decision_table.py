"""The scorer's precomputed decisions: one planning day's table, and the cache that holds days.

The single-customer path reads one row of a day's table: every (weekday, state) decided once by
the batch path's own evaluator and rule code under the persona's consent, so both paths answer
alike. A customer with consent of their own is re-decided from the row's network outputs and
the rules other than consent (``rest``), and the first of those that blocks the favourite is
kept per row (``blocker``) to name the reason.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.policy_head import HeadOutput
from nba.serving.schema import ParsedRequest
from nba.types import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:
    from nba.serving.scorer import PolicyScorer


@dataclass
class Evaluated:
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
    ) -> Evaluated:
        """Evaluate the representative rows ``first`` of each distinct combination."""
        obs = scorer.features.build(
            state.take(first), request.day[first], weekday=request.weekday[first]
        )
        return cls.from_features(scorer, obs, allowed[first])

    @classmethod
    def from_features(cls, scorer: PolicyScorer, obs: FloatArray, allowed: BoolArray) -> Evaluated:
        head = scorer.decide_observations(obs, allowed)
        if scorer.policy.value is not None:
            value = scorer.policy.value.forward(obs)[:, 0].astype(np.float64)
            value *= scorer.policy.value_scale
        else:
            value = head.masked[np.arange(len(head.greedy)), head.greedy]
        return cls(obs=obs, head=head, value=value)


@dataclass
class DayTable:
    """One planning day's decisions for every (weekday, state) under its persona's consent.

    Row ``weekday * S + state``. Built by the batch path's own evaluator and rule code, so the
    single-customer path reads what :meth:`PolicyScorer.score_batch` would compute; per-row
    results are plain lists because indexing them is most of the single-path cost.
    """

    preferences: FloatArray  # (7S, A) network outputs, for custom consent and exploration
    rest: BoolArray  # (7S, A) every rule but consent allows the action
    value: list[float]
    greedy: list[int]
    count: list[int]  # allowed actions with positive probability: a prefix of ``order``
    order: npt.NDArray[np.int16]  # (7S, A) allowed actions by preference
    probability: FloatArray  # (7S, A) their policy probabilities
    suppressed: list[int]  # the policy's favourite when a rule blocks it, else -1
    reason: list[int]  # index into the scorer's reason names when suppressed
    blocker: list[int]  # first rule but consent blocking the favourite (rule position), or -1

    # per cell: preferences and probability (float64), order (int16), one rule verdict;
    # per row: six list slots, and a float object for the value
    _CELL_BYTES = 8 + 8 + 2 + 1
    _ROW_BYTES = 6 * 8 + 24

    @classmethod
    def estimate_bytes(cls, states: int, actions: int) -> int:
        """Memory of one table for a state space and catalogue, before building it."""
        return 7 * states * (actions * cls._CELL_BYTES + cls._ROW_BYTES)

    def nbytes(self) -> int:
        """Memory this table holds (arrays, lists and the float objects of ``value``)."""
        arrays = (self.preferences, self.rest, self.order, self.probability)
        lists = (self.value, self.greedy, self.count, self.suppressed, self.reason, self.blocker)
        total = sum(a.nbytes for a in arrays)
        total += sum(sys.getsizeof(items) for items in lists)
        return total + len(self.value) * sys.getsizeof(0.5)

    @classmethod
    def build(cls, scorer: PolicyScorer, day: int) -> DayTable:
        n_actions = len(scorer.action_names)
        scorer.space.require_table(7 * n_actions, "a day's decision table (7 x S x A)")
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
        masks = scorer.rule_masks(request)
        unique = Evaluated.evaluate(scorer, every, request, masks.allowed, rows)
        head = unique.head
        order, probability = head.ranking(n_actions)
        blocked = ~head.top_allowed
        reason = scorer.reasons.blocking(masks, rows, head.top)
        return cls(
            preferences=head.preferences,
            rest=masks.allowed_except("consent"),
            value=unique.value.tolist(),
            greedy=head.greedy.tolist(),
            count=((order >= 0) & (probability > 0)).sum(axis=1).tolist(),
            order=np.maximum(order, 0).astype(np.int16),
            probability=probability,
            suppressed=np.where(blocked, head.top, -1).tolist(),
            reason=np.where(blocked, reason, -1).tolist(),
            blocker=masks.blocked_by(rows, head.top, skip="consent").tolist(),
        )


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BuildOnceLRU(Generic[K, V]):
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
