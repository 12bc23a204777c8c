"""Logs with a known logging policy, generated on the twin: ground truth for OPE.

A logging policy (say the journey map with epsilon exploration) serves simulated customers for
some days; every decision keeps its exact propensity and the evaluation policy's probabilities.
Because the twin knows its own response model, the true value of the evaluation policy is known
too: exactly for one-step decisions (the expected immediate reward of each logged context) and
by a large Monte Carlo run for multi-step value. Estimators can then be scored for bias, error
and interval coverage over many independent logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nba import policy_head
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.ope.data import LoggedBandit, LoggedTrajectories
from nba.policies import Policy
from nba.twin import CustomerTwin
from nba.types import BoolArray, FloatArray, IntArray, SeedLike


@dataclass
class EpsilonPolicy:
    """A base policy that, with probability ``epsilon``, picks uniformly among allowed actions.

    Its probabilities are exact, so it can log propensities (or serve as a stochastic target).
    Seed it independently of the twin: a policy drawing the same uniforms as the twin's
    customers would correlate exploration with the customers and bias every estimate.
    """

    base: Policy
    epsilon: float
    seed: SeedLike = None
    name: str = ""
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.epsilon <= 1.0:
            raise NBAValidationError(f"epsilon: {self.epsilon} is outside [0, 1]")
        self.rng = np.random.default_rng(self.seed)
        self.name = self.name or f"{self.base.name}+eps{self.epsilon:g}"

    def probabilities(self, obs: FloatArray, mask: BoolArray) -> FloatArray:
        base, _ = self.base.act(obs, mask)
        return policy_head.epsilon_mix(base, mask, self.epsilon)

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        probabilities = self.probabilities(obs, mask)
        return policy_head.sample(probabilities, self.rng), probabilities


@dataclass(frozen=True)
class SimulatedLogs:
    """One simulated log seen two ways, and the exact expected reward of every action."""

    bandit: LoggedBandit  # every customer-day as one decision (groups = customers)
    trajectories: LoggedTrajectories  # the same decisions as per-customer trajectories
    expected_reward: FloatArray  # (n * T, A) E[reward | context, action] under the twin

    @property
    def one_step_value(self) -> float:
        """The target's expected immediate reward on exactly these logged contexts."""
        return float(np.einsum("ij,ij->", self.bandit.target, self.expected_reward) / self.bandit.n)


def simulate_logs(
    twin: CustomerTwin,
    logging: Policy,
    target: Policy | EpsilonPolicy,
    n_customers: int,
    days: int,
    seed: SeedLike = None,
) -> SimulatedLogs:
    """Serve ``n_customers`` with ``logging`` for ``days`` days from the start of their journey."""
    if not twin.tabulate:
        raise NBAValidationError("twin: simulated logs need a tabulated (finite) scenario")
    features = FeatureBuilder(twin.arrays)
    twin.reset(n_customers, seed=seed)
    horizon = min(days, twin.scenario.horizon_days)
    n_actions = twin.n_actions
    context = np.empty((n_customers, horizon, features.size))
    actions = np.empty((n_customers, horizon), dtype=np.int64)
    rewards = np.empty((n_customers, horizon))
    propensity = np.empty((n_customers, horizon))
    target_probabilities = np.empty((n_customers, horizon, n_actions))
    expected = np.empty((n_customers, horizon, n_actions))
    table = twin.tables.expected_reward.reshape(-1, n_actions)
    rows = np.arange(n_customers)
    for t in range(horizon):  # days are sequential by nature; customers are vectorised
        obs = features.build(twin.state, twin.day)
        mask = twin.action_masks()
        chosen, probabilities = logging.act(obs, mask)
        target_probabilities[:, t] = _probabilities(target, obs, mask)
        expected[:, t] = table[twin.space.response_key(twin.state_index())]
        result = twin.step(chosen)
        context[:, t], actions[:, t], rewards[:, t] = obs, chosen, result.reward
        propensity[:, t] = probabilities[rows, chosen]
    flat = n_customers * horizon
    bandit = LoggedBandit(
        context=context.reshape(flat, -1),
        action=actions.reshape(flat),
        reward=rewards.reshape(flat),
        propensity=propensity.reshape(flat),
        target=target_probabilities.reshape(flat, n_actions),
        groups=np.repeat(rows, horizon),
    )
    trajectories = LoggedTrajectories(
        context=context,
        action=actions,
        reward=rewards,
        propensity=propensity,
        target=target_probabilities,
        discount=twin.scenario.discount_factor,
    )
    return SimulatedLogs(bandit, trajectories, expected.reshape(flat, n_actions))


def trajectory_value(
    twin: CustomerTwin, target: Policy, n_customers: int, days: int, seed: SeedLike = None
) -> tuple[float, float]:
    """Monte Carlo discounted value of ``target`` over the first ``days`` days, and its SE."""
    features = FeatureBuilder(twin.arrays)
    twin.reset(n_customers, seed=seed)
    returns = np.zeros(n_customers)
    weight = 1.0
    for _ in range(min(days, twin.scenario.horizon_days)):
        chosen, _ = target.act(features.build(twin.state, twin.day), twin.action_masks())
        returns += weight * twin.step(chosen).reward
        weight *= twin.scenario.discount_factor
    return float(returns.mean()), float(returns.std(ddof=1) / np.sqrt(n_customers))


def _probabilities(policy: Policy | EpsilonPolicy, obs: FloatArray, mask: BoolArray) -> FloatArray:
    if isinstance(policy, EpsilonPolicy):
        return policy.probabilities(obs, mask)
    return policy.act(obs, mask)[1]
