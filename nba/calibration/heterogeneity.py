"""How much customers of one persona differ in purchase rate, and rate tiers that carry it.

A persona's customers do not all buy at the persona's rate: counts over a year are
over-dispersed relative to Poisson. The classic model is a gamma-distributed rate multiplier
with mean one and variance ``phi`` (the negative binomial). Its moment estimator, per persona,
with each customer's expected count ``e`` under the persona's fitted rate:

    phi = sum((x - e)^2 - e) / sum(e^2)        (clipped at 0: no more spread than Poisson)

Personas are clusters on recency and frequency, so most have little spread left; the top
persona is open-ended above, and its heaviest customers buy far more than its mean. The twin
keeps its finite state space by representing a persona with significant spread as
``RATE_TIERS`` equal-share tiers whose rate multipliers are the conditional means of the
gamma's equal-probability slices. Which tier a customer is in is latent: the forward filter
(:mod:`nba.calibration.filtering`) infers it from their history.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from nba.calibration.bootstrap import Bootstrap, safe_ratio
from nba.calibration.events import EventLogError
from nba.types import FloatArray, IntArray

RATE_TIERS = 3
MAX_PHI = 4.0  # a gamma shape of 1/4: beyond this the tiers' top rate is not credible


def overdispersion(
    purchases: FloatArray,
    expected: FloatArray,
    persona: IntArray,
    n_personas: int,
    boot: Bootstrap,
) -> FloatArray:
    """(B + 1, P) variance of the customer rate multiplier per persona, by bootstrap replicate.

    :param purchases: (N,) each customer's purchase count over the panel.
    :param expected: (N,) the count the persona's fitted rate predicts over their exposure.
    """
    excess = (purchases - expected) ** 2 - expected
    sums = boot.group_sums(np.stack([excess, expected**2], axis=1), persona, n_personas)
    phi = safe_ratio(sums[:, :, 0], sums[:, :, 1])
    return np.clip(np.nan_to_num(phi, nan=0.0), 0.0, MAX_PHI)


def tier_multipliers(phi: float, tiers: int = RATE_TIERS) -> FloatArray:
    """Rate multipliers of ``tiers`` equal-probability slices of Gamma(mean 1, variance phi).

    The multipliers average to one, so the persona's mean rate is kept; ``phi = 0`` gives ones.
    Uses E[X; X < q] = F_{a+1}(q) for X ~ Gamma(shape a, scale 1/a).
    """
    if tiers < 1:
        raise EventLogError(f"tiers: {tiers} must be at least 1")
    if phi <= 0.0:
        return np.ones(tiers)
    shape = 1.0 / phi
    edges = stats.gamma.ppf(np.linspace(0.0, 1.0, tiers + 1), shape, scale=1.0 / shape)
    below = stats.gamma.cdf(edges, shape + 1.0, scale=1.0 / shape)
    return np.diff(below) * tiers
