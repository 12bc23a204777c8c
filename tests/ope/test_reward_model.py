"""The closed-form ridge per action against scikit-learn's Ridge, and cross-fitting."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from nba.ope.reward_model import OutOfFoldModel, RidgeRewardModel, cross_fit
from nba.types import FloatArray, IntArray

TOLERANCE = 1e-6


def logged_rows(
    n: int = 4_000, d: int = 7, n_actions: int = 6, seed: int = 0
) -> tuple[FloatArray, IntArray, FloatArray]:
    """Features far from zero (centring matters), a few binary; actions 0-2 common, action
    ``A - 3`` logged once and ``A - 2`` never (overall mean), ``A - 1`` on fewer rows than
    features (scikit-learn solves that one in its dual form)."""
    rng = np.random.default_rng(seed)
    context = rng.normal(loc=30.0, scale=2.0, size=(n, d))
    context[:, : d // 2] = rng.random((n, d // 2)) < 0.2
    action = rng.integers(0, n_actions - 3, size=n)
    action[0] = n_actions - 3
    action[1 : d - 1] = n_actions - 1
    reward = context @ rng.normal(size=d) + rng.normal(size=n) + 0.3 * action
    return context, action, reward


class SklearnRidgePerAction:
    """The reference: one scikit-learn Ridge per action, fitted on that action's rows."""

    def __init__(self, n_actions: int, alpha: float = 1.0) -> None:
        self.n_actions = n_actions
        self.alpha = alpha

    def fit(
        self, context: FloatArray, action: IntArray, reward: FloatArray
    ) -> SklearnRidgePerAction:
        self.coef_ = np.zeros((self.n_actions, context.shape[1]))
        self.intercept_ = np.full(self.n_actions, reward.mean())
        for a in range(self.n_actions):
            rows = action == a
            if rows.sum() >= 2:
                model = Ridge(alpha=self.alpha).fit(context[rows], reward[rows])
                self.coef_[a], self.intercept_[a] = model.coef_, model.intercept_
        return self

    def predict(self, context: FloatArray) -> FloatArray:
        return context @ self.coef_.T + self.intercept_


@pytest.mark.parametrize("alpha", [1e-3, 1.0, 50.0])
def test_ridge_matches_sklearn(alpha: float) -> None:
    context, action, reward = logged_rows()
    ours = RidgeRewardModel(6, alpha=alpha).fit(context, action, reward)
    reference = SklearnRidgePerAction(6, alpha=alpha).fit(context, action, reward)
    np.testing.assert_allclose(ours.coef_, reference.coef_, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(ours.intercept_, reference.intercept_, atol=TOLERANCE, rtol=0)
    np.testing.assert_allclose(
        ours.predict(context), reference.predict(context), atol=TOLERANCE, rtol=0
    )


def test_rare_actions_fall_back_to_the_overall_mean() -> None:
    context, action, reward = logged_rows()
    model = RidgeRewardModel(6).fit(context, action, reward)
    for rare in (3, 4):  # logged once, never logged
        assert np.all(model.coef_[rare] == 0.0)
        assert model.intercept_[rare] == pytest.approx(reward.mean(), abs=1e-12)
    assert np.all(np.isfinite(model.predict(context)))


def test_no_features_gives_each_actions_mean() -> None:
    rng = np.random.default_rng(1)
    action = rng.integers(0, 3, size=500)
    reward = rng.normal(size=500) + action
    model = RidgeRewardModel(3).fit(np.empty((500, 0)), action, reward)
    means = [reward[action == a].mean() for a in range(3)]
    np.testing.assert_allclose(model.intercept_, means, atol=1e-12)
    assert model.predict(np.empty((2, 0))).shape == (2, 3)


@pytest.mark.parametrize(("folds", "clustered"), [(2, False), (3, False), (2, True)])
def test_cross_fit_matches_sklearn_refitted_per_fold(folds: int, clustered: bool) -> None:
    context, action, reward = logged_rows(n=6_000, seed=2)
    groups = np.arange(context.shape[0]) // 4 if clustered else None
    assert isinstance(RidgeRewardModel(6), OutOfFoldModel)
    ours = cross_fit(
        lambda: RidgeRewardModel(6), context, action, reward, folds=folds, seed=3, groups=groups
    )
    reference = cross_fit(  # no predict_out_of_fold: one fit per fold
        lambda: SklearnRidgePerAction(6),
        context,
        action,
        reward,
        folds=folds,
        seed=3,
        groups=groups,
    )
    np.testing.assert_allclose(ours, reference, atol=TOLERANCE, rtol=0)


def test_cross_fit_blocks_of_rows_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Summing moments and predicting block by block gives the one-block answer."""
    import nba.ope.reward_model as reward_model

    context, action, reward = logged_rows(n=3_000, seed=4)
    whole = cross_fit(lambda: RidgeRewardModel(6), context, action, reward, seed=0)
    monkeypatch.setattr(reward_model, "CHUNK_ROWS", 257)
    blocks = cross_fit(lambda: RidgeRewardModel(6), context, action, reward, seed=0)
    np.testing.assert_allclose(blocks, whole, atol=1e-9, rtol=0)


def test_cross_fit_is_seeded() -> None:
    context, action, reward = logged_rows(seed=5)
    first = cross_fit(lambda: RidgeRewardModel(6), context, action, reward, seed=7)
    again = cross_fit(lambda: RidgeRewardModel(6), context, action, reward, seed=7)
    np.testing.assert_array_equal(first, again)
