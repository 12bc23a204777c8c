"""Training under the contact rules: SB3 policies that never put weight on forbidden actions.

Served decisions go through the policy head (:mod:`nba.policy_head`), which masks what the
rules forbid and takes the best allowed action. An agent trained without masks instead learns
that a forbidden request is executed as "no action" and uses it as a second way of saying
nothing; served, that request becomes its next-best allowed contact and the value drops (a
short PPO run lost 11%). So the learners here mask during training too.

The twin's masks are a function of what the observation shows: consent follows persona and
opt-out, and the rules read pressure, the cap clocks and the weekday (and the stage, where the
scenario has exclusions). :class:`RuleMask` tabulates
:func:`nba.contact_rules.rule_masks` (the one rule module) over those inputs once and looks the
mask up from the observation's one-hot blocks, in numpy or torch. That lets any SB3 algorithm
mask without changes to the env: actor-critic policies (PPO, A2C) put -1e8 on forbidden logits
and DQN puts it on forbidden Q-values and explores among allowed actions only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork

from nba.contact_rules import rule_masks
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder, Observation
from nba.parameters import ScenarioArrays
from nba.policy_head import sample, uniform
from nba.scenario import Scenario
from nba.state import CustomerState
from nba.types import BoolArray, FloatArray, IntArray

#: What a forbidden action's logit or Q-value becomes: zero probability, finite arithmetic
#: (``-inf`` would turn the entropy's ``p * log p`` into NaN).
FORBIDDEN = -1e8
#: The rule inputs :func:`rule_mask_spec` tabulates (consent through persona and opt-out).
_TABULATED = frozenset({"consent", "weekday", "pressure", "days_since", "stage"})


def rule_mask_spec(scenario: Scenario, observation: Observation = "state") -> dict[str, Any]:
    """Plain arrays describing the rule mask of a scenario (passed as a policy keyword).

    Belief observations hold the persona's probabilities, not a one-hot: its block is read by
    argmax (flag 2). That is exact for consent, because the belief is conditioned on the
    customer's consent, so every persona it leaves possible grants the same channels.
    """
    arrays = ScenarioArrays.from_scenario(scenario)
    features = FeatureBuilder(arrays, observation=observation)
    rules = arrays.rules
    if observation == "belief" and rules.has_exclusions:
        raise NBAValidationError(
            "observation: 'belief' cannot train under contact rules that exclude by journey "
            "stage, which a company does not observe"
        )
    untabulated = [r.name for r in rules.rules if not set(r.reads) <= _TABULATED]
    if untabulated:  # a rule over another input would be judged on a made-up value
        raise NBAValidationError(
            f"rule mask: contact rules {untabulated} read inputs the training mask does not "
            f"tabulate (it covers {sorted(_TABULATED)})"
        )
    windows = [int(w) for w in rules.cap_windows]
    stages = arrays.n_stages if rules.has_exclusions else 1  # only exclusions read the stage
    radices = np.array(
        [arrays.n_personas, 2, rules.pressure_capacity + 1, *windows, 7, stages], dtype=np.int64
    )
    strides = np.concatenate([np.cumprod(radices[::-1])[::-1][1:], [1]]).astype(np.int64)
    digits = (np.arange(int(np.prod(radices)))[:, None] // strides[None, :]) % radices[None, :]
    n = digits.shape[0]
    state = CustomerState(
        persona=digits[:, 0].copy(),
        stage=digits[:, -1].copy(),
        pressure=digits[:, 2].copy(),
        days_since=digits[:, 3 : 3 + len(windows)] + 1,
        habit=np.zeros(n, dtype=bool),
        opted_out=digits[:, 1].astype(bool),
        rate_level=np.zeros(n, dtype=np.int64),  # no rule reads the individual levels
        dropout_level=np.zeros(n, dtype=np.int64),
    )
    table = rule_masks(rules, state, digits[:, -2], state.consent(arrays)).allowed
    offsets = features.offsets
    caps = scenario.contact_rules.caps
    # (first column, width, stride, flag) per rule input: a one-hot block is read by argmax
    # (a one-persona scenario has a one-column one), a flag column by > 0.5
    blocks = [
        (
            offsets["persona"],
            arrays.n_personas,
            int(strides[0]),
            2 if observation == "belief" else 0,
        ),
        (offsets["opted_out"], 1, int(strides[1]), 1),
        (offsets["pressure"], rules.pressure_capacity + 1, int(strides[2]), 0),
        *[
            (offsets[f"{cap.name}_days"], windows[g], int(strides[3 + g]), 0)
            for g, cap in enumerate(caps)
        ],
        (offsets["weekday"], 7, int(strides[-2]), 0),
    ]
    if stages > 1:
        blocks.append((offsets["stage"], stages, int(strides[-1]), 0))
    return {"table": table, "blocks": blocks, "n_features": features.size}


def key_weights(spec: dict[str, Any]) -> FloatArray:
    """(F,) weights whose dot product with an observation is its row in the mask table.

    Observations are one-hot blocks and 0/1 flags, so ``sum_j block[j] * j * stride`` is the
    block's digit times its stride: one matrix-vector product replaces an argmax per block,
    which kept the masked policy's forward pass about as fast as the plain one.
    """
    weights = np.zeros(int(spec["n_features"]), dtype=np.float32)
    for start, width, stride, flag in spec["blocks"]:
        if flag == 2:  # read by argmax (:func:`argmax_blocks`)
            continue
        digits = np.array([1.0]) if flag else np.arange(width, dtype=np.float64)
        weights[start : start + len(digits)] = digits * stride
    if len(spec["table"]) >= 2**24:  # float32 holds every integer key exactly below 2**24
        raise ValueError("rule mask: too many rule-input combinations for a float32 key")
    return weights


def argmax_blocks(spec: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(first column, width, stride) of the blocks read by argmax: probabilities, not one-hots."""
    return [(int(a), int(w), int(s)) for a, w, s, flag in spec["blocks"] if flag == 2]


