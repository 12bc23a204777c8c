"""The exported-policy format's ground: file names, the loader's limits, its errors, the
strict model of ``policy.json``, and reading untrusted files and JSON within those limits.

:mod:`nba.serving.spec` loads an export with these, :mod:`nba.serving.export_weights` checks
its arrays and :mod:`nba.serving.export_signing` its signature.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nba.errors import NBAValidationError
from nba.serving.network import ACTIVATIONS

FORMAT = "nba-policy/1"
SPEC_FILE = "policy.json"
WEIGHTS_FILE = "weights.npz"
OUTPUT_KINDS = ("logits", "q_values")

# What an export may ask of the loader. A 64x64 policy of the built-in scenario is 60 KB.
MAX_SPEC_BYTES = 4 << 20
MAX_WEIGHTS_BYTES = 128 << 20
MAX_JSON_DEPTH = 64
MAX_LAYERS = 16  # per network
MAX_HIDDEN = 1024  # units of a hidden layer
MAX_PARAMETERS = 1 << 24  # every weight and bias of both networks
_MAX_CENTRAL_DIRECTORY = 64 << 10  # zip entry list: bounds the members before zipfile reads it
_HEADER_LIMIT = 10_000  # .npy header bytes (numpy's own default)


class PolicyFormatError(NBAValidationError):
    """An exported policy directory that is missing, malformed or from another format."""


class UnverifiedExportWarning(UserWarning):
    """An export loaded with neither a signing key nor a trusted scenario to check it against."""


# ---------------------------------------------------------------------------------- the spec
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Layer(_Strict):
    weight: str = Field(min_length=1, max_length=200)
    bias: str = Field(min_length=1, max_length=200)
    activation: Literal[tuple(ACTIVATIONS)]  # type: ignore[valid-type]


class _Networks(_Strict):
    policy: list[_Layer] = Field(min_length=1, max_length=MAX_LAYERS)
    value: list[_Layer] | None = Field(None, max_length=MAX_LAYERS)


class _CatalogueEntry(_Strict):
    index: int
    name: str
    channel: str | None
    offer: str | None


class _Spec(_Strict):
    """``policy.json``: every key the loader, the scorer and the pyfunc read is required."""

    format: Literal["nba-policy/1"]
    algorithm: str = Field(min_length=1, max_length=100)
    policy_output: Literal["logits", "q_values"]
    scenario_name: str
    scenario_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    scenario: dict[str, Any]
    features: list[str] = Field(min_length=1, max_length=100_000)
    actions: list[_CatalogueEntry] = Field(min_length=2, max_length=100_000)
    networks: _Networks
    value_scale: float = Field(gt=0.0, allow_inf_nan=False)
    created: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------------- files and JSON
def _read_capped(folder: Path, name: str, limit: int) -> bytes:
    path = folder / name
    if not path.is_file():
        raise PolicyFormatError(f"policy: missing {name} in {str(folder)!r}")
    try:
        with path.open("rb") as handle:
            data = _read_at_most(handle, limit + 1)
    except OSError as exc:
        raise PolicyFormatError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise PolicyFormatError(f"{name}: larger than the {limit:,} byte limit")
    return data


def _read_at_most(handle: io.BufferedReader, limit: int) -> bytes:
    """Up to ``limit`` bytes, in chunks: ``read(limit)`` would allocate ``limit`` up front."""
    chunks, total = [], 0
    while total < limit:
        chunk = handle.read(min(1 << 20, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _parse_json(data: bytes, name: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not a number JSON allows")

    try:
        value = json.loads(data.decode("utf-8"), parse_constant=refuse)
    except RecursionError:
        raise PolicyFormatError(f"{name}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        raise PolicyFormatError(f"{name}: not valid JSON: {_clip(str(exc))}") from None
    _check_depth(value, name)
    return value


def _check_depth(value: Any, name: str) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise PolicyFormatError(f"{name}: nested deeper than {MAX_JSON_DEPTH} levels")
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((child, depth + 1) for child in children)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages quote untrusted values."""
    return _clip(repr(value), limit)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
