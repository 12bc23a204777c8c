"""What a belief says about one customer: the posterior's marginals, summaries and draws.

:class:`StateBelief` is the read side of :class:`nba.belief.BeliefTracker`'s (N, T, K) beliefs
(``BeliefTracker.state_belief``): persona, stage, churn and the customer's own levels, the most
likely state, and systematic draws for forecasts. It moves nothing; the tracker does.
"""

from __future__ import annotations

__all__ = ["StateBelief"]

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.belief_model import BeliefError
from nba.types import FloatArray, IntArray


@dataclass(frozen=True)
class StateBelief:
    """Posterior over (persona, stage) per customer at the cutoff, and over their own levels.

    ``probs`` is (N, P, K) and sums to one per customer; ``log_likelihood`` (N,) is the log
    probability the twin gives each customer's history (higher: the twin explains them better).
    ``levels`` is the joint (N, P, Lr, Ld, K) over persona, rate level, dropout level and stage
    (``None``: one level each, ``probs`` is the whole belief); ``rate_multipliers`` (Lr,) are
    the rate levels' multipliers, for :attr:`rate_multiplier`.
    """

    customer_ids: pd.Index
    probs: FloatArray
    log_likelihood: FloatArray
    start: pd.Timestamp
    days: int
    churn_stage: int
    levels: FloatArray | None = None
    rate_multipliers: FloatArray | None = None

    @property
    def joint(self) -> FloatArray:
        """(N, P, Lr, Ld, K) posterior over persona, rate level, dropout level and stage."""
        if self.levels is None:
            return self.probs[:, :, None, None, :]
        levels: FloatArray = self.levels
        return levels

    @property
    def rate_level(self) -> FloatArray:
        """(N, Lr) posterior over each customer's own purchase-rate level."""
        rate: FloatArray = self.joint.sum(axis=(1, 3, 4))
        return rate

    @property
    def dropout_level(self) -> FloatArray:
        """(N, Ld) posterior over each customer's own dropout level."""
        dropout: FloatArray = self.joint.sum(axis=(1, 2, 4))
        return dropout

    @property
    def rate_multiplier(self) -> FloatArray:
        """(N,) posterior mean of each customer's own rate multiplier (1.0 without levels)."""
        if self.rate_multipliers is None:
            return np.ones(self.probs.shape[0])
        mean: FloatArray = self.rate_level @ self.rate_multipliers
        return mean

    @property
    def churned(self) -> FloatArray:
        """(N,) posterior probability of having churned unseen."""
        churned: FloatArray = self.probs[:, :, self.churn_stage].sum(axis=1)
        return churned

    @property
    def persona(self) -> FloatArray:
        """(N, P) posterior over personas."""
        persona: FloatArray = self.probs.sum(axis=2)
        return persona

    @property
    def stage(self) -> FloatArray:
        """(N, K) posterior over stages."""
        stage: FloatArray = self.probs.sum(axis=1)
        return stage

    def most_likely(self) -> tuple[IntArray, IntArray]:
        """(N,) persona and stage of each customer's most probable joint state."""
        n, _, k = self.probs.shape
        best = self.probs.reshape(n, -1).argmax(axis=1)
        return best // k, best % k

    def sample(self, copies: int, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
        """(copies * N,) persona and stage draws, copy-major (row ``c * N + i`` is customer i);
        :meth:`draw` gives the levels of the same draws."""
        drawn = self.draw(copies, rng)
        return drawn["persona"], drawn["stage"]

    def draw(self, copies: int, rng: np.random.Generator) -> dict[str, IntArray]:
        """(copies * N,) draws of persona, stage, rate_level and dropout_level, copy-major.

        Systematic sampling per customer: the ``copies`` draws of one customer sit at evenly
        spaced points of its CDF with one random offset, so each state gets its share of the
        copies to within one and a forecast averaged over copies carries no placement noise
        beyond that rounding.
        """
        if copies < 1:
            raise BeliefError(f"copies: {copies} must be at least 1")
        joint = self.joint
        n, shape = joint.shape[0], joint.shape[1:]
        cdf = np.cumsum(joint.reshape(n, -1), axis=1)
        cdf[:, -1] = 1.0
        offset: FloatArray = rng.random((int(n),))
        points = (np.arange(copies)[:, None] + offset[None, :]) / copies  # (copies, N)
        flat = np.empty((copies, n), dtype=np.int64)
        for c in range(copies):  # one pass per copy, each vectorised over customers
            flat[c] = (cdf < points[c][:, None]).sum(axis=1)
        persona, rate, dropout, stage = np.unravel_index(flat.ravel(), shape)
        return {"persona": persona, "stage": stage, "rate_level": rate, "dropout_level": dropout}
