from __future__ import annotations

import pytest

from nba.errors import UnknownNameError
from nba.training import ALGORITHMS, AlgorithmSpec, get_algorithm, register_algorithm


def test_registry_has_the_four_algorithms() -> None:
    assert {"ppo", "a2c", "dqn", "maskable_ppo"} <= set(ALGORITHMS)
    assert get_algorithm("maskable_ppo").maskable and not get_algorithm("ppo").maskable
    assert get_algorithm("ppo").load().__name__ == "PPO"


def test_unknown_algorithm_lists_choices() -> None:
    with pytest.raises(UnknownNameError, match=r"algo: unknown algorithm 'sac'.*ppo"):
        get_algorithm("sac")


def test_extension_through_the_registry() -> None:
    spec = register_algorithm(AlgorithmSpec("ppo_copy", "stable_baselines3:PPO"))
    try:
        assert get_algorithm("ppo_copy") is spec
        assert "n_steps" in spec.accepted_parameters()
        with pytest.raises(UnknownNameError, match=r"where: unknown parameter\(s\) \['n_stepz'\]"):
            spec.check_parameters({"n_stepz": 3}, "where")
    finally:
        ALGORITHMS.pop("ppo_copy")
