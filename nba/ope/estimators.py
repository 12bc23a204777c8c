"""One-step off-policy estimators: each says only how a logged decision contributes.

With w = pi_e(a|x) / pi_0(a|x) the importance weight of the logged action, q(x, .) a reward
model's predictions and dm(x) = sum_a pi_e(a|x) q(x, a):

=============  ================================================  ===========================
estimator      per-row term                                      why
=============  ================================================  ===========================
``dm``         dm(x)                                             low variance, biased by q
``ips``        w r                                               unbiased, high variance
``snips``      w r, normalised by sum w                          bounded by the rewards
``dr``         dm(x) + w (r - q(x, a))                           unbiased if either is right
``switch_dr``  dm(x) + 1[w <= tau] w (r - q(x, a))               drops the wildest weights
``dr_os``      dm(x) + w_l (r - q(x, a)), w_l = l w / (w^2 + l)  shrinks instead of dropping
=============  ================================================  ===========================
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from nba.errors import NBAValidationError
from nba.ope.base import Estimator, Terms
from nba.ope.data import LoggedBandit, OPEInputError
from nba.types import FloatArray


class BanditEstimator(Estimator):
    """An estimator of one-step logs (:class:`LoggedBandit`)."""

    needs_model: ClassVar[bool] = False

    def terms(self, data: LoggedBandit, predictions: FloatArray | None = None) -> Terms:
        if self.needs_model:
            predictions = _check_predictions(data, predictions, self.name)
        return self._terms(data, predictions)

    @abstractmethod
    def _terms(self, data: LoggedBandit, predictions: FloatArray | None) -> Terms:
        """Per-row terms; ``predictions`` are checked when :attr:`needs_model`."""


@dataclass
class DirectMethod(BanditEstimator):
    """The reward model's value of the evaluation policy."""

    name: ClassVar[str] = "dm"
    needs_model: ClassVar[bool] = True

    def _terms(self, data: LoggedBandit, predictions: FloatArray | None) -> Terms:
        assert predictions is not None
        return Terms(np.einsum("ij,ij->i", data.target, predictions))


@dataclass
class IPS(BanditEstimator):
    """Inverse propensity scoring: unbiased whenever the logging policy covers the target."""

    name: ClassVar[str] = "ips"

    def _terms(self, data: LoggedBandit, predictions: FloatArray | None) -> Terms:
        return Terms(data.weights * data.reward)


@dataclass
class SNIPS(BanditEstimator):
    """Self-normalised IPS: invariant to a constant shift of the rewards, bounded by them."""

    name: ClassVar[str] = "snips"

    def _terms(self, data: LoggedBandit, predictions: FloatArray | None) -> Terms:
        weights = data.weights
        return Terms(weights * data.reward, weights)


@dataclass
class DoublyRobust(BanditEstimator):
    """Direct method plus an importance-weighted correction of the model's residual."""

    name: ClassVar[str] = "dr"
    needs_model: ClassVar[bool] = True

    def _terms(self, data: LoggedBandit, predictions: FloatArray | None) -> Terms:
        assert predictions is not None
        return Terms(_dr_terms(data, predictions, self._weights(data.weights)))

    def _weights(self, weights: FloatArray) -> FloatArray:
        return weights


@dataclass
class SwitchDR(DoublyRobust):
    """Doubly robust where the weight is at most ``tau``; the direct method elsewhere.

    :param tau: largest importance weight still corrected (Wang, Agarwal and Dudik, 2017).
    """

    tau: float = 50.0
    name: ClassVar[str] = "switch_dr"

    def __post_init__(self) -> None:
        if not self.tau > 0:
            raise NBAValidationError(f"tau: {self.tau} must be > 0")

    def _weights(self, weights: FloatArray) -> FloatArray:
        return np.where(weights <= self.tau, weights, 0.0)


@dataclass
class DRShrinkage(DoublyRobust):
    """Doubly robust with weights shrunk to ``lam w / (w^2 + lam)`` (Su et al., 2020).

    :param lam: shrinkage strength; large ``lam`` recovers plain doubly robust.
    """

    lam: float = 100.0
    name: ClassVar[str] = "dr_os"

    def __post_init__(self) -> None:
        if not self.lam > 0:
            raise NBAValidationError(f"lam: {self.lam} must be > 0")

    def _weights(self, weights: FloatArray) -> FloatArray:
        return self.lam * weights / (weights**2 + self.lam)


def _dr_terms(data: LoggedBandit, predictions: FloatArray, weights: FloatArray) -> FloatArray:
    rows = np.arange(data.n)
    baseline = np.einsum("ij,ij->i", data.target, predictions)
    return baseline + weights * (data.reward - predictions[rows, data.action])


def _check_predictions(data: LoggedBandit, predictions: FloatArray | None, name: str) -> FloatArray:
    if predictions is None:
        raise OPEInputError(f"{name}: needs reward-model predictions (n, n_actions)")
    array = np.asarray(predictions, dtype=np.float64)
    if array.shape != data.target.shape:
        raise OPEInputError(
            f"predictions: expected shape {data.target.shape} for {name}, got {array.shape}"
        )
    if not np.isfinite(array).all():
        raise OPEInputError(f"predictions: NaN or infinity ({name})")
    return array
