"""Warm start: a new run's networks begin as a registered policy's exported weights.

The export (read and checked by the serving loader) holds an actor-critic's policy and value
layers in order; they are copied into the fresh SB3
policy's ``mlp_extractor.policy_net`` + ``action_net`` and ``value_net`` + ``value_net`` Linear
layers. The actor is then exactly the exported policy, so the run's first evaluation equals
the export's value (tested). What is not exported starts fresh: the optimiser's moments, the
reward normaliser's statistics and the random streams.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from nba.errors import NBAValidationError
from nba.scenario import Scenario
from nba.serving.export_format import SPEC_FILE, WEIGHTS_FILE
from nba.serving.spec import load_exported


def export_folder(path: str | Path) -> Path:
    """The folder holding ``policy.json``: the path itself, or ``policy/`` or
    ``artifacts/policy/`` inside it (a run's export, a downloaded ``models:/`` URI)."""
    folder = Path(path)
    for candidate in (folder, folder / "policy", folder / "artifacts" / "policy"):
        if (candidate / SPEC_FILE).is_file() and (candidate / WEIGHTS_FILE).is_file():
            return candidate
    raise NBAValidationError(
        f"init_from: no exported policy (policy.json, weights.npz) in {str(folder)!r}"
    )


def load_exported_weights(model: Any, path: str | Path, scenario: Scenario) -> None:
    """Copy an export's policy and value layers into ``model``'s actor-critic, shape-checked.

    The export is read by :func:`nba.serving.spec.load_exported`, the serving loader: checked
    like any served export, against the run's own scenario and the signing key when one is set.
    """
    exported = load_exported(export_folder(path), trusted_scenario=scenario)
    policy = model.policy
    if not hasattr(policy, "mlp_extractor"):
        raise NBAValidationError(
            f"init_from: warm start needs an actor-critic (ppo, a2c, maskable_ppo), got "
            f"{type(policy).__name__}"
        )
    if exported.value is None:
        raise NBAValidationError("init_from: the export has no value network to start from")
    extractor = policy.mlp_extractor
    targets = {
        "policy": (_linear([*extractor.policy_net, policy.action_net]), exported.policy),
        "value": (_linear([*extractor.value_net, policy.value_net]), exported.value),
    }
    for name, (layers, network) in targets.items():
        if len(network.layers) != len(layers):
            raise NBAValidationError(
                f"init_from: the export's {name} network has {len(network.layers)} layers, the "
                f"new run's {len(layers)}"
            )
        for k, (layer, dense) in enumerate(zip(layers, network.layers, strict=True)):
            _copy(layer.weight, dense.weight, f"{name} layer {k} weight")
            _copy(layer.bias, dense.bias, f"{name} layer {k} bias")


def _linear(modules: list[Any]) -> list[torch.nn.Linear]:
    return [m for m in modules if isinstance(m, torch.nn.Linear)]


def _copy(parameter: torch.nn.Parameter, array: np.ndarray, name: str) -> None:
    if tuple(parameter.shape) != array.shape:
        raise NBAValidationError(
            f"init_from: {name} has shape {array.shape}, the new run's layer "
            f"{tuple(parameter.shape)} (another network or feature layout)"
        )
    with torch.no_grad():
        parameter.copy_(torch.as_tensor(array, dtype=parameter.dtype))
