"""nba: next-best-action optimisation with reinforcement learning on a customer digital twin."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from nba.errors import NBAError, NBAValidationError, ScenarioError, UnknownNameError
from nba.scenario import Scenario
from nba.scenarios import builtin_scenario_names, load_scenario
from nba.twin import CustomerTwin

try:
    __version__ = version("nba")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = [
    "CustomerTwin",
    "NBAError",
    "NBAValidationError",
    "Scenario",
    "ScenarioError",
    "UnknownNameError",
    "__version__",
    "builtin_scenario_names",
    "load_scenario",
]
