"""Belief baselines: policies that act on what a company observes, from the exact optimum.

Both read belief observations (``observation = "belief"``, so the evaluation rollout and the
envs feed them a :class:`~nba.observation.BeliefObserver`'s beliefs) and lean on the
full-information optimum, each in the classic way of acting under uncertainty:

- :class:`QMDPPolicy` (``qmdp``): the action with the highest belief-averaged optimal action
  value (:meth:`nba.belief_values.BeliefValues.q`), as if all uncertainty vanished tomorrow.
- :class:`MostLikelyStatePolicy` (``most_likely_state``): the optimal action of the single most
  likely (type, stage) of the joint belief.

The full-information optimum (:class:`~nba.policies.OptimalPolicy`) bounds both from above.
Building a kernel and its solution takes seconds: a caller building both policies builds one
:class:`~nba.belief_values.BeliefValues` and passes it (or its ``solution``) to each; the
registry (:func:`make_belief_baseline`) shares one per scenario by itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nba import optimal
from nba.belief_values import BeliefValues, latent_offsets, observed_base
from nba.errors import UnknownNameError
from nba.features import FeatureBuilder, Observation
from nba.kernel import build_kernel
from nba.policies import Policy
from nba.policy_head import one_hot
from nba.twin import CustomerTwin
from nba.types import BoolArray, FloatArray, IntArray, SeedLike


class QMDPPolicy:
    """Argmax over the allowed actions of the belief-averaged full-information action value.

    Ties go to the lowest index, so "no action" wins them; a masked action is never chosen.
    """

    name = "qmdp"
    observation: Observation = "belief"

    def __init__(self, twin: CustomerTwin, values: BeliefValues | None = None) -> None:
        self.twin = twin
        self.values = values if values is not None else BeliefValues(twin)
        self.features = FeatureBuilder(twin.arrays, observation="belief")

    def q(self, obs: FloatArray) -> FloatArray:
        """(N, A) QMDP action values of belief observations."""
        state, day = self.features.decode(obs)
        return self.values.q(self.features.decode_belief(obs), state, day)

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        q = np.where(mask, self.q(obs), -np.inf)
        actions: IntArray = np.argmax(q, axis=1).astype(np.int64)
        return actions, one_hot(actions, mask.shape[1])


class MostLikelyStatePolicy:
    """The full-information optimal action in the most likely (type, stage) of the belief.

    Ties between cells go to the first in the tracker's order; where the mask forbids the
    optimal action, the first allowed one ("no action", which the rules always allow).
    """

    name = "most_likely_state"
    observation: Observation = "belief"

    def __init__(self, twin: CustomerTwin, solution: optimal.PolicySolution | None = None) -> None:
        self.twin = twin
        if solution is None:
            solution = optimal.solve(build_kernel(twin.scenario))
        self.solution = solution
        self.features = FeatureBuilder(twin.arrays, observation="belief")
        self._cell_offset = latent_offsets(twin)

    def index(self, obs: FloatArray) -> tuple[IntArray, IntArray]:
        """(N,) state index of each customer's most likely (type, stage), and (N,) days."""
        state, day = self.features.decode(obs)
        cell = np.argmax(self.features.decode_belief(obs).reshape(len(state), -1), axis=1)
        index: IntArray = observed_base(self.twin, state) + self._cell_offset[cell]
        return index, day

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        index, day = self.index(obs)
        actions = self.solution.act(day, index)
        fallback = np.argmax(mask, axis=1)  # the first allowed action: "no action" if allowed
        actions = np.where(mask[np.arange(mask.shape[0]), actions], actions, fallback)
        return actions, one_hot(actions, mask.shape[1])


_SHARED: dict[tuple[str, tuple[str, ...]], BeliefValues] = {}


def shared_values(twin: CustomerTwin) -> BeliefValues:
    """The scenario's :class:`BeliefValues`, kept for the last scenario asked for, so the
    registry's two baselines of one twin build its kernel and solve it once."""
    key = (twin.fingerprint, tuple(c.name for c in twin.components))
    if key not in _SHARED:
        _SHARED.clear()  # one scenario's tables at a time (retail_levels' kernel is large)
        _SHARED[key] = BeliefValues(twin)
    return _SHARED[key]


BELIEF_BASELINES: dict[str, Callable[[CustomerTwin, SeedLike], Policy]] = {
    "qmdp": lambda twin, seed: QMDPPolicy(twin, shared_values(twin)),
    "most_likely_state": lambda twin, seed: MostLikelyStatePolicy(
        twin, shared_values(twin).solution
    ),
}


def make_belief_baseline(name: str, twin: CustomerTwin, seed: SeedLike = None) -> Policy:
    """A belief baseline by name: ``qmdp``, ``most_likely_state``."""
    if name not in BELIEF_BASELINES:
        raise UnknownNameError(
            f"policy: unknown belief baseline {name!r}; expected one of {list(BELIEF_BASELINES)}"
        )
    return BELIEF_BASELINES[name](twin, seed)
