"""Running nba past one process: Ray, an optional extra (``pip install nba[ray]``).

What runs on Ray: the belief filter and the exact forecasts over customer partitions
(:mod:`nba.scale.ray_forecast`, one task per partition, results identical to the
single-process call). :mod:`nba.scale.cluster` connects to a cluster: a local one started on
demand by default, or any running cluster by address.

``ray`` is imported lazily, inside the functions that need it: importing :mod:`nba.scale` (or
anything else of nba) never needs Ray, and calling a Ray path without it raises
:class:`RayNotInstalledError`, which says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nba.errors import NBAValidationError

__all__ = ["RayNotInstalledError", "ScaleError", "import_ray"]


class ScaleError(NBAValidationError):
    """A bad setting of a distributed run (partitions, address, CPUs); names the option."""


class RayNotInstalledError(ScaleError):
    """A Ray path was asked for where Ray is not installed."""


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`RayNotInstalledError` saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as error:
        raise RayNotInstalledError(
            "engine: Ray is not installed; install the extra with `pip install nba[ray]` "
            "(or `pip install 'ray[data,tune]>=2.40,<3'`)"
        ) from error
