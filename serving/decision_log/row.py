"""The one-row fast path (what ``nba serve``'s ``/decide`` logs): the same row and the same
content hash as :class:`~nba.serving.decision_log.batch._Prepared`, in plain Python."""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Iterable
from typing import Any

import numpy as np

from nba.serving.decision_log.batch import (
    LoggedBatch,
    _batch_id,
    _json_of,
    _names_json,
    _Prepared,
)
from nba.serving.decision_log.schema import _INSERT
from nba.serving.decision_log.stamps import _ARRAYS, format_stamp

_NATIVE_INT64, _NATIVE_FLOAT64 = struct.Struct("=q"), struct.Struct("=d")  # numpy's byte order
_LITTLE_ENDIAN = sys.byteorder == "little"  # the one-row hash spells numpy's "<U" and "=q"
_ZERO_CODE = bytes(8)  # an int64 0: the one row's code for its decision time and action name
_NOT_ONE = object()


class _PreparedRow:
    """A one-row batch (what ``nba serve``'s ``/decide`` logs) prepared in plain Python.

    The per-batch numpy and pandas work of :class:`_Prepared` (factorising, stamp codes, a
    dozen small arrays) costs more than SQLite does for one row, so this path builds the row
    tuple directly and hashes the very bytes :meth:`_Prepared._digest` hashes (the same
    ``content_sha256``: a retry is recognised whichever path logged it). :meth:`build` returns
    ``None`` for anything unusual and the general path takes it, errors included.
    """

    n = 1

    def __init__(self, batch_id: str, row: tuple[Any, ...], sha256: str, names: str | None):
        self.batch_id, self.row, self.sha256, self.feature_names = batch_id, row, sha256, names

    @classmethod
    def build(cls, batch: LoggedBatch) -> _PreparedRow | None:
        customer = _one(batch.customer_id)
        if type(customer) is int:
            customer = str(customer)
        if (
            not _LITTLE_ENDIAN
            or type(customer) is not str
            or "\x00" in customer  # numpy's text arrays drop trailing NULs: theirs to say
            or isinstance(batch.decided_at, _ARRAYS)
            or (batch.holdout is not None and _one(batch.holdout) is not False)  # control
        ):
            return None
        action, name = _one(batch.actions), _one(batch.action_names)
        propensity, explored = _one(batch.propensities), _one(batch.explored)
        if (
            type(action) not in (int, bool)
            or type(name) is not str
            or type(propensity) not in (float, int)
            or not 0 < propensity <= 1
            or type(explored) not in (bool, int)
        ):
            return None
        features = _one_blob(batch.features)
        probabilities = _one_blob(batch.probabilities)
        if features is None or probabilities is None:
            return None
        stamp = format_stamp(batch.decided_at)
        model_version = str(batch.model_version)
        provenance = tuple(
            None
            if getattr(batch.model_version, part, None) is None
            else str(getattr(batch.model_version, part))
            for part in ("name", "version", "run_id")
        )
        names = _names_json(batch.feature_names)
        batch_id = _batch_id(batch.batch_id)
        action, propensity, explored = int(action), float(propensity), bool(explored)
        ids = customer.encode("utf-32-le", "surrogatepass").ljust(4, b"\x00")  # numpy's <U
        parts = (
            f"1|{model_version}|{_json_of(provenance)}".encode(),
            (names or "").encode(),
            f"<U{len(ids) // 4}".encode(),
            ids,
            stamp.encode(),
            _ZERO_CODE,
            name.encode(),
            _ZERO_CODE,
            _NATIVE_INT64.pack(action),
            _NATIVE_FLOAT64.pack(propensity),
            b"\x01" if explored else b"\x00",
            f"|V{len(features)}".encode(),
            features,
            f"|V{len(probabilities)}".encode(),
            probabilities,
        )
        digest = hashlib.sha256(
            b"".join(len(part).to_bytes(8, "little") + part for part in parts)
        ).hexdigest()
        row = (
            customer,
            stamp,
            model_version,
            action,
            name,
            propensity,
            int(explored),
            features,
            probabilities,
            *provenance,
            0,  # holdout: not in the control group
            0,  # the batch: set by bound_rows
            0,  # position
        )
        return cls(batch_id, row, digest, names)

    def bound_rows(self, batch: int) -> Iterable[tuple[Any, ...]]:
        return ((*self.row[:-2], batch, 0),)

    def insert(self, batch: int) -> tuple[str, Iterable[tuple[Any, ...]]]:
        return _INSERT, self.bound_rows(batch)


def _one(values: Any) -> Any:
    """The single value of a one-element list, tuple or 1-D array (as numpy's ``tolist`` gives
    it, so values convert as in :class:`_Prepared`); otherwise a marker no check accepts."""
    if isinstance(values, np.ndarray):
        return values.tolist()[0] if values.shape == (1,) else _NOT_ONE
    if type(values) in (list, tuple) and len(values) == 1:
        value = values[0]
        return value if type(value) in (str, int, float, bool) else _NOT_ONE
    return _NOT_ONE


def _one_blob(values: Any) -> bytes | None:
    """A (1, k) matrix as the k float32 values' bytes (what :func:`_blobs` stores), k >= 1."""
    try:
        matrix = np.ascontiguousarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if matrix.ndim != 2 or matrix.shape[0] != 1 or matrix.shape[1] < 1:
        return None
    return matrix.tobytes()


def _prepare(batch: LoggedBatch) -> _Prepared | _PreparedRow:
    return _PreparedRow.build(batch) or _Prepared(batch)
