"""Run several one-step estimators on one log: the table behind ``nba ope``.

The reward model is fitted once, out of fold, and shared by every estimator that needs it;
every estimator's interval uses its own generator derived from one seed, so a table is
reproducible and adding an estimator does not change the others' intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.ope.base import Estimator, Interval
from nba.ope.data import LoggedBandit
from nba.ope.estimators import BanditEstimator
from nba.ope.registry import make_bandit_estimator
from nba.ope.reward_model import RewardModel, RidgeRewardModel, cross_fit
from nba.ope.sequential import effective_sample_size
from nba.types import FloatArray

DEFAULT_ESTIMATORS = ("ips", "snips", "dr", "switch_dr")


def reward_predictions(
    data: LoggedBandit,
    make_model: Callable[[int], RewardModel] = RidgeRewardModel,
    folds: int = 2,
    seed: int = 0,
) -> FloatArray:
    """Out-of-fold (n, A) reward predictions for the direct method and doubly robust family."""
    return cross_fit(
        lambda: make_model(data.n_actions),
        data.context,
        data.action,
        data.reward,
        folds=folds,
        seed=seed,
        groups=data.groups,
    )


def evaluate_bandit(
    data: LoggedBandit,
    estimators: Sequence[str | Estimator] | str | Estimator = DEFAULT_ESTIMATORS,
    *,
    predictions: FloatArray | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Interval]:
    """One interval per estimator, in the order given.

    :param estimators: registered names (:func:`nba.ope.registry.available_estimators`) or
        configured instances (``SwitchDR(tau=20)``, ``make_estimator("dr_os", lam=5)``),
        mixed freely; intervals are labelled by :attr:`Estimator.label`.
    """
    runs = resolve_estimators(estimators)
    if predictions is None and any(run.needs_model for run in runs):
        predictions = reward_predictions(data, seed=seed)
    seeds = np.random.SeedSequence(seed).spawn(len(runs))
    return [
        run.interval(
            data,
            predictions,
            n_boot=n_boot,
            confidence=confidence,
            seed=np.random.default_rng(child),
        )
        for run, child in zip(runs, seeds, strict=True)
    ]


def resolve_estimators(
    estimators: Sequence[str | Estimator] | str | Estimator,
) -> list[BanditEstimator]:
    """Names and instances as one-step estimators, refusing two with one label."""
    given = [estimators] if isinstance(estimators, str | Estimator) else list(estimators)
    if not given:
        raise NBAValidationError("estimators: give at least one estimator")
    runs = [make_bandit_estimator(spec) for spec in given]
    labels = [run.label for run in runs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise NBAValidationError(f"estimators: {twice} given twice; their rows would be one")
    return runs


def diagnostics(data: LoggedBandit) -> dict[str, float]:
    """Overlap between the logging and evaluation policies: read before trusting IPS."""
    weights = data.weights
    return {
        "decisions": float(data.n),
        "effective_sample_size": effective_sample_size(weights),
        "max_weight": float(weights.max()),
        "mean_weight": float(weights.mean()),  # about 1 when the logging policy covers the target
        "match_rate": float((weights > 0).mean()),
        "logged_mean_reward": float(data.reward.mean()),
    }


def table(intervals: Sequence[Interval]) -> pd.DataFrame:
    return pd.DataFrame([interval.as_dict() for interval in intervals])
