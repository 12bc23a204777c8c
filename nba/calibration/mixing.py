"""How customers differ in purchase rate and lifetime: BG/NBD's mixing distributions, cut into
levels the twin can carry.

Each customer buys at their own rate ``lambda`` (per day) while alive and, after each repeat
purchase, drops out with their own probability ``p``; across customers ``lambda`` is gamma and
``p`` beta distributed (Fader, Hardie & Lee 2005). The shapes ``r``, ``a``, ``b`` are shared
and each persona has its own gamma scale ``alpha``, so a persona scales the rates of the same
spread (a covariate on the scale, as in BG/NBD with covariates). Maximum likelihood of every
customer's day-level purchase history (:class:`PurchaseDays`), with bootstrap replicates
refitted from the point estimate.

The twin keeps a finite state, so the fitted distributions become levels
(:func:`rate_levels`, :func:`dropout_levels`): bins at their conditional means (the
share-weighted mean stays the distribution's mean), equal shares but for the heaviest buyers.
How many: :func:`choose_counts` takes the fewest levels whose forecast of the calibration
customers stays within :data:`BUCKET_TOLERANCE` of the continuous mixture's in every
purchase-frequency bucket (and within :data:`TOTAL_TOLERANCE` in total), so the levels lose
little of what the fit knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from nba.calibration.bgnbd import BGNBD, customer_log_likelihood
from nba.calibration.events import EventLog, EventLogError
from nba.types import FloatArray, IntArray

DAY = pd.Timedelta(days=1)
#: |levels' mean forecast / continuous mixture's - 1| allowed in each frequency bucket.
BUCKET_TOLERANCE = 0.04
#: |levels' total forecast / continuous mixture's - 1| allowed.
TOTAL_TOLERANCE = 0.02
TOP_BUCKET = 7  # repeat purchase days: 0, 1, ..., 7 or more
MAX_RATE_LEVELS = 12
MAX_DROPOUT_LEVELS = 6
#: Bootstrap replicates refitted for the intervals (each is one small optimisation).
INTERVAL_REPLICATES = 40


@dataclass(frozen=True)
class PurchaseDays:
    """Each customer's purchase days before the cutoff, as BG/NBD reads them (in days).

    ``repeats`` is purchase days after the first, ``recency`` the days from the first to the
    last, ``age`` the days from the first to the cutoff; ``persona`` indexes the persona.
    Purchases are counted by day because the twin buys at most once a day (baskets per
    purchase day are a separate factor).
    """

    customer_ids: pd.Index
    persona: IntArray
    repeats: FloatArray
    recency: FloatArray
    age: FloatArray

    @classmethod
    def from_log(
        cls, log: EventLog, cutoff: pd.Timestamp, customer_ids: pd.Index, persona: IntArray
    ) -> PurchaseDays:
        """Day-level histories of ``customer_ids`` (days end at ``cutoff``); someone without a
        purchase before it is left out (BG/NBD describes customers from their first)."""
        events = log.events
        bought = events[(events["event"] == "purchased") & (events["timestamp"] < cutoff)]
        day = np.floor((bought["timestamp"] - cutoff) / DAY).to_numpy().astype(np.int64)
        frame = pd.DataFrame({"customer_id": bought["customer_id"].astype(str), "day": day})
        per = frame.drop_duplicates().groupby("customer_id")["day"].agg(["min", "max", "size"])
        ids = pd.Index(customer_ids).astype(str)
        rows = ids.get_indexer(per.index)
        keep = rows >= 0
        per, rows = per[keep], rows[keep]
        if per.empty:
            raise EventLogError("events: no customer has a purchase before the cutoff")
        return cls(
            customer_ids=per.index,
            persona=np.asarray(persona)[rows].astype(np.int64),
            repeats=(per["size"] - 1).to_numpy(dtype=float),
            recency=(per["max"] - per["min"]).to_numpy(dtype=float),
            age=(-per["min"]).to_numpy(dtype=float),
        )


@dataclass(frozen=True)
class Mixing:
    """Fitted mixing distributions: rate ``Gamma(r, alpha[persona])`` per day, dropout after a
    repeat purchase ``Beta(a, b)``."""

    r: float
    alpha: FloatArray  # (P,)
    a: float
    b: float

    @property
    def mean_rate(self) -> FloatArray:
        """(P,) each persona's mean purchase rate per day."""
        rate: FloatArray = self.r / self.alpha
        return rate

    @property
    def mean_dropout(self) -> float:
        """Mean probability of dropping out after a repeat purchase."""
        return self.a / (self.a + self.b)

    def expected(self, days: PurchaseDays, horizon: float) -> FloatArray:
        """(N,) each customer's expected purchase days in the next ``horizon`` days under the
        continuous mixture (BG/NBD's conditional expectation)."""
        out = np.empty(len(days.repeats))
        for p, alpha in enumerate(self.alpha):
            mine = days.persona == p
            if mine.any():
                model = BGNBD.from_params(self.r, float(alpha), self.a, self.b)
                out[mine] = model.expected_purchases(
                    horizon, days.repeats[mine], days.recency[mine], days.age[mine]
                )
        return out


