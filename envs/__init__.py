"""Gymnasium and Stable-Baselines3 environments around the customer twin (``nba.envs``).

Importing this package registers ``nba/CustomerJourney-v0``::

    import gymnasium, nba.envs
    env = gymnasium.make("nba/CustomerJourney-v0", scenario="retail")
    vec = gymnasium.make_vec("nba/CustomerJourney-v0", num_envs=1024,
                             vectorization_mode="vector_entry_point")
"""

from nba.envs.journey_env import JourneyEnv
from nba.envs.registration import ENV_IDS, register_envs
from nba.envs.vec_env import TwinVecEnv
from nba.envs.vector_env import JourneyVectorEnv

register_envs()

__all__ = ["ENV_IDS", "JourneyEnv", "JourneyVectorEnv", "TwinVecEnv", "register_envs"]
