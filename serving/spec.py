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
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.lib import format as npy_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.parameters import ScenarioArrays
from nba.scenario import NO_ACTION, Scenario
from nba.serving.network import ACTIVATIONS, MLP, DenseLayer

FORMAT = "nba-policy/1"
SPEC_FILE = "policy.json"
WEIGHTS_FILE = "weights.npz"
SIGNATURE_FILE = "signature.json"
SIGNATURE_FORMAT = "nba-policy-signature/1"
SIGNING_KEY_ENV = "NBA_SIGNING_KEY"
OUTPUT_KINDS = ("logits", "q_values")

# What an export may ask of the loader. A 64x64 policy of the built-in scenario is 60 KB.
MAX_SPEC_BYTES = 4 << 20
MAX_WEIGHTS_BYTES = 128 << 20
MAX_JSON_DEPTH = 64
MAX_LAYERS = 16  # per network
MAX_HIDDEN = 1024  # units of a hidden layer
MAX_PARAMETERS = 1 << 24  # every weight and bias of both networks
MIN_KEY_BYTES = 16  # a signing key at least this long
_MAX_CENTRAL_DIRECTORY = 64 << 10  # zip entry list: bounds the members before zipfile reads it
_HEADER_LIMIT = 10_000  # .npy header bytes (numpy's own default)


class PolicyFormatError(NBAValidationError):
    """An exported policy directory that is missing, malformed or from another format."""


class UnverifiedExportWarning(UserWarning):
    """An export loaded with neither a signing key nor a trusted scenario to check it against."""


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


def default_signing_key() -> bytes | None:
    """The key in ``NBA_SIGNING_KEY`` (UTF-8 bytes), or None when it is unset or empty."""
    text = os.environ.get(SIGNING_KEY_ENV, "")
    return _checked_key(text.encode("utf-8"), SIGNING_KEY_ENV) if text else None


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


# ----------------------------------------------------------------------------- the weights
def _expected_arrays(checked: _Spec) -> list[tuple[str, str, str, int]]:
    """(array, role, network, layer) of every array the spec uses, in order."""
    found = []
    for network, layers in (("policy", checked.networks.policy), ("value", checked.networks.value)):
        for i, layer in enumerate(layers or []):
            found += [(layer.weight, "weight", network, i), (layer.bias, "bias", network, i)]
    return found


def _check_arrays(
    checked: _Spec, shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, np.dtype]
) -> None:
    """Names, dtypes and the layer chain, from shapes only: nothing is read or allocated.

    The first layer takes the features, each next layer the previous one's outputs (at most
    :data:`MAX_HIDDEN`), the policy's last layer gives one output per action, the value's one.
    """
    used = {name for name, *_ in _expected_arrays(checked)}
    unused = sorted(set(shapes) - used)
    if unused:
        raise PolicyFormatError(
            f"{WEIGHTS_FILE}: array {_short(unused[0])} is not used by {SPEC_FILE} "
            f"({len(unused)} unused): an export holds its networks' arrays only"
        )
    missing = [name for name in sorted(used) if name not in shapes]
    if missing:
        raise PolicyFormatError(f"{WEIGHTS_FILE}: missing array {missing[0]!r}")
    for name in sorted(used):
        dtype = dtypes[name]
        if dtype.kind != "f" or dtype.fields is not None or dtype.subdtype is not None:
            raise PolicyFormatError(
                f"{WEIGHTS_FILE}: array {name!r} has dtype {_clip(str(dtype), 80)}; expected plain "
                "arrays of floats"
            )
    outputs = {"policy": len(checked.actions), "value": 1}
    total = 0
    for network, layers in (("policy", checked.networks.policy), ("value", checked.networks.value)):
        width = len(checked.features)
        for i, layer in enumerate(layers or []):
            last = i == len(layers or []) - 1
            where = f"{SPEC_FILE}.networks.{network}[{i}]"
            weight, bias = shapes[layer.weight], shapes[layer.bias]
            if len(weight) != 2 or weight[1] != width:
                raise PolicyFormatError(
                    f"{WEIGHTS_FILE}: array {layer.weight!r} ({where}.weight) has shape "
                    f"{_short(weight)}, expected (outputs, {width})"
                )
            out = weight[0]
            if last and out != outputs[network]:
                what = "one per action" if network == "policy" else "the value"
                raise PolicyFormatError(
                    f"{WEIGHTS_FILE}: array {layer.weight!r} ({where}.weight) has {out} outputs, "
                    f"expected {outputs[network]} ({what})"
                )
            if not last and not 1 <= out <= MAX_HIDDEN:
                raise PolicyFormatError(
                    f"{WEIGHTS_FILE}: array {layer.weight!r} ({where}.weight) has {out} outputs, "
                    f"expected 1 to {MAX_HIDDEN} units in a hidden layer"
                )
            if bias != (out,):
                raise PolicyFormatError(
                    f"{WEIGHTS_FILE}: array {layer.bias!r} ({where}.bias) has shape "
                    f"{_short(bias)}, expected ({out},)"
                )
            total += out * width + out
            width = out
    if total > MAX_PARAMETERS:
        raise PolicyFormatError(
            f"{WEIGHTS_FILE}: {total:,} parameters, over the limit of {MAX_PARAMETERS:,}"
        )


