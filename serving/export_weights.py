"""The weights of an export (``weights.npz``): every array's ``.npy`` header checked against
the layer chain the spec implies before any data is read, then the data, which must be finite."""

from __future__ import annotations

import io
import math
import struct
import zipfile
import zlib
from collections.abc import Mapping

import numpy as np
from numpy.lib import format as npy_format

from nba.serving.export_format import (
    _HEADER_LIMIT,
    _MAX_CENTRAL_DIRECTORY,
    MAX_HIDDEN,
    MAX_PARAMETERS,
    SPEC_FILE,
    WEIGHTS_FILE,
    PolicyFormatError,
    _clip,
    _Layer,
    _short,
    _Spec,
)
from nba.serving.network import MLP, DenseLayer


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
