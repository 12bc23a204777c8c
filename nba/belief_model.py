"""The twin as a hidden Markov model of what a company cannot see, and the tracker's input checks.

The latent state is a fixed *type* (persona x rate level x dropout level) and a journey stage;
a day's observation is whether the customer bought, under the day's action. Everything else in
the customer's state (contact pressure, discount habit, opt-out) is held at its rested value
(:func:`nba.state.rested_state`), so the matrices are the twin's own outcome model
(:func:`nba.dynamics.outcome_model`) read off for every (type, stage, action).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from nba.dynamics import outcome_model
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.state import rested_state
from nba.types import BoolArray, FloatArray


class BeliefError(NBAValidationError):
    """Beliefs or observations that the tracker cannot use; names the field and the problem."""


def twin_hmm(arrays: ScenarioArrays) -> tuple[FloatArray, FloatArray]:
    """(T, K) prior over (type, first stage), and the (3A, T, K, K) kernels: joint
    probabilities of (no purchase, next stage) per action, of (a purchase, next stage), and the
    stage moves given a purchase (a conditioned start; zero rows where none can buy).

    Types are persona-major, then rate, then dropout level, each level drawn independently of
    persona from its shares (as the twin does)."""
    k, n_actions = arrays.n_stages, arrays.n_actions
    dims = (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels)
    shares = (arrays.persona_share, arrays.rate_level_share, arrays.dropout_level_share)
    prior = np.einsum("p,r,d,pk->prdk", *shares, arrays.persona_initial_stage).reshape(-1, k)
    n_types = int(np.prod(dims))
    persona, rate, dropout = (np.repeat(d, k) for d in np.indices(dims).reshape(3, -1))
    state = rested_state(
        arrays,
        np.tile(persona, n_actions),
        np.tile(np.tile(np.arange(k), n_types), n_actions),
        rate_level=np.tile(rate, n_actions),
        dropout_level=np.tile(dropout, n_actions),
    )
    outcomes = outcome_model(arrays, state, np.repeat(np.arange(n_actions), n_types * k))
    cases, moves = outcomes.case_probs, outcomes.next_stage  # (size, 4), (size, 4, K)
    shape = (n_actions, n_types, k, k)
    bought = (cases[:, 1, None] * moves[:, 1] + cases[:, 3, None] * moves[:, 3]).reshape(shape)
    quiet = (cases[:, 0, None] * moves[:, 0] + cases[:, 2, None] * moves[:, 2]).reshape(shape)
    odds = bought.sum(axis=-1, keepdims=True)
    given = np.divide(bought, odds, out=np.zeros_like(bought), where=odds > 0)
    kernels: FloatArray = np.concatenate([quiet, bought, given])
    return prior, kernels


def check_flags(values: BoolArray, n: int, name: str) -> BoolArray:
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