def fit_mixing(days: PurchaseDays, n_personas: int, weights: FloatArray) -> list[Mixing]:
    """The fit at replicate 0 (unit weights) and at up to :data:`INTERVAL_REPLICATES` more.

    ``weights`` is (B + 1, N) bootstrap weights of the customers in ``days`` order.
    """
    if not (days.repeats > 0).any():
        raise EventLogError("events: no customer has a repeat purchase day; no rate spread to fit")
    keys = np.stack([days.persona, days.repeats, days.recency, days.age], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)  # histories repeat a lot
    counts = np.zeros((weights.shape[0], len(unique)))
    for b in range(weights.shape[0]):
        counts[b] = np.bincount(inverse.ravel(), weights=weights[b], minlength=len(unique))
    persona = unique[:, 0].astype(np.int64)
    x, t_x, age = unique[:, 1], unique[:, 2], unique[:, 3]
    scale = max(float(np.mean(days.age)), 1.0)
    start = np.concatenate([np.log([1.0, 1.0, 1.0]), np.full(n_personas, np.log(scale))])
    fits = []
    for b in range(min(weights.shape[0], INTERVAL_REPLICATES + 1)):
        theta = _maximise(counts[b], persona, x, t_x, age, start)
        if b == 0:
            start = theta  # replicates start from the point estimate
        r, a, b_ = np.exp(theta[:3])
        fits.append(Mixing(float(r), np.exp(theta[3:]), float(a), float(b_)))
    return fits


def _maximise(
    counts: FloatArray,
    persona: IntArray,
    x: FloatArray,
    t_x: FloatArray,
    age: FloatArray,
    start: FloatArray,
) -> FloatArray:
    """log(r, a, b, alpha_1..P) maximising the weighted log-likelihood."""
    total = max(float(counts.sum()), 1.0)

    def loss(theta: FloatArray) -> float:
        r, a, b = np.exp(theta[:3])
        alpha = np.exp(theta[3:])[persona]
        value = counts @ customer_log_likelihood(r, alpha, a, b, x, t_x, age)
        return float(-value / total)

    bounds = [(-9.0, 9.0)] * 3 + [(-5.0, 14.0)] * (len(start) - 3)
    best = optimize.minimize(loss, start, method="L-BFGS-B", bounds=bounds)
    theta: FloatArray = best.x
    return theta


#: How the top equal-share rate bin is split (shares of it, lightest first).
TOP_SPLIT = (1 / 2, 1 / 3, 1 / 6)


def rate_levels(fit: Mixing, count: int) -> tuple[FloatArray, FloatArray]:
    """(count,) multipliers on the persona's mean rate and their shares: bins of
    ``Gamma(r, r)`` (the rate over its mean) at their conditional means (mean 1).

    ``count - 2`` equal-share bins, the top one split into halves, thirds and sixths of it
    (:data:`TOP_SPLIT`); fewer than 3 levels are all equal. Equal shares resolve the many
    light buyers, whose forecasts make most of the per-customer error; the split resolves the
    few heaviest, who make many of the purchases (with equal bins alone the top buckets were
    forecast 5 to 10% low).
    """
    _check_count(count)
    if count < len(TOP_SPLIT):
        cuts = np.linspace(0.0, 1.0, count + 1)
    else:
        equal = count - len(TOP_SPLIT) + 1
        top = (equal - 1) / equal + np.cumsum(TOP_SPLIT) / equal
        cuts = np.concatenate([np.linspace(0.0, 1.0, equal + 1)[:-1], top])
        cuts[-1] = 1.0
    edges = stats.gamma.ppf(cuts, fit.r, scale=1.0 / fit.r)
    within = np.diff(stats.gamma.cdf(edges, fit.r + 1.0, scale=1.0 / fit.r))
    shares = np.diff(cuts)
    multipliers: FloatArray = within / shares
    return multipliers, shares


