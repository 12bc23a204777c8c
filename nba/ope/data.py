"""Logged data for off-policy evaluation, validated once at the door.

Estimators trust these containers, so every check lives here: shapes, NaNs, propensities in
(0, 1], action indices inside the catalogue, evaluation-policy rows that are distributions, and
matching action catalogues. Each failure is an :class:`OPEInputError` naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.types import BoolArray, FloatArray, IntArray

#: Tolerance on a probability row's sum (float32 logs carry about 1e-7 per entry).
SUM_TOLERANCE = 1e-4


class OPEInputError(NBAValidationError):
    """Logged data or an evaluation policy that off-policy evaluation cannot use."""


def _first(bad: BoolArray) -> int:
    return int(np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0])


def check_finite(name: str, values: np.ndarray) -> None:
    """Refuse NaN or infinity, naming the first bad row."""
    finite = np.isfinite(values)
    if not finite.all():
        raise OPEInputError(f"{name}[{_first(~finite)}]: NaN or infinity")


def check_probability_rows(name: str, probabilities: FloatArray) -> None:
    """Rows (over the last axis) must be non-negative and sum to 1."""
    check_finite(name, probabilities)
    if (probabilities < 0).any():
        raise OPEInputError(f"{name}[{_first(probabilities < 0)}]: negative probability")
    sums = probabilities.sum(axis=-1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        row = _first(off)
        total = float(sums.reshape(sums.shape[0], -1)[row].max())
        raise OPEInputError(f"{name}[{row}]: probabilities sum to {total:.6f}, not 1")


def check_propensities(name: str, propensity: FloatArray) -> None:
    """Logging propensities of the logged actions: present, finite, in (0, 1]."""
    check_finite(name, propensity)
    zero = propensity <= 0
    if zero.any():
        raise OPEInputError(
            f"{name}[{_first(zero)}]: propensity {float(propensity[zero][0])} for a logged action;"
            " the logging policy could not have chosen it (need > 0)"
        )
    above = propensity > 1.0 + 1e-9
    if above.any():
        raise OPEInputError(f"{name}[{_first(above)}]: propensity above 1")


def check_actions(name: str, actions: np.ndarray, n_actions: int) -> IntArray:
    array = np.asarray(actions)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(array == np.round(array)):
            raise OPEInputError(f"{name}: expected integer action indices, got {array.dtype}")
    array = array.astype(np.int64)
    bad = (array < 0) | (array >= n_actions)
    if bad.any():
        row = _first(bad)
        raise OPEInputError(
            f"{name}[{row}]: action {int(array.reshape(array.shape[0], -1)[row].max())} is not in"
            f" the catalogue of {n_actions} actions (mismatched action catalogue?)"
        )
    return array


def check_catalogue(logged: Sequence[str] | None, evaluated: Sequence[str] | None) -> None:
    """Both sides must name the same actions in the same order."""
    if logged is None or evaluated is None or list(logged) == list(evaluated):
        return
    if len(logged) != len(evaluated):
        raise OPEInputError(
            f"action catalogue: the log has {len(logged)} actions, the evaluation policy "
            f"{len(evaluated)}"
        )
    at = next(i for i, (a, b) in enumerate(zip(logged, evaluated, strict=True)) if a != b)
    raise OPEInputError(
        f"action catalogue: action {at} is {logged[at]!r} in the log but {evaluated[at]!r} "
        "in the evaluation policy"
    )


@dataclass(frozen=True)
class LoggedBandit:
    """One-step logged decisions and an evaluation policy's probabilities on them.

    :param context: (n, d) features the decision saw (d may be 0 for context-free data).
    :param action: (n,) logged action indices.
    :param reward: (n,) observed rewards.
    :param propensity: (n,) probability the logging policy gave the logged action.
    :param target: (n, A) evaluation-policy probabilities over the catalogue.
    :param action_names: the catalogue's names, when known (checked against the target's).
    :param groups: (n,) cluster labels (e.g. customer ids); intervals then resample clusters,
        which keeps them honest when one customer has many decisions.
    """

    context: FloatArray
    action: IntArray
    reward: FloatArray
    propensity: FloatArray
    target: FloatArray
    action_names: tuple[str, ...] | None = None
    groups: IntArray | None = None

    def __post_init__(self) -> None:
        target = np.asarray(self.target, dtype=np.float64)
        if target.ndim != 2:
            raise OPEInputError(f"target: expected shape (n, n_actions), got {target.shape}")
        n, n_actions = target.shape
        if n == 0:
            raise OPEInputError("log: no decisions")
        context = np.asarray(self.context, dtype=np.float64)
        if context.ndim == 1:
            context = context[:, None]
        arrays: dict[str, Any] = {
            "context": context,
            "reward": np.asarray(self.reward, dtype=np.float64),
            "propensity": np.asarray(self.propensity, dtype=np.float64),
        }
        for name, value in (("action", np.asarray(self.action)), *arrays.items()):
            if value.shape[:1] != (n,) or (name != "context" and value.ndim != 1):
                expected = f"({n}, d)" if name == "context" else f"({n},)"
                raise OPEInputError(f"{name}: expected shape {expected}, got {value.shape}")
        check_finite("context", context)
        check_finite("reward", arrays["reward"])
        check_propensities("propensity", arrays["propensity"])
        check_probability_rows("target", target)
        action = check_actions("action", self.action, n_actions)
        if self.action_names is not None and len(self.action_names) != n_actions:
            check_catalogue(tuple(self.action_names), tuple(f"#{i}" for i in range(n_actions)))
        groups = None
        if self.groups is not None:
            labels = np.asarray(self.groups)
            if labels.shape != (n,):
                raise OPEInputError(f"groups: expected shape ({n},), got {labels.shape}")
            groups = np.unique(labels, return_inverse=True)[1].astype(np.int64)
        for name, value in {**arrays, "target": target, "action": action}.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "groups", groups)
        if self.action_names is not None:
            object.__setattr__(self, "action_names", tuple(self.action_names))

    @property
    def n(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.target.shape[1])

    @property
    def weights(self) -> FloatArray:
        """Importance weights pi_e(a|x) / pi_0(a|x) of the logged actions."""
        return self.target[np.arange(self.n), self.action] / self.propensity

    def with_target(
        self, target: FloatArray, action_names: Sequence[str] | None = None
    ) -> LoggedBandit:
        """The same log under another evaluation policy (catalogues must match)."""
        check_catalogue(self.action_names, action_names)
        return replace(self, target=target)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        target: FloatArray | Sequence[str],
        *,
        context: Sequence[str] = (),
        action: str = "action",
        reward: str = "reward",
        propensity: str = "propensity",
        groups: str | None = None,
        action_names: Sequence[str] | None = None,
    ) -> LoggedBandit:
        """From a DataFrame; ``target`` is an (n, A) array or the names of A columns."""
        needed = [action, reward, propensity, *context, *([groups] if groups else [])]
        if not isinstance(target, np.ndarray):
            needed += list(target)
        missing = [name for name in needed if name not in frame.columns]
        if missing:
            what = "logging propensities" if propensity in missing else "columns"
            raise OPEInputError(f"{missing[0]}: missing column ({what} {missing} not in the frame)")
        if frame[propensity].isna().any():
            row = int(np.flatnonzero(frame[propensity].isna().to_numpy())[0])
            raise OPEInputError(f"propensity[{row}]: missing logging propensity")
        probabilities = (
            target if isinstance(target, np.ndarray) else frame[list(target)].to_numpy(float)
        )
        return cls(
            context=frame[list(context)].to_numpy(float) if context else np.zeros((len(frame), 0)),
            action=frame[action].to_numpy(),
            reward=frame[reward].to_numpy(float),
            propensity=frame[propensity].to_numpy(float),
            target=probabilities,
            action_names=tuple(action_names) if action_names is not None else None,
            groups=frame[groups].to_numpy() if groups else None,
        )


@dataclass(frozen=True)
class LoggedTrajectories:
    """Multi-step logs: n trajectories of up to T steps, padded after they end.

    Arrays are (n, T) or (n, T, ...). ``alive`` marks real steps; after a trajectory ends the
    padding carries reward 0 and importance ratio 1, so sums over steps need no special cases.

    :param context: (n, T, d) features at each step.
    :param target: (n, T, A) evaluation-policy probabilities at each step.
    :param discount: per-step discount factor of the value being estimated.
    """

    context: FloatArray
    action: IntArray
    reward: FloatArray
    propensity: FloatArray
    target: FloatArray
    discount: float = 1.0
    alive: BoolArray | None = None
    action_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        target = np.asarray(self.target, dtype=np.float64)
        if target.ndim != 3:
            raise OPEInputError(f"target: expected shape (n, T, n_actions), got {target.shape}")
        n, horizon, n_actions = target.shape
        if n == 0 or horizon == 0:
            raise OPEInputError("log: no trajectories")
        alive = (
            np.ones((n, horizon), dtype=bool)
            if self.alive is None
            else np.asarray(self.alive, dtype=bool)
        )
        context = np.asarray(self.context, dtype=np.float64)
        fields = {
            "reward": np.asarray(self.reward, dtype=np.float64),
            "propensity": np.asarray(self.propensity, dtype=np.float64),
            "alive": alive,
        }
        for name, value in (("action", np.asarray(self.action)), *fields.items()):
            if value.shape != (n, horizon):
                raise OPEInputError(f"{name}: expected shape ({n}, {horizon}), got {value.shape}")
        if context.ndim != 3 or context.shape[:2] != (n, horizon):
            raise OPEInputError(f"context: expected shape ({n}, {horizon}, d), got {context.shape}")
        if not 0.0 < self.discount <= 1.0:
            raise OPEInputError(f"discount: {self.discount} is outside (0, 1]")
        check_finite("context", context)
        check_finite("reward", fields["reward"])
        propensity = np.where(alive, fields["propensity"], 1.0)
        check_propensities("propensity", propensity)
        probabilities = np.where(alive[:, :, None], target, 1.0 / n_actions)
        check_probability_rows("target", probabilities)
        action = check_actions("action", np.where(alive, self.action, 0), n_actions)
        values = {
            "context": context,
            "action": action,
            "reward": np.where(alive, fields["reward"], 0.0),
            "propensity": propensity,
            "target": probabilities,
            "alive": alive,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        return int(self.action.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.action.shape[1])

    @property
    def n_actions(self) -> int:
        return int(self.target.shape[2])

    @property
    def ratios(self) -> FloatArray:
        """(n, T) per-step importance ratios, 1 on padding."""
        chosen = np.take_along_axis(self.target, self.action[:, :, None], axis=2)[:, :, 0]
        return np.where(self.alive, chosen / self.propensity, 1.0)

    @property
    def discounts(self) -> FloatArray:
        """(T,) discount applied to each step's reward."""
        return self.discount ** np.arange(self.horizon, dtype=np.float64)
