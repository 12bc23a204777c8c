"""Gymnasium and Stable-Baselines3 environments around the customer twin (``nba.envs``)."""
