"""Gymnasium registration of the ``nba`` environments (done on ``import nba.envs``)."""

from __future__ import annotations

import gymnasium

ENV_IDS = ("nba/CustomerJourney-v0",)


def register_envs() -> None:
    """Register every ``nba`` env id; safe to call more than once."""
    if "nba/CustomerJourney-v0" not in gymnasium.registry:
        gymnasium.register(
            id="nba/CustomerJourney-v0",
            entry_point="nba.envs.journey_env:JourneyEnv",
            vector_entry_point="nba.envs.vector_env:JourneyVectorEnv",
            kwargs={"scenario": "retail"},
        )
