"""Off-policy evaluation: a policy's value from decisions another policy made.

- :mod:`nba.ope.data`: validated containers (:class:`LoggedBandit`, :class:`LoggedTrajectories`).
- :mod:`nba.ope.estimators`: one-step estimators (direct method, IPS, SNIPS, doubly robust,
  switch-DR, DR with shrinkage); :mod:`nba.ope.sequential`: per-decision IS, its weighted
  form and doubly robust with fitted Q evaluation. One base class: ``estimate`` and a
  seeded bootstrap ``interval``.
- :mod:`nba.ope.decision_log`: the serving decision log with outcomes joined as rewards.
- :mod:`nba.ope.target`: an exported model as the evaluation policy on logged features.
- :mod:`nba.ope.simulation`: logs with known propensities and known truth on the twin.
- :mod:`nba.ope.promotion`: the champion/challenger gate.
"""

from __future__ import annotations

from nba.ope.base import Estimator, Interval, Terms, bootstrap
from nba.ope.data import LoggedBandit, LoggedTrajectories, OPEInputError
from nba.ope.decision_log import DecisionRecords, read_decision_log, write_outcomes
from nba.ope.estimators import (
    ESTIMATORS,
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    DRShrinkage,
    SwitchDR,
    make_estimator,
)
from nba.ope.report import diagnostics, evaluate_bandit, reward_predictions
from nba.ope.reward_model import BoostedRewardModel, RewardModel, RidgeRewardModel, cross_fit
from nba.ope.sequential import (
    PDIS,
    WPDIS,
    FittedQEvaluation,
    SequentialDR,
    effective_sample_size,
)

__all__ = [
    "ESTIMATORS",
    "IPS",
    "PDIS",
    "SNIPS",
    "WPDIS",
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
    "bootstrap",
    "cross_fit",
    "diagnostics",
    "effective_sample_size",
    "evaluate_bandit",
    "make_estimator",
    "read_decision_log",
    "reward_predictions",
    "write_outcomes",
]
