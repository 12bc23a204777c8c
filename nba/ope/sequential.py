"""Multi-step estimators on customer trajectories, and fitted Q evaluation.

With rho_t the product of per-step importance ratios up to step t and gamma the discount:

- ``pdis``: per-decision importance sampling, sum_t gamma^t rho_t r_t (Precup et al., 2000);
  a reward is weighted only by the decisions made before it.
- ``wpdis``: its weighted form, each step normalised by the mean rho_t: biased, far lower
  variance.
- ``dr_fqe``: doubly robust (Jiang and Li, 2016; Thomas and Brunskill, 2016) with a Q function
  from fitted Q evaluation: sum_t gamma^t [rho_t (r_t - Q_t(x_t, a_t)) + rho_{t-1} V_t(x_t)].

Importance weights multiply across steps, so their variance grows exponentially with the
horizon: keep horizons short or the target close to the logging policy, and read the
effective sample size.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from nba.ope.base import Estimator, Terms
from nba.ope.data import LoggedTrajectories, OPEInputError
from nba.ope.reward_model import RewardModel, RidgeRewardModel
from nba.types import FloatArray, SeedLike


class TrajectoryEstimator(Estimator):
    """An estimator of multi-step logs (:class:`LoggedTrajectories`)."""

    @abstractmethod
    def terms(self, data: LoggedTrajectories, predictions: FloatArray | None = None) -> Terms:
        """Per-trajectory terms; ``predictions`` are Q values (n, T, A) where needed."""


def cumulative_ratios(data: LoggedTrajectories) -> FloatArray:
    """(n, T) rho_t: product of the importance ratios of steps 0..t."""
    return np.cumprod(data.ratios, axis=1)


def effective_sample_size(weights: FloatArray) -> float:
    """(sum w)^2 / sum w^2: how many on-policy samples the weighted log is worth."""
    total = float(weights.sum())
    squares = float((weights**2).sum())
    return total * total / squares if squares > 0 else 0.0


@dataclass
class PDIS(TrajectoryEstimator):
    """Per-decision importance sampling: unbiased, variance grows with the horizon."""

    name: ClassVar[str] = "pdis"

    def terms(self, data: LoggedTrajectories, predictions: FloatArray | None = None) -> Terms:
        weighted = cumulative_ratios(data) * data.reward * data.discounts[None, :]
        return Terms(weighted.sum(axis=1))


@dataclass
class WPDIS(TrajectoryEstimator):
    """Weighted per-decision IS: each step's rewards normalised by that step's mean weight."""

    name: ClassVar[str] = "wpdis"

    def terms(self, data: LoggedTrajectories, predictions: FloatArray | None = None) -> Terms:
        rho = cumulative_ratios(data)
        return Terms(rho * data.reward * data.discounts[None, :], rho)


@dataclass
class SequentialDR(TrajectoryEstimator):
    """Doubly robust over steps with Q values from a model (e.g. :class:`FittedQEvaluation`)."""

    name: ClassVar[str] = "dr_fqe"

    def terms(self, data: LoggedTrajectories, predictions: FloatArray | None = None) -> Terms:
        if predictions is None:
            raise OPEInputError("dr_fqe: needs Q values (n, T, n_actions) from fitted Q evaluation")
        q = np.asarray(predictions, dtype=np.float64)
        if q.shape != data.target.shape:
            raise OPEInputError(
                f"predictions: expected Q values {data.target.shape}, got {q.shape}"
            )
        q = np.where(data.alive[:, :, None], q, 0.0)
        rho = cumulative_ratios(data)
        previous = np.hstack([np.ones((data.n, 1)), rho[:, :-1]])
        chosen = np.take_along_axis(q, data.action[:, :, None], axis=2)[:, :, 0]
        value = np.einsum("nta,nta->nt", data.target, q)
        step = rho * (data.reward - chosen) + previous * value
        return Terms((step * data.discounts[None, :]).sum(axis=1))


@dataclass
class FittedQEvaluation:
    """Finite-horizon fitted Q evaluation, one regression per step, backwards in time.

    Q_{T-1}(x, a) fits r; Q_t(x, a) fits r_t + gamma V_{t+1}(x_{t+1}) with
    V_t(x) = sum_a pi_e(a|x) Q_t(x, a). Regressions come from ``make_model`` (ridge per action
    by default); with ``folds`` > 1 each trajectory's Q values come from models fitted on the
    other trajectories.
    """

    make_model: Callable[[int], RewardModel] = field(default=RidgeRewardModel)
    folds: int = 2
    seed: SeedLike = None

    def predict(self, data: LoggedTrajectories) -> FloatArray:
        """(n, T, A) Q values of the evaluation policy at every logged step."""
        if self.folds < 2:
            return self._fit_predict(data, np.ones(data.n, dtype=bool), np.ones(data.n, dtype=bool))
        if data.n < self.folds:
            raise OPEInputError(f"folds: {self.folds} folds need {self.folds} trajectories")
        fold = np.random.default_rng(self.seed).permutation(data.n) % self.folds
        q = np.empty(data.target.shape)
        for k in range(self.folds):
            held = fold == k
            q[held] = self._fit_predict(data, ~held, held)
        return q

    def _fit_predict(
        self, data: LoggedTrajectories, train: np.ndarray, out: np.ndarray
    ) -> FloatArray:
        n_actions = data.n_actions
        q = np.zeros((int(out.sum()), data.horizon, n_actions))
        next_value_train = np.zeros(int(train.sum()))
        x_train, x_out = data.context[train], data.context[out]
        for t in range(data.horizon - 1, -1, -1):
            alive = data.alive[train, t]
            target = data.reward[train, t] + data.discount * next_value_train
            if alive.sum() >= 2:
                model = self.make_model(n_actions).fit(
                    x_train[alive, t], data.action[train, t][alive], target[alive]
                )
                q[:, t] = model.predict(x_out[:, t])
                fitted = model.predict(x_train[:, t])
            else:
                fitted = np.zeros((x_train.shape[0], n_actions))
            value = np.einsum("ij,ij->i", data.target[train, t], fitted)
            next_value_train = np.where(alive, value, 0.0)
        return q
