"""The persistent holdout: a randomized control group that the model never decides for.

Lift is only believable against customers who were randomized away from the model and stayed
away. Membership is therefore a pure function of a salt and the customer id: the same customers
are held out on every run, by every model version, on every machine, with no table to keep.

A customer is in the control group iff ``int.from_bytes(blake2b(salt + "\\x00" + id)[:8],
"big") / 2**64 < share`` (the default 64-byte BLAKE2b digest, its first 8 bytes big-endian; ids
as text, so 7 and "7" are one customer). Any system can recompute it (SQL, Spark, a notebook).
Raising ``share`` only adds customers (the old control group stays inside the new one); a new
``salt`` draws an independent group.

Off-policy evaluation: a control row's action is chosen by the control policy, deterministic
given membership, so its logging propensity is 1 and OPE must treat holdout rows as logged by
the control policy (the decision log's ``holdout`` column says which rows those are).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

import numpy as np
import numpy.typing as npt

from nba.errors import NBAValidationError
from nba.types import BoolArray, FloatArray, IntArray

if TYPE_CHECKING:
    from nba.state import CustomerState

__all__ = [
    "CONTROLS",
    "Control",
    "Holdout",
    "HoldoutDecisions",
    "HoldoutError",
    "apply_holdout",
    "control_actions",
]

Control = Literal["no_action", "business_as_usual"]
CONTROLS: tuple[str, ...] = get_args(Control)
MAX_SHARE = 0.5  # a control group larger than the treated one is an experiment, not a holdout
_SCALE = float(2**64)


class HoldoutError(NBAValidationError):
    """A holdout that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Holdout:
    """A persistent control group: ``share`` of customers, drawn by ``salt``, given ``control``.

    :param share: fraction of customers held out, in (0, 0.5].
    :param salt: names the group; keep it for as long as the group should last.
    :param control: what a control customer gets: ``no_action`` (action 0) or
        ``business_as_usual`` (the scenario's journey map).
    """

    share: float
    salt: str
    control: Control = "no_action"

    def __post_init__(self) -> None:
        share = self.share
        if isinstance(share, bool) or not isinstance(share, int | float | np.floating):
            raise HoldoutError(f"share: expected a number in (0, {MAX_SHARE}], got {share!r}")
        if not (0.0 < float(share) <= MAX_SHARE):
            raise HoldoutError(f"share: expected a number in (0, {MAX_SHARE}], got {share!r}")
        object.__setattr__(self, "share", float(share))
        if not isinstance(self.salt, str) or not self.salt.strip():
            raise HoldoutError(f"salt: expected non-empty text, got {self.salt!r:.60}")
        if self.control not in CONTROLS:
            raise HoldoutError(f"control: expected one of {list(CONTROLS)}, got {self.control!r}")

    def scores(self, customer_ids: Any) -> FloatArray:
        """(N,) each customer's uniform draw in [0, 1): a function of the salt and id only."""
        ids = _id_texts(customer_ids)
        prefix = self.salt.encode("utf-8", "surrogatepass") + b"\x00"
        blake = hashlib.blake2b
        digests = b"".join(
            [blake(prefix + text.encode("utf-8", "surrogatepass")).digest()[:8] for text in ids]
        )
        values = np.frombuffer(digests, dtype=">u8").astype(np.float64)
        scores: FloatArray = values / _SCALE
        return scores

    def assign(self, customer_ids: Any) -> BoolArray:
        """(N,) True for the customers in the control group."""
        member: BoolArray = self.scores(customer_ids) < self.share
        return member


def _id_texts(customer_ids: Any) -> list[str]:
    """Ids as text, as the decision log stores them (``str``): 7, np.int64(7) and "7" alike."""
    if isinstance(customer_ids, str | bytes):
        raise HoldoutError("customer_ids: expected a sequence of ids, got one string")
    array = np.asarray(customer_ids)
    if array.ndim != 1:
        raise HoldoutError(f"customer_ids: expected shape (n,), got {array.shape}")
    if array.dtype.kind == "f":
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            row = int(np.flatnonzero(~whole)[0])
            raise HoldoutError(f"customer_ids[{row}]: {array[row]!r} is not an id")
        array = array.astype(np.int64)  # ids read as floats (a CSV with gaps) are integers
    if array.dtype.kind in "iub":
        array = array.astype(np.int64)
    texts: list[str] = array.astype(str).tolist() if array.dtype.kind != "O" else []
    if array.dtype.kind == "O":
        texts = [str(value) for value in array.tolist()]
    return texts


