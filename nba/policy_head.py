"""The policy head: the one place where a policy's outputs become decisions.

A network scores every action: logits for actor-critic policies (PPO, A2C, MaskablePPO),
Q-values for DQN. The head masks what the contact rules forbid and then gives the greedy choice
(the best *allowed* action: a forbidden favourite never turns into "no action"), the policy's
distribution over the allowed actions, a ranking, and exploration with exact propensities.

Training's periodic and final evaluation, exact scoring, the OPE target, the promotion gate,
:class:`~nba.serving.scorer.PolicyScorer` and the MLflow pyfunc all decide through this module,
so the value a run reports is the value the served model earns. Training masks the same way
(:mod:`nba.training.masking`), so an agent never learns to ask for a forbidden action as a way
of saying "nothing".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.util import hash_array

from nba.errors import NBAValidationError
from nba.types import BoolArray, FloatArray, IntArray

OutputKind = Literal["logits", "q_values"]
OUTPUT_KINDS: tuple[str, ...] = ("logits", "q_values")


@dataclass(frozen=True)
class Exploration:
    """How a decision departs from the greedy choice, with propensities it can log.

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


@dataclass(frozen=True)
class HeadOutput:
    """A policy's decision for N rows, before exploration."""

    preferences: FloatArray  # (N, A) network outputs as given
    masked: FloatArray  # (N, A) preferences, -inf where a rule forbids the action
    greedy: IntArray  # (N,) best allowed action
    probabilities: FloatArray  # (N, A) the policy's own distribution over allowed actions
    top: IntArray  # (N,) the favourite ignoring the rules (to explain a suppression)
    top_allowed: BoolArray  # (N,) whether that favourite is allowed

    def take(self, rows: IntArray) -> HeadOutput:
        """The decisions of the given rows (e.g. spread from distinct states to customers)."""
        return HeadOutput(
            preferences=self.preferences[rows],
            masked=self.masked[rows],
            greedy=self.greedy[rows],
            probabilities=self.probabilities[rows],
            top=self.top[rows],
            top_allowed=self.top_allowed[rows],
        )

    def ranking(self, top_k: int) -> tuple[IntArray, FloatArray]:
        """The ``top_k`` allowed actions by preference (-1 past the allowed ones)."""
        k = max(0, min(top_k, self.masked.shape[1]))
        order = np.argsort(-self.masked, axis=1, kind="stable")[:, :k]
        rows = np.arange(order.shape[0])[:, None]
        valid = np.isfinite(self.masked[rows, order])
        return np.where(valid, order, -1), np.where(valid, self.probabilities[rows, order], 0.0)


def decide(preferences: FloatArray, allowed: BoolArray, kind: str) -> HeadOutput:
    """Mask, choose and rank: the greedy decision of a policy with these outputs.

    :param preferences: (N, A) logits or Q-values.
    :param allowed: (N, A) what the contact rules allow; "no action" (column 0) always is.
    :param kind: ``logits`` or ``q_values`` (how to read ``preferences`` as a distribution).
    """
    preferences = np.asarray(preferences, dtype=np.float64)
    allowed = np.asarray(allowed, dtype=bool)
    if preferences.shape != allowed.shape or preferences.ndim != 2:
        raise NBAValidationError(
            f"policy head: preferences {preferences.shape} and mask {allowed.shape} differ"
        )
    masked = mask(preferences, allowed)
    greedy = np.argmax(masked, axis=1)
    top = np.argmax(preferences, axis=1)
    rows = np.arange(preferences.shape[0])
    return HeadOutput(
        preferences=preferences,
        masked=masked,
        greedy=greedy,
        probabilities=policy_probabilities(masked, kind),
        top=top,
        top_allowed=allowed[rows, top],
    )


def mask(preferences: FloatArray, allowed: BoolArray) -> FloatArray:
    """Preferences with -inf where an action is forbidden ("no action" is always kept)."""
    keep = np.array(allowed, dtype=bool, copy=True)
    keep[:, 0] = True
    return np.where(keep, preferences, -np.inf)


def policy_probabilities(masked: FloatArray, kind: str) -> FloatArray:
    """The policy's distribution over allowed actions: softmax of logits, greedy for Q-values."""
    if kind == "logits":
        return softmax(masked)
    if kind == "q_values":
        return one_hot(np.argmax(masked, axis=1), masked.shape[1])
    raise NBAValidationError(f"policy output: unknown kind {kind!r}; expected {OUTPUT_KINDS}")


