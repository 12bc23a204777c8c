"""The exported-policy format: ``policy.json`` (spec) + ``weights.npz`` (plain arrays).

Loading needs numpy only, never unpickles, and treats the files as untrusted: every malformed
export is one :class:`PolicyFormatError` naming the file or field and the problem. Before any
weight is read, the spec is checked field by field and every array's ``.npy`` header (shape,
dtype) against the layer chain the spec and scenario imply, so a header that claims 10^12
elements costs nothing. Then the weights must be finite, the action catalogue and features
must be the scenario's, and, when configured, the export must be signed with the team's key
(:func:`sign_export`) or carry exactly a trusted scenario: the scenario inside an export holds
the consent and contact rules the scorer enforces, and its fingerprint alone proves nothing
(anyone who edits the rules can recompute it).

This module loads an export; the format's files, limits, errors and strict spec model are in
:mod:`nba.serving.export_format`, the weights' checks in :mod:`nba.serving.export_weights`,
signing in :mod:`nba.serving.export_signing`. Every name stays importable from here.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.scenario import NO_ACTION, Scenario
from nba.serving.export_format import (
    FORMAT,
    MAX_HIDDEN,
    MAX_JSON_DEPTH,
    MAX_LAYERS,
    MAX_PARAMETERS,
    MAX_SPEC_BYTES,
    MAX_WEIGHTS_BYTES,
    OUTPUT_KINDS,
    SPEC_FILE,
    WEIGHTS_FILE,
    PolicyFormatError,
    UnverifiedExportWarning,
    _clip,
    _parse_json,
    _read_capped,
    _short,
    _Spec,
)
from nba.serving.export_signing import (
    MIN_KEY_BYTES,
    SIGNATURE_FILE,
    SIGNATURE_FORMAT,
    SIGNING_KEY_ENV,
    _checked_key,
    _verify_signature,
    default_signing_key,
    sign_export,
    signature_message,
)
from nba.serving.export_weights import _check_arrays, _finite, _mlp, _read_weights
from nba.serving.network import MLP

__all__ = [
    "FORMAT",
    "MAX_HIDDEN",
    "MAX_JSON_DEPTH",
    "MAX_LAYERS",
    "MAX_PARAMETERS",
    "MAX_SPEC_BYTES",
    "MAX_WEIGHTS_BYTES",
    "MIN_KEY_BYTES",
    "OUTPUT_KINDS",
    "SIGNATURE_FILE",
    "SIGNATURE_FORMAT",
    "SIGNING_KEY_ENV",
    "SPEC_FILE",
    "WEIGHTS_FILE",
    "ExportedPolicy",
    "PolicyFormatError",
    "UnverifiedExportWarning",
    "action_catalogue",
    "default_signing_key",
    "load_exported",
    "policy_from_parts",
    "sign_export",
    "signature_message",
]


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


def action_catalogue(scenario: Scenario) -> list[dict[str, Any]]:
    """The ``actions`` of a spec: index, name, channel and offer of every action, in order."""
    catalogue: list[dict[str, Any]] = [
        {"index": 0, "name": NO_ACTION, "channel": None, "offer": None}
    ]
    for i, action in enumerate(scenario.actions, start=1):
        catalogue.append(
            {"index": i, "name": action.name, "channel": action.channel, "offer": action.offer}
        )
    return catalogue


# ------------------------------------------------------------------------------- loading
def load_exported(
    directory: str | Path,
    *,
    trusted_scenario: Scenario | str | Path | None = None,
    signing_key: bytes | str | None = None,
) -> ExportedPolicy:
    """Read and check an export directory written by :func:`nba.serving.export.export_policy`.

    :param trusted_scenario: the scenario (or its name or YAML path) the export must have been
        trained on, content for content: anything else is refused with what differs.
    :param signing_key: verify ``signature.json`` with this key; defaults to
        ``NBA_SIGNING_KEY``. With a key, an unsigned or badly signed export is refused.
    :raises PolicyFormatError: naming the file or field and the problem.

    With neither a key nor a trusted scenario the export loads, with one
    :class:`UnverifiedExportWarning`: its consent and contact rules are whatever it says.
    """
    folder = Path(directory)
    key = _checked_key(signing_key, "signing_key") if signing_key else default_signing_key()
    spec_bytes = _read_capped(folder, SPEC_FILE, MAX_SPEC_BYTES)
    weight_bytes = _read_capped(folder, WEIGHTS_FILE, MAX_WEIGHTS_BYTES)
    if key is not None:
        _verify_signature(folder, key, spec_bytes, weight_bytes)
    spec = _parse_json(spec_bytes, SPEC_FILE)
    checked = _check_spec(spec)
    weights = _read_weights(weight_bytes, checked)
    policy = _build(spec, checked, weights)
    if trusted_scenario is not None:
        _check_trusted(policy.scenario, trusted_scenario)
    elif key is None:
        warnings.warn(
            "policy export loaded without a signing key or a trusted scenario: its consent and "
            f"contact rules are unverified (set {SIGNING_KEY_ENV} or pass trusted_scenario)",
            UnverifiedExportWarning,
            stacklevel=2,
        )
    return policy


def policy_from_parts(spec: dict[str, Any], weights: dict[str, np.ndarray]) -> ExportedPolicy:
    """An export from its spec and plain arrays (a loaded directory, or a model in memory).

    The same checks as :func:`load_exported` after reading: a model in memory is scored by
    exactly what its export would serve.
    """
    checked = _check_spec(spec)
    shapes = {name: tuple(int(n) for n in np.shape(array)) for name, array in weights.items()}
    _check_arrays(checked, shapes, {name: np.asarray(a).dtype for name, a in weights.items()})
    arrays = {name: _finite(name, np.asarray(array)) for name, array in weights.items()}
    return _build(spec, checked, arrays)


def _build(spec: dict[str, Any], checked: _Spec, weights: dict[str, np.ndarray]) -> ExportedPolicy:
    scenario = _scenario(checked)
    features, actions = checked.features, [entry.model_dump() for entry in checked.actions]
    expected = action_catalogue(scenario)
    if actions != expected:
        i = next(
            (i for i, (a, b) in enumerate(zip(actions, expected, strict=False)) if a != b),
            min(len(actions), len(expected)),
        )
        got = _short(actions[i]) if i < len(actions) else "none"
        want = _short(expected[i]) if i < len(expected) else "none"
        raise PolicyFormatError(
            f"{SPEC_FILE}.actions[{i}]: does not match the scenario's actions: export {got}, "
            f"scenario {want}"
        )
    try:
        FeatureBuilder.for_names(ScenarioArrays.from_scenario(scenario), features)
    except NBAValidationError:
        raise PolicyFormatError(
            f"{SPEC_FILE}.features: {len(features)} names that are not a feature layout of "
            f"scenario {scenario.name!r}"
        ) from None
    networks = checked.networks
    return ExportedPolicy(
        spec=spec,
        scenario=scenario,
        policy=_mlp(networks.policy, weights),
        value=_mlp(networks.value, weights) if networks.value else None,
        value_scale=float(checked.value_scale),
    )


def _check_spec(spec: Any) -> _Spec:
    if not isinstance(spec, Mapping):
        raise PolicyFormatError(f"{SPEC_FILE}: expected a JSON object, got {type(spec).__name__}")
    if spec.get("format") != FORMAT:
        raise PolicyFormatError(
            f"{SPEC_FILE}.format: expected {FORMAT!r}, got {_short(spec.get('format'))}"
        )
    try:
        return _Spec.model_validate(dict(spec))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PolicyFormatError(f"{SPEC_FILE}{where}: {error['msg']}{more}") from None


def _scenario(checked: _Spec) -> Scenario:
    try:
        scenario = Scenario.from_dict(checked.scenario)
    except NBAValidationError as exc:
        raise PolicyFormatError(f"{SPEC_FILE}.scenario: {_clip(str(exc), 300)}") from None
    if scenario.fingerprint() != checked.scenario_fingerprint:
        raise PolicyFormatError(f"{SPEC_FILE}.scenario_fingerprint: does not match the scenario")
    if scenario.name != checked.scenario_name:
        raise PolicyFormatError(
            f"{SPEC_FILE}.scenario_name: {checked.scenario_name!r}, the scenario is "
            f"{scenario.name!r}"
        )
    return scenario


def _check_trusted(scenario: Scenario, trusted: Scenario | str | Path) -> None:
    from nba.scenarios import load_scenario

    expected = load_scenario(trusted)
    if scenario.fingerprint() == expected.fingerprint():
        return
    differences = list(_differences(scenario.to_dict(), expected.to_dict(), ""))
    shown = "; ".join(differences[:4])
    more = f" (and {len(differences) - 4} more)" if len(differences) > 4 else ""
    raise PolicyFormatError(
        f"{SPEC_FILE}.scenario: differs from the trusted scenario {expected.name!r}: {shown}{more}"
    )


def _differences(ours: Any, theirs: Any, path: str) -> Iterator[str]:
    """``path: export X, trusted Y`` for every leaf where two scenario dicts differ."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            where = f"{path}.{key}" if path else str(key)
            yield from _differences(ours.get(key), theirs.get(key), where)
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        if all(isinstance(x, str | int | float | bool | None) for x in [*ours, *theirs]):
            if ours != theirs:
                yield f"{path}: export {_short(ours)}, trusted {_short(theirs)}"
            return
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif ours != theirs:
        yield f"{path}: export {_short(ours)}, trusted {_short(theirs)}"
