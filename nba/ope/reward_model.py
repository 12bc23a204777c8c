"""Reward models for the direct method and doubly robust estimators, and cross-fitting.

A reward model learns E[reward | context, action] from logged rows and predicts it for every
action at once, (n, A). :class:`RidgeRewardModel` (one scikit-learn ridge per action) is fast
enough for millions of rows; :class:`BoostedRewardModel` (one gradient-boosted regressor on
context + action) captures interactions when the data can afford it. :func:`cross_fit` predicts
each row from a model fitted without it, so doubly robust intervals are not flattered by a
model that has seen the rewards it corrects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from nba.errors import NBAValidationError
from nba.types import FloatArray, IntArray, SeedLike


class RewardModel(Protocol):
    """Anything with sklearn manners that predicts rewards for every action."""

    def fit(self, context: FloatArray, action: IntArray, reward: FloatArray) -> RewardModel: ...

    def predict(self, context: FloatArray) -> FloatArray: ...


class RidgeRewardModel:
    """One ridge regression per action; actions never logged fall back to the overall mean.

    :param n_actions: size of the action catalogue.
    :param alpha: ridge penalty (shrinks rarely logged actions towards their mean).
    """

    def __init__(self, n_actions: int, alpha: float = 1.0) -> None:
        self.n_actions = n_actions
        self.alpha = alpha

    def fit(self, context: FloatArray, action: IntArray, reward: FloatArray) -> RidgeRewardModel:
        d = context.shape[1]
        self.coef_ = np.zeros((self.n_actions, d))
        self.intercept_ = np.full(self.n_actions, float(reward.mean()))
        for a in range(self.n_actions):
            rows = action == a
            if rows.sum() < 2:
                continue
            if d == 0:
                self.intercept_[a] = float(reward[rows].mean())
                continue
            model = Ridge(alpha=self.alpha).fit(context[rows], reward[rows])
            self.coef_[a], self.intercept_[a] = model.coef_, model.intercept_
        return self

    def predict(self, context: FloatArray) -> FloatArray:
        return context @ self.coef_.T + self.intercept_[None, :]


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

    ``groups`` keeps all rows of one cluster (customer) in the same fold.
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