def softmax(masked: FloatArray, temperature: float = 1.0) -> FloatArray:
    """Row-wise softmax of masked preferences (forbidden actions get probability 0)."""
    shifted = np.exp((masked - masked.max(axis=1, keepdims=True)) / temperature)
    return shifted / shifted.sum(axis=1, keepdims=True)


def one_hot(actions: IntArray, n_actions: int) -> FloatArray:
    """(N, A) probabilities of a deterministic choice."""
    probabilities = np.zeros((actions.shape[0], n_actions))
    probabilities[np.arange(actions.shape[0]), actions] = 1.0
    return probabilities


def uniform(allowed: BoolArray) -> FloatArray:
    """Uniform probabilities over the allowed actions of each row."""
    return allowed / allowed.sum(axis=1, keepdims=True)


def epsilon_mix(greedy: IntArray, allowed: BoolArray, epsilon: float) -> FloatArray:
    """Probabilities of epsilon-greedy: ``epsilon`` uniform over allowed, else ``greedy``."""
    return epsilon * uniform(allowed) + (1.0 - epsilon) * one_hot(greedy, allowed.shape[1])


def exploration_probabilities(
    head: HeadOutput, allowed: BoolArray, exploration: Exploration
) -> FloatArray:
    """(N, A) the exact probabilities an exploring decision is drawn from."""
    if exploration.kind == "greedy":
        return one_hot(head.greedy, allowed.shape[1])
    if exploration.kind == "epsilon":
        return epsilon_mix(head.greedy, np.isfinite(head.masked), exploration.epsilon)
    return softmax(head.masked, exploration.temperature)


def explore_with(
    head: HeadOutput, allowed: BoolArray, exploration: Exploration, uniforms: FloatArray
) -> tuple[IntArray, FloatArray, BoolArray]:
    """Chosen actions, their exact propensities, and whether each departs from greedy.

    :param uniforms: (N,) one draw in [0, 1) per row, e.g. :func:`exploration_uniforms`, so a
        row's decision depends on its own draw only, never on the rows batched with it.
    """
    n = head.greedy.shape[0]
    if exploration.kind == "greedy":
        return head.greedy, np.ones(n), np.zeros(n, dtype=bool)
    probabilities = exploration_probabilities(head, allowed, exploration)
    chosen = sample_with(probabilities, uniforms)
    return chosen, probabilities[np.arange(n), chosen], chosen != head.greedy


