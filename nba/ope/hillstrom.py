"""OPE on real randomised data: the Hillstrom e-mail campaign (64,000 customers).

Customers were split at random into three arms (no e-mail, men's, women's), so the logging
propensity is exactly 1/3. Split the customers in two halves: on one, estimate targeting
policies off-policy (IPS, doubly robust); on the other, estimate them directly, as the mean
outcome of the customers whose random arm happens to be the one the policy picks, weighted by
how often it picks each arm. The halves share no customer, so agreement is real evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration.adapters.hillstrom import OUTCOMES, PROPENSITY, read_hillstrom
from nba.errors import NBAValidationError
from nba.ope.data import LoggedBandit
from nba.ope.report import evaluate_bandit, reward_predictions
from nba.ope.reward_model import RidgeRewardModel
from nba.policies import one_hot
from nba.types import FloatArray, IntArray

ARMS = ("No E-Mail", "Mens E-Mail", "Womens E-Mail")  # arm index order of the bandit
REWARDS = OUTCOMES


@dataclass(frozen=True)
class Hillstrom:
    """Features, randomised arm and outcomes of the campaign."""

    frame: pd.DataFrame
    context: FloatArray  # (n, d) numeric features
    arm: IntArray  # index into ARMS

    def take(self, rows: IntArray) -> Hillstrom:
        return Hillstrom(
            self.frame.iloc[rows].reset_index(drop=True), self.context[rows], self.arm[rows]
        )

    def reward(self, name: str) -> FloatArray:
        if name not in REWARDS:
            raise NBAValidationError(f"reward: unknown {name!r}; expected one of {list(REWARDS)}")
        return self.frame[name].to_numpy(np.float64)


def load_hillstrom(path: str | Path) -> Hillstrom:
    """Read ``hillstrom.csv`` and encode its features (recency, log history, flags, one-hots)."""
    frame = read_hillstrom(path)
    numeric = pd.DataFrame(
        {
            "recency": frame["recency"] / 12.0,
            "log_history": np.log1p(frame["history"]),
            "mens": frame["mens"],
            "womens": frame["womens"],
            "newbie": frame["newbie"],
        }
    )
    dummies = pd.get_dummies(frame[["zip_code", "channel"]], dtype=float)
    context = pd.concat([numeric, dummies], axis=1).to_numpy(np.float64)
    arm = pd.Categorical(frame["segment"], categories=list(ARMS)).codes.astype(np.int64)
    return Hillstrom(frame, context, arm)


TargetingPolicy = Callable[[Hillstrom], IntArray]


def targeting_policies(train: Hillstrom, reward: str = "visit") -> dict[str, TargetingPolicy]:
    """Fixed rules and one fitted on ``train``: the arm with the highest predicted reward."""
    model = RidgeRewardModel(len(ARMS)).fit(train.context, train.arm, train.reward(reward))
    return {
        "nobody": lambda d: np.zeros(len(d.arm), dtype=np.int64),
        "everyone mens": lambda d: np.ones(len(d.arm), dtype=np.int64),
        "womens by past purchase": lambda d: np.where(d.frame["womens"] == 1, 2, 1).astype(
            np.int64
        ),
        "fitted uplift rule": lambda d: np.argmax(model.predict(d.context), axis=1).astype(
            np.int64
        ),
    }


def direct_estimate(data: Hillstrom, chosen: IntArray, reward: FloatArray) -> tuple[float, float]:
    """Arm means on the customers whose random arm matches the policy, weighted by arm share.

    Returns the estimate and its standard error (the arms' sampling errors combined).
    """
    value, variance = 0.0, 0.0
    n = len(chosen)
    for arm in range(len(ARMS)):  # three arms: a loop over arms, not rows
        picked = chosen == arm
        share = picked.mean()
        matching = reward[picked & (data.arm == arm)]
        if share == 0:
            continue
        if matching.size < 2:
            raise NBAValidationError(f"direct estimate: too few customers on arm {ARMS[arm]!r}")
        value += share * matching.mean()
        variance += share**2 * matching.var(ddof=1) / matching.size + matching.mean() ** 2 * (
            share * (1 - share) / n
        )
    return float(value), float(np.sqrt(variance))


def validate(
    data: Hillstrom,
    reward: str = "visit",
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """IPS and DR on one random half against the direct estimate on the other."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.arm))
    half = len(order) // 2
    logged, held_out = data.take(order[:half]), data.take(order[half:])
    outcome = logged.reward(reward)
    policies = targeting_policies(logged, reward)
    base = LoggedBandit(
        context=logged.context,
        action=logged.arm,
        reward=outcome,
        propensity=np.full(half, PROPENSITY),
        target=np.full((half, len(ARMS)), PROPENSITY),
        action_names=ARMS,
    )
    predictions = reward_predictions(base, seed=seed)
    rows = []
    for name, policy in policies.items():
        bandit = base.with_target(one_hot(policy(logged), len(ARMS)), ARMS)
        ips, dr = evaluate_bandit(
            bandit, ("ips", "dr"), predictions=predictions, n_boot=n_boot, seed=seed
        )
        direct, direct_se = direct_estimate(held_out, policy(held_out), held_out.reward(reward))
        for interval in (ips, dr):
            gap = interval.estimate - direct
            rows.append(
                {
                    "reward": reward,
                    "policy": name,
                    "estimator": interval.estimator,
                    "estimate": interval.estimate,
                    "lower": interval.lower,
                    "upper": interval.upper,
                    "confidence": interval.confidence,
                    "std_error": interval.std_error,
                    "direct_other_half": direct,
                    "direct_std_error": direct_se,
                    "z": gap / np.hypot(interval.std_error, direct_se),
                    "direct_in_ci": bool(interval.lower <= direct <= interval.upper),
                }
            )
    return pd.DataFrame(rows)
