"""The calibration's parameter table: every quantity with its interval, source and method.

One row per quantity, in the order calibration met it. A fitted row carries a percentile
bootstrap interval (``lower``, ``upper`` at ``confidence``); an assumed row carries the prior's
value and no interval, and its ``method`` says which prior. The same vocabulary (``lower``,
``upper``, ``confidence``) as evaluation and OPE use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import interval
from nba.types import FloatArray

COLUMNS = ["name", "estimate", "lower", "upper", "confidence", "source", "method"]
CONFIDENCE = 0.95


class ParameterTable:
    """Collects fitted and assumed values as rows (see :data:`COLUMNS`)."""

    def __init__(self, confidence: float = CONFIDENCE) -> None:
        self.rows: list[dict[str, Any]] = []
        self.confidence = confidence

    def add(
        self,
        name: str,
        replicates: FloatArray | float,
        method: str,
        source: str = "fitted",
    ) -> float:
        """Record ``name``; its estimate (replicate 0 of bootstrap draws, or the scalar)."""
        if np.isscalar(replicates):
            value = float(replicates)  # type: ignore[arg-type]
            self.rows.append(
                {"name": name, "estimate": value, "lower": None, "upper": None}
                | {"confidence": None, "source": source, "method": method}
            )
            return value
        draws = np.asarray(replicates, dtype=float)
        lower, upper = interval(draws[:, None], self.confidence)
        self.rows.append(
            {
                "name": name,
                "estimate": float(draws[0]),
                "lower": float(lower[0]),
                "upper": float(upper[0]),
                "confidence": self.confidence,
                "source": source,
                "method": method,
            }
        )
        return float(draws[0])

    def drop(self, names: set[str]) -> None:
        """Forget rows (a prior replaced by a later fit)."""
        self.rows = [row for row in self.rows if row["name"] not in names]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)
