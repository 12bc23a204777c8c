"""The twin as a hidden Markov model of what a company cannot see, and the tracker's input checks.

The latent state is a fixed *type* (persona x rate level x dropout level) and a journey stage;
a day's observation is whether the customer bought, under the day's action. The matrices are
the twin's own outcome model (:func:`nba.dynamics.outcome_model`) read off for every (type,
stage, action), with the observed rest of the state either at its rested value
(:func:`nba.state.rested_state`: :func:`twin_hmm`) or at each *context* (:func:`context_hmm`).

A context is the observed parts the outcome model reads, :data:`CONTEXT_PARTS`: contact
pressure (how likely a message is noticed, how likely an irritating one churns) and the
discount habit (it depresses full-price buying and lifts discount response). The opt-out only
sets tomorrow's opt-out chance and the days since contact only the action masks: neither moves a
purchase or a stage, so neither is part of a context (an opted-out customer's executed action
already says what reached them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from nba.dynamics import outcome_model
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.state import CustomerState, rested_state
from nba.types import BoolArray, FloatArray, IntArray

#: The observed state components the outcome probabilities read (see the module docstring).
CONTEXT_PARTS = ("pressure", "habit")
#: What :func:`context_index` reads: a :class:`~nba.state.CustomerState` or a mapping with
#: (N,) ``pressure`` (whole numbers 0 .. capacity) and (N,) ``habit`` (booleans); other
#: components are ignored.
Context = CustomerState | Mapping[str, npt.ArrayLike]


class BeliefError(NBAValidationError):
    """Beliefs or observations that the tracker cannot use; names the field and the problem."""


def twin_hmm(arrays: ScenarioArrays) -> tuple[FloatArray, FloatArray]:
    """(T, K) prior over (type, first stage), and the (3A, T, K, K) kernels of the rested
    context: joint probabilities of (no purchase, next stage) per action, of (a purchase, next
    stage), and the stage moves given a purchase (a conditioned start; zero rows where none can
    buy).

    Types are persona-major, then rate, then dropout level, each level drawn independently of
    persona from its shares (as the twin does)."""
    k = arrays.n_stages
    shares = (arrays.persona_share, arrays.rate_level_share, arrays.dropout_level_share)
    prior = np.einsum("p,r,d,pk->prdk", *shares, arrays.persona_initial_stage).reshape(-1, k)
    return prior, _kernels(arrays, None)


def n_contexts(arrays: ScenarioArrays) -> int:
    """How many contexts there are: (pressure capacity + 1) x 2 habit values."""
    return (int(arrays.rules.pressure_capacity) + 1) * 2


def context_hmm(arrays: ScenarioArrays) -> FloatArray:
    """(C x 3A, T, K, K) :func:`twin_hmm`'s kernels for every context, context-major (context
    ``pressure * 2 + habit``, see :func:`context_index`), from one outcome-model call."""
    pressure, habit = np.divmod(np.arange(n_contexts(arrays)), 2)
    return _kernels(arrays, (pressure, habit.astype(bool)))


def _kernels(arrays: ScenarioArrays, contexts: tuple[IntArray, BoolArray] | None) -> FloatArray:
    """(C x 3A, T, K, K) kernels for the given (pressure, habit) contexts; ``None``: the one
    rested context, built exactly as the rested state is (the tracker's default, bit for bit)."""
    k, n_actions = arrays.n_stages, arrays.n_actions
    dims = (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels)
    n_types = int(np.prod(dims))
    persona, rate, dropout = (np.repeat(d, k) for d in np.indices(dims).reshape(3, -1))
    per_context = n_actions * n_types * k  # rows: (context, action, type, stage)
    n_ctx = 1 if contexts is None else contexts[0].shape[0]
    reps = n_actions * n_ctx
    state = rested_state(
        arrays,
        np.tile(persona, reps),
        np.tile(np.tile(np.arange(k), n_types), reps),
        rate_level=np.tile(rate, reps),
        dropout_level=np.tile(dropout, reps),
    )
    if contexts is not None:
        state.pressure = np.repeat(contexts[0], per_context)
        state.habit = np.repeat(contexts[1], per_context)
    actions = np.tile(np.repeat(np.arange(n_actions), n_types * k), n_ctx)
    outcomes = outcome_model(arrays, state, actions)
    cases, moves = outcomes.case_probs, outcomes.next_stage  # (size, 4), (size, 4, K)
    shape = (n_ctx, n_actions, n_types, k, k)
    bought = (cases[:, 1, None] * moves[:, 1] + cases[:, 3, None] * moves[:, 3]).reshape(shape)
    quiet = (cases[:, 0, None] * moves[:, 0] + cases[:, 2, None] * moves[:, 2]).reshape(shape)
    odds = bought.sum(axis=-1, keepdims=True)
    given_start = np.divide(bought, odds, out=np.zeros_like(bought), where=odds > 0)
    kernels: FloatArray = np.concatenate([quiet, bought, given_start], axis=1)
    return kernels.reshape(n_ctx * 3 * n_actions, n_types, k, k)


def context_index(arrays: ScenarioArrays, context: Context, n: int) -> IntArray:
    """(n,) each customer's context, ``pressure * 2 + habit``, or a clear error naming the
    component (a missing one, a wrong shape, a pressure outside 0 .. capacity)."""
    parts = []
    for name in CONTEXT_PARTS:
        try:
            value = context[name] if isinstance(context, Mapping) else getattr(context, name)
        except (KeyError, AttributeError):
            raise BeliefError(f"context: missing {name!r} (need {list(CONTEXT_PARTS)})") from None
        parts.append(value)
    capacity = int(arrays.rules.pressure_capacity)
    pressure = check_whole(parts[0], (n,), "context.pressure", 0, capacity)
    habit = check_flags(parts[1], n, "context.habit")
    index: IntArray = pressure.astype(np.int64) * 2 + habit
    return index


def check_flags(values: npt.ArrayLike, n: int, name: str) -> BoolArray:
    """(n,) booleans, or a clear error naming ``name``."""
    array = np.asarray(values)
    if array.shape != (n,) or array.dtype != bool:
        raise BeliefError(f"{name}: expected ({n},) booleans, got {array.dtype} {array.shape}")
    flags: BoolArray = array
    return flags


def check_whole(
    values: npt.ArrayLike, shape: tuple[int, ...], name: str, low: int, high: int | None = None
) -> npt.NDArray[np.integer[Any]]:
    """Integers of ``shape`` in ``[low, high]``, or a clear error naming ``name``."""
    array = np.asarray(values)
    if array.shape != shape:
        raise BeliefError(f"{name}: expected shape {shape}, got {array.shape}")
    if array.dtype.kind not in "iu":
        raise BeliefError(f"{name}: expected whole numbers, got {array.dtype}")
    if array.size and (array.min() < low or (high is not None and array.max() > high)):
        bad = array.min() if array.min() < low else array.max()
        where = np.unravel_index(int(np.flatnonzero(array.ravel() == bad)[0]), shape)
        span = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise BeliefError(f"{name}: {int(bad)} at {tuple(map(int, where))} is not in {span}")
    whole: npt.NDArray[np.integer[Any]] = array
    return whole
