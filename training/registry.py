"""The algorithm registry: names users type, mapped to SB3 classes and what they need.

Extend it with :func:`register_algorithm`; nothing else in ``nba.training`` names a class.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nba.errors import UnknownNameError

if TYPE_CHECKING:  # SB3 (and torch) load when an algorithm does, not with the registry
    from stable_baselines3.common.base_class import BaseAlgorithm


@dataclass(frozen=True)
class AlgorithmSpec:
    """How to build one algorithm.

    :param name: registry key (``ppo``).
    :param target: ``module:Class`` of the SB3-compatible algorithm.
    :param maskable: whether ``predict``/``learn`` take action masks from the env.
    :param policy: SB3 policy alias or ``module:Class``; a class taking ``rule_mask`` reads
        the contact rules' masks from the observation (:mod:`nba.training.masking`).
    """

    name: str
    target: str
    maskable: bool = False
    policy: str = "MlpPolicy"

    def load(self) -> type[BaseAlgorithm]:
        return _import(self.target)

    @property
    def masks_from_observation(self) -> bool:
        """Whether the policy masks forbidden actions itself (it takes ``rule_mask``)."""
        return ":" in self.policy

    def policy_class(self, masked: bool = True) -> str | type:
        """The policy to build: the masking class, or plain ``MlpPolicy`` when not ``masked``."""
        return _import(self.policy) if masked and self.masks_from_observation else "MlpPolicy"

    def accepted_parameters(self) -> set[str]:
        """Constructor keywords of the algorithm (for clear errors on unknown config keys)."""
        signature = inspect.signature(self.load().__init__)
        return {p for p in signature.parameters if p not in _SET_BY_NBA and not p.startswith("_")}

    def check_parameters(self, parameters: dict[str, Any], where: str) -> None:
        accepted = self.accepted_parameters()
        unknown = sorted(set(parameters) - accepted)
        if unknown:
            raise UnknownNameError(
                f"{where}: unknown parameter(s) {unknown} for {self.name}; "
                f"expected some of {sorted(accepted)}"
            )


#: Constructor arguments nba sets itself (the policy section of the config covers the network).
_SET_BY_NBA = {"self", "policy", "env", "seed", "device", "verbose", "policy_kwargs"}

ALGORITHMS: dict[str, AlgorithmSpec] = {}


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    ALGORITHMS[spec.name] = spec
    return spec


def get_algorithm(name: str) -> AlgorithmSpec:
    if name not in ALGORITHMS:
        raise UnknownNameError(
            f"algo: unknown algorithm {name!r}; expected one of {sorted(ALGORITHMS)}"
        )
    return ALGORITHMS[name]


def _import(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


_MASKED_ACTOR_CRITIC = "nba.training.masking:MaskedActorCriticPolicy"
register_algorithm(AlgorithmSpec("ppo", "stable_baselines3:PPO", policy=_MASKED_ACTOR_CRITIC))
register_algorithm(AlgorithmSpec("a2c", "stable_baselines3:A2C", policy=_MASKED_ACTOR_CRITIC))
register_algorithm(
    AlgorithmSpec(
        "dqn", "nba.training.masking:MaskedDQN", policy="nba.training.masking:MaskedDQNPolicy"
    )
)
register_algorithm(AlgorithmSpec("maskable_ppo", "sb3_contrib:MaskablePPO", maskable=True))
