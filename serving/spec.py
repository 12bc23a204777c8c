"""The exported-policy format: ``policy.json`` (spec) + ``weights.npz`` (plain arrays).

Loading needs numpy only and never unpickles: weights are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nba.errors import NBAValidationError
from nba.scenario import Scenario
from nba.serving.network import ACTIVATIONS, MLP, DenseLayer

FORMAT = "nba-policy/1"
SPEC_FILE = "policy.json"
WEIGHTS_FILE = "weights.npz"


class PolicyFormatError(NBAValidationError):
    """An exported policy directory that is missing, malformed or from another format."""


@dataclass(frozen=True)
class ExportedPolicy:
    """A loaded export: the spec, the scenario it was trained on, and its networks."""

    spec: dict[str, Any]
    scenario: Scenario
    policy: MLP  # features -> action preferences (logits, or Q-values)
    value: MLP | None  # features -> value estimate in normalised units
    value_scale: float  # multiply ``value`` output by this for currency units

    @property
    def feature_names(self) -> list[str]:
        return list(self.spec["features"])

    @property
    def action_names(self) -> list[str]:
        return [a["name"] for a in self.spec["actions"]]

    @property
    def output_kind(self) -> str:
        return str(self.spec["policy_output"])


def load_exported(directory: str | Path) -> ExportedPolicy:
    """Read an export directory written by :func:`nba.serving.export.export_policy`."""
    folder = Path(directory)
    spec_path, weights_path = folder / SPEC_FILE, folder / WEIGHTS_FILE
    for path in (spec_path, weights_path):
        if not path.is_file():
            raise PolicyFormatError(f"policy: missing {path.name} in {str(folder)!r}")
    try:
        spec = json.loads(spec_path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise PolicyFormatError(f"{SPEC_FILE}: not valid JSON: {exc}") from None
    if spec.get("format") != FORMAT:
        raise PolicyFormatError(
            f"{SPEC_FILE}.format: expected {FORMAT!r}, got {spec.get('format')!r}"
        )
    try:
        with np.load(weights_path, allow_pickle=False) as archive:
            weights = {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as exc:
        raise PolicyFormatError(f"{WEIGHTS_FILE}: cannot read plain arrays: {exc}") from None
    return policy_from_parts(spec, weights)


def policy_from_parts(spec: dict[str, Any], weights: dict[str, np.ndarray]) -> ExportedPolicy:
    """An export from its spec and plain arrays (a loaded directory, or a model in memory)."""
    scenario = Scenario.from_dict(spec["scenario"])
    if scenario.fingerprint() != spec.get("scenario_fingerprint"):
        raise PolicyFormatError(f"{SPEC_FILE}.scenario_fingerprint: does not match the scenario")
    networks = spec["networks"]
    value = _mlp(networks["value"], weights) if networks.get("value") else None
    return ExportedPolicy(
        spec=spec,
        scenario=scenario,
        policy=_mlp(networks["policy"], weights),
        value=value,
        value_scale=float(spec.get("value_scale", 1.0)),
    )


def _mlp(layers: list[dict[str, str]], weights: dict[str, np.ndarray]) -> MLP:
    built = []
    for i, layer in enumerate(layers):
        if layer["activation"] not in ACTIVATIONS:
            raise PolicyFormatError(
                f"networks layer {i}: unknown activation {layer['activation']!r}"
            )
        try:
            weight, bias = weights[layer["weight"]], weights[layer["bias"]]
        except KeyError as exc:
            raise PolicyFormatError(f"{WEIGHTS_FILE}: missing array {exc}") from None
        built.append(
            DenseLayer(weight.astype(np.float32), bias.astype(np.float32), layer["activation"])
        )
    return MLP(tuple(built))
