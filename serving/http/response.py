"""Answers as compact JSON: a decision, the rows of a batch, and the one-line error."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from starlette.responses import Response

from nba.serving.scorer import Decision


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(value), status, headers=headers, media_type="application/json")


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "customer_id": decision.customer_id,
        "action": decision.action,
        "action_name": decision.action_name,
        "channel": decision.channel,
        "offer": decision.offer,
        "propensity": decision.propensity,
        "value_estimate": decision.value_estimate,
        "model_version": str(decision.model_version),
        "explored": decision.explored,
        "alternatives": decision.alternatives,
        "suppressed": decision.suppressed,
    }


def _frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``score_batch``'s rows as JSON-ready dicts (categoricals as text or null, finite floats)."""
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = column.astype(object).where(column.notna(), None).tolist()
        elif pd.api.types.is_float_dtype(column.dtype):
            numbers = column.to_numpy(dtype=np.float64)
            values = numbers.tolist()
            if not np.isfinite(numbers).all():
                values = [v if math.isfinite(v) else None for v in values]
        elif name == "model_version":
            values = [str(v) for v in column.tolist()]
        else:
            values = column.tolist()
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)
