"""Reward models for the direct method and doubly robust estimators, and cross-fitting.

A reward model learns E[reward | context, action] from logged rows and predicts it for every
action at once, (n, A). :class:`RidgeRewardModel` (one ridge regression per action, solved in
closed form from per-action sufficient statistics; the same solution as scikit-learn's ``Ridge``)
fits a million rows in a fraction of a second; :class:`BoostedRewardModel` (one gradient-boosted
regressor on context + action) captures interactions when the data can afford it.
:func:`cross_fit` predicts each row from a model fitted without it, so doubly robust intervals
are not flattered by a model that has seen the rewards it corrects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from nba.errors import NBAValidationError
from nba.types import FloatArray, IntArray, SeedLike


class RewardModel(Protocol):
    """Anything with sklearn manners that predicts rewards for every action."""

    def fit(self, context: FloatArray, action: IntArray, reward: FloatArray) -> RewardModel: ...

    def predict(self, context: FloatArray) -> FloatArray: ...


@runtime_checkable
class OutOfFoldModel(Protocol):
    """A reward model that cross-fits all folds at once, faster than one fit per fold."""

    def predict_out_of_fold(
        self, context: FloatArray, action: IntArray, reward: FloatArray, fold: IntArray, folds: int
    ) -> FloatArray: ...


#: rows per block when summing moments and predicting: a reused buffer of this many rows
CHUNK_ROWS = 65_536
_MOMENTS = ("count", "x_sum", "y_sum", "xx", "xy")


@dataclass
class _Moments:
    """Additive per-group sufficient statistics of a linear regression on shifted rows.

    Rows are shifted by the overall means (``shift``) before summing, so the per-group centring
    in :meth:`RidgeRewardModel._solve` subtracts small numbers and loses no precision.
    """

    count: FloatArray  # (..., G)
    x_sum: FloatArray  # (..., G, d)
    y_sum: FloatArray  # (..., G)
    xx: FloatArray  # (..., G, d, d)
    xy: FloatArray  # (..., G, d)

    def map(self, function: Callable[[FloatArray], FloatArray]) -> _Moments:
        return _Moments(*(function(getattr(self, name)) for name in _MOMENTS))


def _grouped_moments(
    context: FloatArray, reward: FloatArray, group: IntArray, n_groups: int, shift: FloatArray
) -> _Moments:
    """Per-group count, sums and cross-products, block by block of rows.

    Each block's rows are sorted by group (radix sort) into a reused buffer, and each group's
    slice adds one Gram matrix product: no loop over rows, no copy of the whole context.
    """
    n, d = context.shape
    xx, xy = np.zeros((n_groups, d, d)), np.zeros((n_groups, d))
    x_sum, y_sum = np.zeros((n_groups, d)), np.zeros(n_groups)
    key_type = np.uint16 if n_groups <= np.iinfo(np.uint16).max else np.int64
    buffer = np.empty((min(CHUNK_ROWS, n), d))
    for start in range(0, n, CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        keys = group[rows]
        order = np.argsort(keys.astype(key_type), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n_groups))])
        xs = np.take(context[rows], order, axis=0, out=buffer[: order.size], mode="clip")
        xs -= shift[:-1]
        ys = reward[rows][order] - shift[-1]
        for g in np.flatnonzero(np.diff(bounds)):  # the (fold, action) groups in this block
            block, target = xs[bounds[g] : bounds[g + 1]], ys[bounds[g] : bounds[g + 1]]
            xx[g] += block.T @ block
            xy[g] += target @ block
            x_sum[g] += block.sum(axis=0)
            y_sum[g] += target.sum()
    count = np.bincount(group, minlength=n_groups).astype(np.float64)
    return _Moments(count, x_sum, y_sum, xx, xy)


class RidgeRewardModel:
    """One ridge regression per action; actions logged fewer than twice get the overall mean.

    Each action's coefficients solve ``(Xc'Xc + alpha I) w = Xc'yc`` on its centred rows and
    the intercept is unpenalised (``ybar - xbar w``): scikit-learn's ``Ridge(alpha)``, computed
    from per-action sums in one pass over the rows.

    :param n_actions: size of the action catalogue.
    :param alpha: ridge penalty (shrinks rarely logged actions towards their mean).
    """

    def __init__(self, n_actions: int, alpha: float = 1.0) -> None:
        self.n_actions = n_actions
        self.alpha = alpha

    def fit(self, context: FloatArray, action: IntArray, reward: FloatArray) -> RidgeRewardModel:
        context, action, reward = _as_arrays(context, action, reward)
        shift = _shift(context, reward)
        with _one_blas_thread():
            moments = _grouped_moments(context, reward, action, self.n_actions, shift)
        self.coef_, self.intercept_ = self._solve(moments, shift)
        return self

    def predict(self, context: FloatArray) -> FloatArray:
        return context @ self.coef_.T + self.intercept_[None, :]

    def predict_out_of_fold(
        self, context: FloatArray, action: IntArray, reward: FloatArray, fold: IntArray, folds: int
    ) -> FloatArray:
        """(n, A) predictions, row i from the ridges fitted on every fold but ``fold[i]``.

        One pass: moments per (fold, action); a fold's training moments are the total minus
        its own; then one product predicts every (fold, action) for a block of rows, and each
        row keeps its own fold's. The fitted attributes are those of the last fold's model.
        """
        context, action, reward = _as_arrays(context, action, reward)
        n, actions = context.shape[0], self.n_actions
        shift = _shift(context, reward)
        with _one_blas_thread():
            moments = _grouped_moments(
                context, reward, fold * actions + action, folds * actions, shift
            )
            per_fold = moments.map(lambda m: m.reshape(folds, actions, *m.shape[1:]))
            fitted = [
                self._solve(per_fold.map(lambda m, k=k: m.sum(axis=0) - m[k]), shift)
                for k in range(folds)
            ]
            self.coef_, self.intercept_ = fitted[-1]
            weights = np.concatenate([coef for coef, _ in fitted]).T  # (d, folds * A)
            offsets = np.concatenate([intercept for _, intercept in fitted])
            predictions = np.empty((n, actions))
            for start in range(0, n, CHUNK_ROWS):
                rows = slice(start, start + CHUNK_ROWS)
                every = (context[rows] @ weights + offsets).reshape(-1, folds, actions)
                predictions[rows] = every[np.arange(every.shape[0]), fold[rows]]
        return predictions

    def _solve(self, m: _Moments, shift: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Coefficients (A, d) and intercepts (A,) in the original, unshifted coordinates."""
        d = m.xx.shape[1]
        fitted = m.count >= 2
        coef = np.zeros((self.n_actions, d))
        safe = np.maximum(m.count, 1.0)
        x_mean, y_mean = m.x_sum / safe[:, None], m.y_sum / safe
        if d and fitted.any():
            gram = m.xx[fitted] - m.count[fitted, None, None] * (
                x_mean[fitted, :, None] * x_mean[fitted, None, :]
            )
            gram[:, np.arange(d), np.arange(d)] += self.alpha
            rhs = m.xy[fitted] - m.count[fitted, None] * x_mean[fitted] * y_mean[fitted, None]
            coef[fitted] = _solve_symmetric(gram, rhs)
        overall = m.y_sum.sum() / max(m.count.sum(), 1.0)
        intercept = np.where(fitted, y_mean - np.einsum("ad,ad->a", x_mean, coef), overall)
        # back to original coordinates: (x - x_shift) w + b + y_shift
        intercept = intercept + shift[-1] - coef @ shift[:-1]
        return coef, intercept


