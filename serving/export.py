"""Export a trained SB3 policy to plain weights + a JSON spec (the format in DESIGN.md).

This side imports torch (it reads a trained model); loading the export does not
(:mod:`nba.serving.spec`).
"""

from __future__ import annotations

import io
import json
import platform
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from nba.errors import NBAValidationError
from nba.features import FINAL_DAYS, OBSERVATIONS, FeatureBuilder
from nba.io import write_bytes_atomic
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.serving.scorer import PolicyScorer, ServedPolicy
from nba.serving.spec import (
    FORMAT,
    SIGNATURE_FILE,
    SPEC_FILE,
    WEIGHTS_FILE,
    ExportedPolicy,
    action_catalogue,
    policy_from_parts,
    sign_export,
)


def export_policy(
    model: Any,
    scenario: Scenario,
    directory: str | Path,
    *,
    algo: str,
    value_scale: float = 1.0,
    metadata: dict[str, Any] | None = None,
    signing_key: bytes | str | None = None,
) -> Path:
    """Write ``weights.npz`` and ``policy.json`` for an SB3 model trained on ``scenario``.

    :param value_scale: factor that turns the value head's output into currency (the reward
        normaliser's scale when rewards were normalised during training).
    :param signing_key: also write ``signature.json``, an HMAC-SHA256 of both files' bytes
        that :func:`~nba.serving.spec.load_exported` verifies (training passes
        ``NBA_SIGNING_KEY``). Without a key a signature left by an earlier export is removed.
    """
    folder = Path(directory)
    spec, weights = policy_parts(
        model, scenario, algo=algo, value_scale=value_scale, metadata=metadata
    )
    policy_from_parts(spec, weights)  # never write what the loader would refuse
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    weight_bytes = buffer.getvalue()
    spec_bytes = json.dumps(spec, indent=2).encode("utf-8")
    signature = sign_export(spec_bytes, weight_bytes, signing_key) if signing_key else None
    (folder / SIGNATURE_FILE).unlink(missing_ok=True)  # stale until both files are written
    write_bytes_atomic(folder / WEIGHTS_FILE, weight_bytes)
    write_bytes_atomic(folder / SPEC_FILE, spec_bytes)
    if signature is not None:
        write_bytes_atomic(folder / SIGNATURE_FILE, signature)
    return folder


def exported_in_memory(
    model: Any, scenario: Scenario, *, algo: str, value_scale: float = 1.0
) -> ExportedPolicy:
    """The export of ``model`` without touching disk: what evaluation during training scores.

    The same spec and arrays :func:`export_policy` writes, so the numbers a run reports come
    from the network and policy head that serve it.
    """
    spec, weights = policy_parts(model, scenario, algo=algo, value_scale=value_scale)
    return policy_from_parts(spec, weights)


def served_policy(
    model: Any, scenario: Scenario, *, algo: str, value_scale: float = 1.0
) -> ServedPolicy:
    """A trained model as the scorer serves it, for evaluation on the twin."""
    exported = exported_in_memory(model, scenario, algo=algo, value_scale=value_scale)
    return PolicyScorer(exported).as_policy(algo)


def policy_parts(
    model: Any,
    scenario: Scenario,
    *,
    algo: str,
    value_scale: float = 1.0,
    metadata: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON spec and plain weight arrays of an SB3 model (see :mod:`nba.serving.spec`)."""
    weights: dict[str, np.ndarray] = {}
    policy = model.policy
    if hasattr(policy, "mlp_extractor"):  # actor-critic: PPO, A2C, MaskablePPO
        extractor = policy.mlp_extractor
        actor = _layers([*extractor.policy_net, policy.action_net], "policy", weights)
        critic = _layers([*extractor.value_net, policy.value_net], "value", weights)
        output = "logits"
    elif hasattr(policy, "q_net"):  # DQN
        actor, critic, output = _layers(list(policy.q_net.q_net), "policy", weights), [], "q_values"
    else:
        raise NBAValidationError(f"model: cannot export policy of type {type(policy).__name__}")

    arrays = ScenarioArrays.from_scenario(scenario)
    inputs = weights[actor[0]["weight"]].shape[1] if actor else None
    # state layouts first (today's and pre-``days_left``), then belief layouts (issue 16):
    # their sizes differ by the joint belief's T x K columns, so the input width picks one
    layouts = [
        FeatureBuilder(arrays, final_days=days, observation=kind)
        for kind in OBSERVATIONS  # ("state", "belief")
        for days in (FINAL_DAYS, 0)
    ]
    features = next((f for f in layouts if f.size == inputs), layouts[0])
    if inputs is not None and inputs != features.size:
        raise NBAValidationError(
            f"model: expects {inputs} features, the scenario builds {features.size}"
        )
    spec = {
        "format": FORMAT,
        "algorithm": algo,
        "policy_output": output,
        "scenario_name": scenario.name,
        "scenario_fingerprint": scenario.fingerprint(),
        "scenario": scenario.to_dict(),
        "features": features.names,
        "actions": action_catalogue(scenario),
        "networks": {"policy": actor, "value": critic or None},
        "value_scale": float(value_scale),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "metadata": metadata or {},
    }
    return spec, weights


def _layers(
    modules: list[Any], prefix: str, weights: dict[str, np.ndarray]
) -> list[dict[str, str]]:
    """Dense layers of a list of torch modules, activations folded into the layer before."""
    import torch.nn as nn

    layers: list[dict[str, str]] = []
    for sub in modules:
        if isinstance(sub, nn.Linear):
            name = f"{prefix}.{len(layers)}"
            weights[f"{name}.weight"] = sub.weight.detach().cpu().numpy().astype(np.float32)
            weights[f"{name}.bias"] = sub.bias.detach().cpu().numpy().astype(np.float32)
            layers.append(
                {"weight": f"{name}.weight", "bias": f"{name}.bias", "activation": "identity"}
            )
        elif isinstance(sub, nn.Tanh | nn.ReLU):
            if not layers:
                raise NBAValidationError(f"model: activation before any layer in {prefix}")
            layers[-1]["activation"] = "tanh" if isinstance(sub, nn.Tanh) else "relu"
        elif isinstance(sub, nn.Identity | nn.Flatten):
            continue
        else:
            raise NBAValidationError(f"model: cannot export layer {type(sub).__name__}")
    return layers


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("nba", "numpy", "torch", "stable-baselines3", "sb3-contrib", "gymnasium"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