# ---------------------------------------------------------------------- control decisions
def control_actions(
    source: Any,
    control: Control,
    state: CustomerState,
    day: npt.ArrayLike,
    allowed: BoolArray,
    weekday: npt.ArrayLike | None = None,
) -> IntArray:
    """(N,) what control customers get today: 0 (no action) or the journey map's action.

    :param source: a :class:`~nba.serving.scorer.PolicyScorer`, a scenario, its name or a
        :class:`~nba.twin.CustomerTwin`; ``business_as_usual`` reads its journey map.
    :param state: the customers' states (a scorer's ``request.state``).
    :param day: (N,) each customer's day of the planning horizon (``request.day``).
    :param allowed: (N, A) actions the contact rules allow; a map step they forbid is "no
        action", as :class:`~nba.policies.JourneyMapPolicy` does in the twin.
    :param weekday: (N,) real weekdays (0 = Monday); the policy reads stage and day only.
    """
    if control not in CONTROLS:
        raise HoldoutError(f"control: expected one of {list(CONTROLS)}, got {control!r}")
    allowed = np.asarray(allowed, dtype=bool)
    n = len(state)
    if allowed.ndim != 2 or allowed.shape[0] != n:
        raise HoldoutError(f"allowed: expected shape ({n}, A), got {allowed.shape}")
    if control == "no_action" or n == 0:
        return np.zeros(n, dtype=np.int64)
    from nba.features import FeatureBuilder
    from nba.policies import JourneyMapPolicy

    twin = _twin_of(source)
    if allowed.shape[1] != twin.n_actions:
        raise HoldoutError(
            f"allowed: {allowed.shape[1]} actions, the scenario has {twin.n_actions}"
        )
    days = np.broadcast_to(np.asarray(day, dtype=np.int64), (n,))
    days = np.clip(days, 0, twin.scenario.horizon_days)
    week = None if weekday is None else np.broadcast_to(np.asarray(weekday, np.int64), (n,))
    obs = FeatureBuilder(twin.arrays, components=twin.components).build(state, days, weekday=week)
    actions, _ = JourneyMapPolicy(twin).act(obs, allowed)
    return np.asarray(actions, dtype=np.int64)


def _twin_of(source: Any) -> Any:
    """A customer-less twin of the source's scenario (its tables are shared and cached)."""
    from nba.twin import CustomerTwin

    if isinstance(source, CustomerTwin):
        return source
    policy = getattr(source, "policy", None)  # a PolicyScorer
    scenario = getattr(policy, "scenario", source)
    return CustomerTwin(scenario, seed=0)


class HoldoutDecisions(NamedTuple):
    """Decisions after the holdout: control rows carry the control's action, propensity 1."""

    actions: IntArray
    propensities: FloatArray
    explored: BoolArray
    holdout: BoolArray


def apply_holdout(
    holdout: Holdout,
    source: Any,
    customer_id: Any,
    state: CustomerState,
    day: npt.ArrayLike,
    allowed: BoolArray,
    actions: npt.ArrayLike,
    propensities: npt.ArrayLike,
    explored: npt.ArrayLike,
    weekday: npt.ArrayLike | None = None,
) -> HoldoutDecisions:
    """Replace the control group's decisions by the control policy's (what a scorer calls
    after choosing, before logging: ``DecisionLog.append(..., holdout=result.holdout)``).

    Treated rows keep their action, propensity and exploration flag. Control rows get the
    control's action with propensity 1 and ``explored`` False: membership, not the model,
    decided them. The model's own probabilities for those rows may still be logged (what it
    would have done), so OPE can evaluate it there with the control as the logging policy.
    """
    member = holdout.assign(customer_id)
    chosen = np.array(actions, dtype=np.int64, copy=True)
    propensity = np.array(propensities, dtype=np.float64, copy=True)
    explore = np.array(explored, dtype=bool, copy=True)
    n = member.shape[0]
    for name, column in (("actions", chosen), ("propensities", propensity), ("explored", explore)):
        if column.shape != (n,):
            raise HoldoutError(f"{name}: expected shape ({n},), got {column.shape}")
    rows = np.flatnonzero(member)
    if rows.size:
        days = np.broadcast_to(np.asarray(day, dtype=np.int64), (n,))[rows]
        week = None if weekday is None else np.broadcast_to(np.asarray(weekday), (n,))[rows]
        chosen[rows] = control_actions(
            source,
            holdout.control,
            state.take(rows),
            days,
            np.asarray(allowed, dtype=bool)[rows],
            week,
        )
        propensity[rows] = 1.0
        explore[rows] = False
    return HoldoutDecisions(chosen, propensity, explore, member)