def _one_blas_thread() -> threadpool_limits:
    """The products are thin (d columns): one BLAS thread is as fast, and immune to a busy CPU."""
    return threadpool_limits(limits=1, user_api="blas")


def _solve_symmetric(gram: FloatArray, rhs: FloatArray) -> FloatArray:
    """Solve a stack of small symmetric systems; least squares for any that are singular."""
    try:
        return np.linalg.solve(gram, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.stack(
            [np.linalg.lstsq(g, r, rcond=None)[0] for g, r in zip(gram, rhs, strict=True)]
        )


def _as_arrays(
    context: FloatArray, action: IntArray, reward: FloatArray
) -> tuple[FloatArray, IntArray, FloatArray]:
    return (
        np.asarray(context, dtype=np.float64),
        np.asarray(action, dtype=np.int64),
        np.asarray(reward, dtype=np.float64),
    )


def _shift(context: FloatArray, reward: FloatArray) -> FloatArray:
    """Overall means of the features and reward, (d + 1,), to centre before summing squares."""
    if context.shape[0] == 0:
        return np.zeros(context.shape[1] + 1)
    return np.append(context.mean(axis=0), reward.mean())


class BoostedRewardModel:
    """One histogram gradient-boosted regressor on [context, one-hot action].

    :param n_actions: size of the action catalogue.
    :param max_iter: boosting rounds.
    :param seed: seed of the regressor's own randomness (early-stopping split).
    """

    def __init__(self, n_actions: int, max_iter: int = 100, seed: int = 0) -> None:
        self.n_actions = n_actions
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, context: FloatArray, action: IntArray, reward: FloatArray) -> BoostedRewardModel:
        self.model_ = HistGradientBoostingRegressor(
            max_iter=self.max_iter, random_state=self.seed, early_stopping=False
        ).fit(self._design(context, action), reward)
        return self

    def predict(self, context: FloatArray) -> FloatArray:
        n = context.shape[0]
        every = np.repeat(np.arange(self.n_actions), n)
        stacked = self._design(np.tile(context, (self.n_actions, 1)), every)
        return self.model_.predict(stacked).reshape(self.n_actions, n).T

    def _design(self, context: FloatArray, action: IntArray) -> FloatArray:
        return np.hstack([context, np.eye(self.n_actions)[action]])


def cross_fit(
    make_model: Callable[[], RewardModel],
    context: FloatArray,
    action: IntArray,
    reward: FloatArray,
    folds: int = 2,
    seed: SeedLike = None,
    groups: IntArray | None = None,
) -> FloatArray:
    """(n, A) out-of-fold predictions: each row predicted by a model fitted on the other folds.

    ``groups`` keeps all rows of one cluster (customer) in the same fold. Models that implement
    :class:`OutOfFoldModel` (the ridge) fit every fold in one pass; others are fitted per fold.
    """
    n = context.shape[0]
    if folds < 2:
        return make_model().fit(context, action, reward).predict(context)
    if n < folds:
        raise NBAValidationError(f"folds: {folds} folds need at least {folds} rows, got {n}")
    rng = np.random.default_rng(seed)
    if groups is None:
        fold = rng.permutation(n) % folds
    else:
        fold = rng.permutation(int(groups.max()) + 1)[groups] % folds
    model = make_model()
    if isinstance(model, OutOfFoldModel):
        return model.predict_out_of_fold(context, action, reward, fold, folds)
    predictions: FloatArray | None = None
    for k in range(folds):
        held = fold == k
        model = make_model().fit(context[~held], action[~held], reward[~held])
        part = model.predict(context[held])
        if predictions is None:
            predictions = np.empty((n, part.shape[1]))
        predictions[held] = part
    assert predictions is not None
    return predictions