def _read_weights(data: bytes, checked: _Spec) -> dict[str, np.ndarray]:
    """The arrays of ``weights.npz``: headers checked against the spec before any data is read."""
    _check_central_directory(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members: dict[str, zipfile.ZipInfo] = {}
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or info.filename[:-4] in members:
                    raise PolicyFormatError(
                        f"{WEIGHTS_FILE}: unexpected member {_short(info.filename)}; expected "
                        "one NAME.npy per array"
                    )
                members[info.filename[:-4]] = info
            used = {name for name, *_ in _expected_arrays(checked)}
            headers = {
                name: _npy_header(archive, info)
                for name, info in members.items()
                if name in used  # an unused name is refused below without being opened
            }
            shapes = {name: headers[name][0] if name in headers else () for name in members}
            dtypes = {
                name: headers[name][2] if name in headers else np.dtype("f4") for name in members
            }
            _check_arrays(checked, shapes, dtypes)
            return {name: _npy_data(archive, members[name], *headers[name]) for name in headers}
    except PolicyFormatError:
        raise
    except (
        zipfile.BadZipFile,
        zlib.error,
        struct.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
        ValueError,
    ) as exc:
        raise PolicyFormatError(
            f"{WEIGHTS_FILE}: not a readable .npz archive of plain arrays: {_clip(str(exc))}"
        ) from None


def _check_central_directory(data: bytes) -> None:
    """Refuse an entry list too long to be an export's before ``zipfile`` parses all of it."""
    start = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if start < 0 or len(data) < start + 22:
        raise PolicyFormatError(f"{WEIGHTS_FILE}: not a zip archive (an .npz)")
    if start >= 20 and data[start - 20 : start - 16] == b"PK\x06\x07":
        raise PolicyFormatError(f"{WEIGHTS_FILE}: a zip64 archive; an export is far smaller")
    (size,) = struct.unpack("<I", data[start + 12 : start + 16])
    if size > _MAX_CENTRAL_DIRECTORY:
        raise PolicyFormatError(
            f"{WEIGHTS_FILE}: zip entry list of {size:,} bytes, over the limit of "
            f"{_MAX_CENTRAL_DIRECTORY:,}"
        )


def _npy_header(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo
) -> tuple[tuple[int, ...], bool, np.dtype]:
    name = info.filename[:-4]
    with archive.open(info) as stream:
        try:
            version = npy_format.read_magic(stream)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(stream, _HEADER_LIMIT)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(stream, _HEADER_LIMIT)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, TypeError, SyntaxError) as exc:
            raise PolicyFormatError(
                f"{WEIGHTS_FILE}: array {name!r}: not a plain .npy array: {_clip(str(exc))}"
            ) from None
    return tuple(int(n) for n in shape), bool(fortran), np.dtype(dtype)