class RuleMask:
    """(N, A) allowed actions from (N, F) observations, by table lookup (numpy)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.table = np.asarray(spec["table"], dtype=bool)
        self.weights = key_weights(spec)
        self.argmax = argmax_blocks(spec)

    def key(self, obs: FloatArray) -> IntArray:
        obs = np.asarray(obs, dtype=np.float32)
        key = np.rint(obs @ self.weights).astype(np.int64)
        for start, width, stride in self.argmax:
            key += obs[:, start : start + width].argmax(axis=1) * stride
        return key

    def __call__(self, obs: FloatArray) -> BoolArray:
        return self.table[self.key(obs)]


class TorchRuleMask(torch.nn.Module):
    """The same lookup on torch tensors, inside a policy's forward pass."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.register_buffer(
            "table", torch.as_tensor(np.asarray(spec["table"], dtype=bool)), persistent=False
        )
        self.register_buffer("weights", torch.as_tensor(key_weights(spec)), persistent=False)
        self.argmax = argmax_blocks(spec)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        key = torch.round(obs @ self.weights).long()
        for start, width, stride in self.argmax:
            key = key + obs[:, start : start + width].argmax(dim=1) * stride
        return self.table[key]


class MaskedActorCriticPolicy(ActorCriticPolicy):
    """SB3's MLP actor-critic whose action distribution excludes what the rules forbid."""

    def __init__(self, *args: Any, rule_mask: dict[str, Any], **kwargs: Any) -> None:
        self.rule_mask_spec = rule_mask
        super().__init__(*args, **kwargs)
        self.rule_mask = TorchRuleMask(rule_mask)
        self._allowed: torch.Tensor | None = None

    # every path to an action distribution starts at one of these three with the observation
    def forward(self, obs: torch.Tensor, deterministic: bool = False) -> Any:
        self._allowed = self.rule_mask(obs)
        return super().forward(obs, deterministic)

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor) -> Any:
        self._allowed = self.rule_mask(obs)
        return super().evaluate_actions(obs, actions)

    def get_distribution(self, obs: PyTorchObs) -> Any:
        self._allowed = self.rule_mask(obs)
        return super().get_distribution(obs)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Any:
        logits = self.action_net(latent_pi)
        assert self._allowed is not None
        logits = logits.masked_fill(~self._allowed, FORBIDDEN)
        return self.action_dist.proba_distribution(action_logits=logits)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "rule_mask": self.rule_mask_spec}


class MaskedQNetwork(QNetwork):
    """Q-values with forbidden actions pushed to -1e8 (so targets maximise over allowed ones)."""

    def __init__(self, *args: Any, rule_mask: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rule_mask = TorchRuleMask(rule_mask)

    def forward(self, obs: PyTorchObs) -> torch.Tensor:
        q_values = super().forward(obs)
        return q_values.masked_fill(~self.rule_mask(obs), FORBIDDEN)


class MaskedDQNPolicy(DQNPolicy):
    """DQN's policy with :class:`MaskedQNetwork` for the online and the target network."""

    def __init__(self, *args: Any, rule_mask: dict[str, Any], **kwargs: Any) -> None:
        self.rule_mask_spec = rule_mask
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> QNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return MaskedQNetwork(**net_args, rule_mask=self.rule_mask_spec).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "rule_mask": self.rule_mask_spec}


class MaskedDQN(DQN):
    """DQN that explores among allowed actions, per customer, from its own seeded Generator.

    SB3's DQN draws one global ``np.random`` number per step and then explores for the whole
    batch at once, uniformly over every action; here each customer explores independently
    (probability ``exploration_rate``) and only over what the rules allow.
    """

    def _setup_model(self) -> None:
        super()._setup_model()
        self._explore_rng = np.random.default_rng(self.seed)
        spec = getattr(self.policy, "rule_mask_spec", None)  # None: a plain MlpPolicy
        self._rule_mask = RuleMask(spec) if spec is not None else None

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        action, state = self.policy.predict(observation, state, episode_start, deterministic)
        if deterministic or self.exploration_rate <= 0.0 or np.ndim(observation) != 2:
            return action, state
        explore = self._explore_rng.random(observation.shape[0]) < self.exploration_rate
        if explore.any():
            action = np.asarray(action).copy()
            action[explore] = self._random_allowed(observation[explore])
        return action, state

    def _sample_action(
        self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._last_obs is not None
        if self.num_timesteps < learning_starts:
            action = self._random_allowed(np.asarray(self._last_obs))
        else:
            action, _ = self.predict(self._last_obs, deterministic=False)
        return action, action

    def _random_allowed(self, obs: np.ndarray) -> IntArray:
        if self._rule_mask is None:
            return self._explore_rng.integers(0, int(self.action_space.n), obs.shape[0])
        return sample(uniform(self._rule_mask(obs)), self._explore_rng)


__all__ = [
    "FORBIDDEN",
    "MaskedActorCriticPolicy",
    "MaskedDQN",
    "MaskedDQNPolicy",
    "MaskedQNetwork",
    "RuleMask",
    "TorchRuleMask",
    "key_weights",
    "rule_mask_spec",
]
