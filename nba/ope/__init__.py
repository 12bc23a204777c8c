"""Off-policy evaluation: a policy's value from decisions another policy made.

- :mod:`nba.ope.data`: validated containers (:class:`LoggedBandit`, :class:`LoggedTrajectories`).
- :mod:`nba.ope.estimators`: one-step estimators (direct method, IPS, SNIPS, doubly robust,
  switch-DR, DR with shrinkage); :mod:`nba.ope.sequential`: per-decision IS, its weighted
  form and doubly robust with fitted Q evaluation. One base class: ``estimate`` and a
  seeded bootstrap ``interval`` (``lower``, ``upper``, ``confidence``).
- :mod:`nba.ope.registry`: estimators by name; :func:`register_estimator` adds one,
  :func:`make_estimator` builds one with its parameters by name.
- :mod:`nba.ope.decision_log`: the serving decision log with outcomes joined as rewards.
- :mod:`nba.ope.target`: an exported model as the evaluation policy on logged features.
- :mod:`nba.ope.simulation`: logs with known propensities and known truth on the twin.
- :mod:`nba.ope.promotion`: the champion/challenger gate.
"""

from __future__ import annotations

from nba.ope.base import Estimator, Interval, Terms, bootstrap, bootstrap_many
from nba.ope.data import LoggedBandit, LoggedTrajectories, OPEInputError
from nba.ope.decision_log import DecisionRecords, read_decision_log, write_outcomes
from nba.ope.estimators import (
    IPS,
    SNIPS,
    BanditEstimator,
    DirectMethod,
    DoublyRobust,
    DRShrinkage,
    SwitchDR,
)
from nba.ope.registry import (
    ESTIMATORS,
    TRAJECTORY_ESTIMATORS,
    available_estimators,
    estimator_parameters,
    make_estimator,
    register_estimator,
    unregister_estimator,
)
from nba.ope.report import diagnostics, evaluate_bandit, reward_predictions
from nba.ope.reward_model import BoostedRewardModel, RewardModel, RidgeRewardModel, cross_fit
from nba.ope.sequential import (
    PDIS,
    WPDIS,
    FittedQEvaluation,
    SequentialDR,
    TrajectoryEstimator,
    effective_sample_size,
)

__all__ = [
    "ESTIMATORS",
    "IPS",
    "PDIS",
    "SNIPS",
    "TRAJECTORY_ESTIMATORS",
    "WPDIS",
    "BanditEstimator",
    "BoostedRewardModel",
    "DRShrinkage",
    "DecisionRecords",
    "DirectMethod",
    "DoublyRobust",
    "Estimator",
    "FittedQEvaluation",
    "Interval",
    "LoggedBandit",
    "LoggedTrajectories",
    "OPEInputError",
    "RewardModel",
    "RidgeRewardModel",
    "SequentialDR",
    "SwitchDR",
    "Terms",
    "TrajectoryEstimator",
    "available_estimators",
    "bootstrap",
    "bootstrap_many",
    "cross_fit",
    "diagnostics",
    "effective_sample_size",
    "estimator_parameters",
    "evaluate_bandit",
    "make_estimator",
    "read_decision_log",
    "register_estimator",
    "reward_predictions",
    "unregister_estimator",
    "write_outcomes",
]