def dropout_levels(fit: Mixing, count: int) -> tuple[FloatArray, FloatArray]:
    """(count,) dropout probabilities after a repeat purchase and their shares: equal-share
    bins of ``Beta(a, b)`` at their conditional means."""
    _check_count(count)
    edges = stats.beta.ppf(np.linspace(0.0, 1.0, count + 1), fit.a, fit.b)
    within = np.diff(stats.beta.cdf(edges, fit.a + 1.0, fit.b))
    probabilities: FloatArray = fit.mean_dropout * within * count
    return probabilities, np.full(count, 1.0 / count)


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise EventLogError(f"count: expected a whole number of levels >= 1, got {count!r}")


def levels_expected(
    fit: Mixing, days: PurchaseDays, horizon: float, rate_count: int, dropout_count: int
) -> FloatArray:
    """(N,) the expected purchase days of :meth:`Mixing.expected` with the levels in place of
    the continuous distributions (the same formula, summed over the levels)."""
    multiplier, rate_share = rate_levels(fit, rate_count)
    dropout, dropout_share = dropout_levels(fit, dropout_count)
    lam = fit.mean_rate[days.persona][:, None, None] * multiplier[None, :, None]  # (N, K, 1)
    p = dropout[None, None, :]
    x, t_x, age = (v[:, None, None] for v in (days.repeats, days.recency, days.age))
    log_rate = np.log(lam)
    alive = x * (np.log1p(-p) + log_rate) - lam * age
    dead = np.where(
        x > 0,
        np.log(p) + np.maximum(x - 1, 0) * np.log1p(-p) + x * log_rate - lam * t_x,
        -np.inf,
    )
    prior = np.log(rate_share)[None, :, None] + np.log(dropout_share)[None, None, :]
    joint = prior + np.logaddexp(alive, dead)
    top = joint.max(axis=(1, 2), keepdims=True)
    evidence = np.exp(joint - top).sum(axis=(1, 2))
    alive_weight = np.exp(prior + alive - top)
    ahead = -np.expm1(-lam * p * horizon) / p
    expected: FloatArray = (alive_weight * ahead).sum(axis=(1, 2)) / evidence
    return expected


def choose_counts(fit: Mixing, days: PurchaseDays, horizon: float) -> tuple[int, int]:
    """The fewest levels (rate x dropout) whose forecast over ``horizon`` days stays close to
    the continuous mixture's: every calibration-frequency bucket's mean (0 .. 7+ repeat days)
    within :data:`BUCKET_TOLERANCE`, the total within :data:`TOTAL_TOLERANCE`; ties go to
    more rate levels. Buckets, because an average over customers hides a heavy tail that the
    levels forecast low."""
    exact = fit.expected(days, horizon)
    bucket = np.minimum(days.repeats, TOP_BUCKET).astype(np.int64)
    sizes = np.maximum(np.bincount(bucket, minlength=TOP_BUCKET + 1), 1)
    exact_means = np.bincount(bucket, weights=exact, minlength=TOP_BUCKET + 1) / sizes
    total = max(float(exact.sum()), 1e-12)
    pairs = sorted(
        ((k, d) for k in range(1, MAX_RATE_LEVELS + 1) for d in range(1, MAX_DROPOUT_LEVELS + 1)),
        key=lambda kd: (kd[0] * kd[1], -kd[0]),
    )
    for k, d in pairs:
        approx = levels_expected(fit, days, horizon, k, d)
        means = np.bincount(bucket, weights=approx, minlength=TOP_BUCKET + 1) / sizes
        off = np.abs(means - exact_means) / np.maximum(exact_means, 1e-12)
        if off.max() <= BUCKET_TOLERANCE and abs(approx.sum() / total - 1.0) <= TOTAL_TOLERANCE:
            return k, d
    return MAX_RATE_LEVELS, MAX_DROPOUT_LEVELS