def sample_with(probabilities: FloatArray, uniforms: FloatArray) -> IntArray:
    """One action per row by inverting its cumulative distribution at the row's uniform.

    Actions with probability 0 are never chosen (the comparison skips an empty interval).
    """
    cumulative = np.cumsum(probabilities, axis=1)
    uniforms = np.asarray(uniforms, dtype=np.float64)
    if uniforms.shape != (probabilities.shape[0],):
        raise NBAValidationError(
            f"policy head: {uniforms.shape} uniforms for {probabilities.shape[0]} rows"
        )
    draw = uniforms[:, None] * cumulative[:, -1:]
    return np.minimum((draw >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def sample(probabilities: FloatArray, rng: np.random.Generator) -> IntArray:
    """One draw per row from a generator's stream (simulation and training, not serving)."""
    return sample_with(probabilities, rng.random((probabilities.shape[0],)))


# ---------------------------------------------------------------- counter-based draws
# Serving explores with one uniform per (seed, customer, decision time): a pure function of the
# three, so a customer's decision does not depend on how requests are batched, on the order they
# arrive in, or on which worker thread or process serves them. The customer id is hashed as text
# (42 and "42" are one customer, as the decision log stores them) by pandas' SipHash-based
# hash_array; seed, id and time are mixed with splitmix64's finaliser in uint64 arithmetic.

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_ID_HASH_KEY = "nba-explore-ids!"  # 16 bytes: SipHash's key for customer ids


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(_MIX1)
    x ^= x >> np.uint64(27)
    x *= np.uint64(_MIX2)
    x ^= x >> np.uint64(31)
    return x


def _mix64_int(x: int) -> int:
    """:func:`_mix64` of one Python int (mod 2**64)."""
    x ^= x >> 30
    x = (x * _MIX1) & _MASK64
    x ^= x >> 27
    x = (x * _MIX2) & _MASK64
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=64)
def _seed_key(seed: int) -> int:
    return _mix64_int((seed + _GOLDEN) & _MASK64)


def _id_texts(customer_ids: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Customer ids as an object array of ``str`` (the form that is hashed)."""
    ids = np.asarray(customer_ids)
    if ids.dtype == object and pd.api.types.infer_dtype(ids, skipna=False) == "string":
        return ids
    return pd.Series(ids, copy=False).astype(str).to_numpy(dtype=object)


def _utf8_safe(text: str) -> str:
    """``text``, or a stand-in for text UTF-8 cannot encode (lone surrogates from JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("latin-1")
    return text


def _hash_texts(texts: npt.NDArray[np.object_]) -> npt.NDArray[np.uint64]:
    try:
        return hash_array(texts, hash_key=_ID_HASH_KEY, categorize=False)
    except UnicodeEncodeError:
        safe = np.array([_utf8_safe(t) for t in texts.tolist()], dtype=object)
        return hash_array(safe, hash_key=_ID_HASH_KEY, categorize=False)


def exploration_uniforms(
    seed: int, customer_ids: npt.ArrayLike, decided_at_ns: npt.ArrayLike
) -> FloatArray:
    """(N,) uniforms in [0, 1): one per customer and decision time, a pure function of both.

    :param seed: the exploration's seed (any int; taken mod 2**64).
    :param customer_ids: (N,) strings or integers (hashed as their text).
    :param decided_at_ns: (N,) decision times in nanoseconds since the epoch (mod 2**64).
    """
    hashed = _hash_texts(_id_texts(customer_ids))
    times = np.asarray(decided_at_ns)
    times = times.astype(np.int64).view(np.uint64) if times.dtype != np.uint64 else times
    if times.shape != hashed.shape:
        raise NBAValidationError(
            f"exploration: {times.shape} decision times for {hashed.shape} customers"
        )
    state = _mix64(hashed ^ np.uint64(_seed_key(seed)))
    state = _mix64(state ^ _mix64(times + np.uint64(_GOLDEN)))
    return (state >> np.uint64(11)).astype(np.float64) * 2.0**-53


def exploration_uniform(seed: int, customer_id: object, decided_at_ns: int) -> float:
    """:func:`exploration_uniforms` for one customer, plain Python (the latency path)."""
    hashed = _hash_one(_utf8_safe(str(customer_id)))
    state = _mix64_int(hashed ^ _seed_key(seed))
    state = _mix64_int(state ^ _mix64_int((decided_at_ns + _GOLDEN) & _MASK64))
    return (state >> 11) * 2.0**-53


def _hash_one_public(text: str) -> int:
    return int(
        hash_array(np.array([text], dtype=object), hash_key=_ID_HASH_KEY, categorize=False)[0]
    )


def _fast_hash_one() -> Callable[[str], int]:
    """One id's hash in ~1 us instead of hash_array's ~10 us of per-call overhead.

    Calls the SipHash kernel behind :func:`pandas.util.hash_array` and applies its final mix;
    used only when it agrees with the public function on probes (else the public one is).
    """
    try:
        from pandas._libs.hashing import hash_object_array
    except ImportError:  # pragma: no cover - a pandas without the kernel
        return _hash_one_public

    def fast(text: str) -> int:
        cell = np.empty(1, dtype=object)
        cell[0] = text
        x = int(hash_object_array(cell, _ID_HASH_KEY, "utf8")[0])
        x ^= x >> 30
        x = (x * _MIX1) & _MASK64
        x ^= x >> 27
        x = (x * _MIX2) & _MASK64
        return x ^ (x >> 31)

    probes = ("c-1", "", "42", "Zoë 客户 \U0001f600", "x" * 300)
    try:
        agrees = all(fast(p) == _hash_one_public(p) for p in probes)
    except Exception:  # pragma: no cover - a changed private signature
        agrees = False
    return fast if agrees else _hash_one_public


_hash_one = _fast_hash_one()


# ---------------------------------------------------------------- one row, plain Python
# The single-customer scorer decides one row in tens of microseconds, where numpy's per-call
# overhead on (1, A) arrays is most of the cost. These mirror the array functions above
# operation for operation (same order of float operations, same tie-breaking, same uniform);
# tests hold them equal on random rows.


class RowDecision(NamedTuple):
    """:class:`HeadOutput` of one row as plain Python values."""

    masked: list[float]
    greedy: int
    probabilities: list[float]
    top: int
    top_allowed: bool


def decide_row(preferences: Sequence[float], allowed: Sequence[bool], kind: str) -> RowDecision:
    """:func:`decide` for one row (plain lists in, plain values out)."""
    if len(preferences) != len(allowed):
        raise NBAValidationError(
            f"policy head: preferences ({len(preferences)},) and mask ({len(allowed)},) differ"
        )
    preferences = list(preferences)
    masked = mask_row(preferences, allowed)
    greedy = masked.index(max(masked))  # the first maximum, as np.argmax
    top = preferences.index(max(preferences))
    return RowDecision(
        masked=masked,
        greedy=greedy,
        probabilities=policy_probabilities_row(masked, kind),
        top=top,
        top_allowed=bool(allowed[top]),
    )


def mask_row(preferences: Sequence[float], allowed: Sequence[bool]) -> list[float]:
    """:func:`mask` for one row."""
    masked = [p if ok else -math.inf for p, ok in zip(preferences, allowed, strict=True)]
    masked[0] = preferences[0]
    return masked


def policy_probabilities_row(masked: Sequence[float], kind: str) -> list[float]:
    """:func:`policy_probabilities` for one row."""
    if kind == "logits":
        return softmax_row(masked)
    if kind == "q_values":
        greedy = list(masked).index(max(masked))
        return [1.0 if a == greedy else 0.0 for a in range(len(masked))]
    raise NBAValidationError(f"policy output: unknown kind {kind!r}; expected {OUTPUT_KINDS}")


def softmax_row(masked: Sequence[float], temperature: float = 1.0) -> list[float]:
    """:func:`softmax` for one row."""
    top = max(masked)
    shifted = [math.exp((x - top) / temperature) for x in masked]
    total = sum(shifted)
    return [x / total for x in shifted]


def exploration_probabilities_row(head: RowDecision, exploration: Exploration) -> list[float]:
    """:func:`exploration_probabilities` for one row."""
    n = len(head.masked)
    if exploration.kind == "greedy":
        return [1.0 if a == head.greedy else 0.0 for a in range(n)]
    if exploration.kind == "epsilon":
        finite = [math.isfinite(x) for x in head.masked]
        share = 1.0 / sum(finite)
        epsilon = exploration.epsilon
        return [
            epsilon * (share if ok else 0.0) + (1.0 - epsilon) * (1.0 if a == head.greedy else 0.0)
            for a, ok in enumerate(finite)
        ]
    return softmax_row(head.masked, exploration.temperature)


def explore_row_with(
    head: RowDecision, exploration: Exploration, uniform: float
) -> tuple[int, float, bool]:
    """:func:`explore_with` for one row: the action, its exact propensity, whether it explored.

    Given the row's uniform it chooses exactly what :func:`explore_with` chooses for that row.
    """
    if exploration.kind == "greedy":
        return head.greedy, 1.0, False
    probabilities = exploration_probabilities_row(head, exploration)
    chosen = sample_row_with(probabilities, uniform)
    return chosen, probabilities[chosen], chosen != head.greedy


def sample_row_with(probabilities: Sequence[float], uniform: float) -> int:
    """:func:`sample_with` for one row."""
    cumulative = list(accumulate(probabilities))
    draw = uniform * cumulative[-1]
    return min(sum(draw >= c for c in cumulative), len(cumulative) - 1)


def ranking_row(masked: Sequence[float]) -> list[int]:
    """The allowed actions of one row by preference, as :meth:`HeadOutput.ranking` orders them."""
    # sorted keeps ties in index order even in reverse, as argsort(-masked, kind="stable")
    order = sorted(range(len(masked)), key=masked.__getitem__, reverse=True)
    return [a for a in order if math.isfinite(masked[a])]


__all__ = [
    "Exploration",
    "HeadOutput",
    "RowDecision",
    "decide",
    "decide_row",
    "epsilon_mix",
    "exploration_probabilities",
    "exploration_probabilities_row",
    "exploration_uniform",
    "exploration_uniforms",
    "explore_row_with",
    "explore_with",
    "mask",
    "mask_row",
    "one_hot",
    "policy_probabilities",
    "policy_probabilities_row",
    "ranking_row",
    "sample",
    "sample_row_with",
    "sample_with",
    "softmax",
    "softmax_row",
    "uniform",
]