def _npy_data(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    shape: tuple[int, ...],
    fortran: bool,
    dtype: np.dtype,
) -> np.ndarray:
    """Exactly the bytes the checked header announces, then the end of the member (CRC)."""
    name = info.filename[:-4]
    size = math.prod(shape) * dtype.itemsize
    with archive.open(info) as stream:
        version = npy_format.read_magic(stream)
        reader = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        reader(stream, _HEADER_LIMIT)
        raw = stream.read(size)
        if len(raw) != size:
            raise PolicyFormatError(
                f"{WEIGHTS_FILE}: array {name!r} is truncated ({len(raw):,} of {size:,} bytes)"
            )
        if stream.read(1):
            raise PolicyFormatError(f"{WEIGHTS_FILE}: array {name!r} has data past its shape")
    array = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return _finite(name, array)


def _finite(name: str, array: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # a float64 past float32's range is refused just below
        converted = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(converted).all():
        raise PolicyFormatError(f"{WEIGHTS_FILE}: array {name!r} has NaN or infinite values")
    return converted


def _mlp(layers: list[_Layer], weights: dict[str, np.ndarray]) -> MLP:
    return MLP(
        tuple(
            DenseLayer(weights[layer.weight], weights[layer.bias], layer.activation)
            for layer in layers
        )
    )


# ------------------------------------------------------------------------------- signing
def signature_message(spec_bytes: bytes, weight_bytes: bytes) -> bytes:
    """What the HMAC covers: the format and the SHA-256 of both files' exact bytes."""
    return (
        f"{SIGNATURE_FORMAT}\n{SPEC_FILE} {hashlib.sha256(spec_bytes).hexdigest()}\n"
        f"{WEIGHTS_FILE} {hashlib.sha256(weight_bytes).hexdigest()}\n"
    ).encode()


def sign_export(spec_bytes: bytes, weight_bytes: bytes, key: bytes | str) -> bytes:
    """The ``signature.json`` bytes for an export's two files (HMAC-SHA256 with ``key``)."""
    secret = _checked_key(key, "signing_key")
    message = signature_message(spec_bytes, weight_bytes)
    payload = {
        "format": SIGNATURE_FORMAT,
        "algorithm": "HMAC-SHA256",
        "files": {
            SPEC_FILE: hashlib.sha256(spec_bytes).hexdigest(),
            WEIGHTS_FILE: hashlib.sha256(weight_bytes).hexdigest(),
        },
        "hmac": hmac.new(secret, message, hashlib.sha256).hexdigest(),
    }
    return json.dumps(payload, indent=2).encode()


def _verify_signature(folder: Path, key: bytes, spec_bytes: bytes, weight_bytes: bytes) -> None:
    if not (folder / SIGNATURE_FILE).is_file():
        raise PolicyFormatError(
            f"policy: {SIGNATURE_FILE} missing in {str(folder)!r}: a signing key is configured "
            "and this export is not signed"
        )
    payload = _parse_json(_read_capped(folder, SIGNATURE_FILE, 64 << 10), SIGNATURE_FILE)
    mac = payload.get("hmac") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != SIGNATURE_FORMAT:
        raise PolicyFormatError(f"{SIGNATURE_FILE}.format: expected {SIGNATURE_FORMAT!r}")
    if not isinstance(mac, str):
        raise PolicyFormatError(f"{SIGNATURE_FILE}.hmac: expected a hex string")
    expected = hmac.new(key, signature_message(spec_bytes, weight_bytes), hashlib.sha256)
    if not hmac.compare_digest(mac.encode(), expected.hexdigest().encode()):
        raise PolicyFormatError(
            f"{SIGNATURE_FILE}: the signature does not match {SPEC_FILE} and {WEIGHTS_FILE} "
            "under the configured key (modified after signing, or signed with another key)"
        )


def _checked_key(key: bytes | str, name: str) -> bytes:
    secret = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(secret) < MIN_KEY_BYTES:
        raise NBAValidationError(
            f"{name}: a signing key needs at least {MIN_KEY_BYTES} bytes, got {len(secret)}"
        )
    return secret
