"""What a policy sees of simulated customers: the full state, or a belief kept from events.

Training and evaluation call the same :class:`BeliefObserver`, so a belief-trained policy is
measured on the beliefs it will be served. A company sees sends, purchases, opt-outs, consent
and the observed contact history (pressure, days since contact, discount habit), never the
persona, stage or own levels: the observer's belief over those is the exact posterior
(:class:`~nba.belief.BeliefTracker`) given the consent and habit a customer starts with and each
day's purchase under the day's executed action in its observed context. Opens and opt-outs are
observed too but not conditioned on (the belief is then exact given less than was seen: still
calibrated, a little less sharp).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from nba.belief import BeliefTracker
from nba.features import FeatureBuilder, Observation
from nba.parameters import ScenarioArrays
from nba.state import CustomerState
from nba.types import FloatArray, IntArray


class ObservingPolicy(Protocol):
    """A policy that says which observation it acts on (``"state"`` when it does not say)."""

    observation: Observation


def observation_of(policy: object) -> Observation:
    """The observation a policy acts on: its ``observation`` attribute, else the full state."""
    kind = getattr(policy, "observation", "state")
    return "belief" if kind == "belief" else "state"


class BeliefObserver:
    """Beliefs of N simulated customers, moved one observed day at a time, and their features.

    Call :meth:`reset` with the fresh population, :meth:`build` for each day's observations,
    :meth:`context` before the twin steps and :meth:`update` with the step's result after it;
    :meth:`restart` gives new customers (auto-reset) the prior.
    """

    def __init__(self, arrays: ScenarioArrays, features: FeatureBuilder | None = None) -> None:
        self.arrays = arrays
        self.tracker = BeliefTracker(arrays)
        self.features = features or FeatureBuilder(arrays, observation="belief")
        self.belief: FloatArray = self.tracker.prior(0)

    def prior(self, state: CustomerState) -> FloatArray:
        """Beliefs of new customers given what a company sees at sign-up: consent and habit."""
        consent = self.arrays.persona_consent[state.persona]
        return self.tracker.prior(len(state), consent=consent, habit=state.habit)

    def reset(self, state: CustomerState) -> None:
        self.belief = self.prior(state)

    def restart(self, rows: IntArray, state: CustomerState) -> None:
        """New customers in ``rows`` (``state`` is the whole population after the restart)."""
        if len(rows):
            self.belief[rows] = self.prior(state.take(rows))

    @staticmethod
    def context(state: CustomerState) -> dict[str, np.ndarray]:
        """The observed context of the day about to be stepped (copies: the twin moves it)."""
        return {"pressure": state.pressure.copy(), "habit": state.habit.copy()}

    def update(
        self, context: dict[str, np.ndarray], bought: np.ndarray, executed: IntArray
    ) -> None:
        """Move every belief by the day just stepped: its purchases under executed actions."""
        self.tracker.step(self.belief, bought, executed, context=context)

    def build(
        self, state: CustomerState, day: IntArray, out: FloatArray | None = None
    ) -> FloatArray:
        """(N, F) belief observations: observed parts of ``state``, latent parts believed."""
        return self.features.build(state, day, out=out, belief=self.belief)
