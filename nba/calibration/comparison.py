"""Per-customer purchase forecasts of several models against what happened, side by side.

The standard BG/NBD diagnostic (Fader, Hardie & Lee 2005, figure 4): customers grouped by
their number of *repeat* purchases in the calibration window (``0, 1, ..., top - 1`` and
``top+``), and per group the mean actual count in the forecast window against each model's
mean forecast. A model that is right on average can still be too flat (over-forecasting the
one-time buyers, under-forecasting the heaviest); the groups show it. Alongside: total
forecast against total actual, per-customer mean absolute error, and a paired customer
bootstrap (Poisson weights, :mod:`nba.calibration.bootstrap`) of each model's MAE difference
and ratio to the baseline's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.bgnbd import finite_vector
from nba.calibration.bootstrap import Bootstrap, interval, safe_ratio
from nba.errors import NBAValidationError
from nba.types import FloatArray

#: A bucket mean passes when it is this close to the actual (relative) ...
BUCKET_TOLERANCE = 0.10


class ComparisonError(NBAValidationError):
    """Forecasts that cannot be compared: names the field and the problem."""


@dataclass(frozen=True)
class ForecastComparison:
    """The comparison's three tables.

    ``buckets``: one row per calibration-frequency bucket: ``customers``, ``actual`` (mean),
    per model ``<model>`` (mean forecast) and ``<model>_error`` (mean forecast - mean actual),
    and for every model but the baseline ``<model>_ok``: its bucket mean is within
    :data:`BUCKET_TOLERANCE` of the actual, or no farther from it than the baseline's
    (with the same tolerance on the baseline's error).
    ``totals``: per model the total forecast, total actual and relative error.
    ``accuracy``: per model the MAE with its 95% interval; for every other model the paired
    MAE difference (model - baseline) and ratio (model / baseline) with theirs.
    """

    buckets: pd.DataFrame
    totals: pd.DataFrame
    accuracy: pd.DataFrame
    baseline: str

    def mae(self, model: str) -> float:
        return float(self._row(model, "mae")["value"])

    def mae_ratio(self, model: str) -> float:
        """``model``'s MAE over the baseline's."""
        return float(self._row(model, "mae_ratio")["value"])

    def total_error(self, model: str) -> float:
        """(total forecast - total actual) / total actual."""
        return float(self.totals.set_index("model").at[model, "relative_error"])

    def _row(self, model: str, metric: str) -> pd.Series:
        rows = self.accuracy[
            (self.accuracy["model"] == model) & (self.accuracy["metric"] == metric)
        ]
        if rows.empty:
            raise KeyError(f"no row model={model!r}, metric={metric!r}")
        return rows.iloc[0]


def compare_forecasts(
    frequency: FloatArray,
    actual: FloatArray,
    forecasts: Mapping[str, FloatArray],
    *,
    baseline: str = "bgnbd",
    top: int = 7,
    n_bootstrap: int = 400,
    seed: int = 0,
) -> ForecastComparison:
    """Compare per-customer ``forecasts`` (model name -> array) with ``actual`` counts.

    :param frequency: each customer's repeat purchases in the calibration window.
    :param top: the last bucket is ``top+`` repeat purchases.
    """
    x = _array("frequency", frequency)
    truth = _array("actual", actual)
    if baseline not in forecasts:
        raise ComparisonError(f"baseline: {baseline!r} is not one of {list(forecasts)}")
    models = {name: _array(f"forecasts[{name!r}]", values) for name, values in forecasts.items()}
    for name, values in {"actual": truth, **models}.items():
        if values.shape != x.shape:
            raise ComparisonError(f"{name}: {values.size} customers, frequency has {x.size}")
    if not isinstance(top, int) or top < 1:
        raise ComparisonError(f"top: expected a whole number >= 1, got {top!r}")
    boot = Bootstrap.draw(x.size, n_bootstrap, np.random.default_rng(seed))
    return ForecastComparison(
        buckets=_buckets(x, truth, models, baseline, top),
        totals=pd.DataFrame(
            [
                {
                    "model": name,
                    "forecast": float(values.sum()),
                    "actual": float(truth.sum()),
                    "relative_error": float((values.sum() - truth.sum()) / max(truth.sum(), 1e-12)),
                }
                for name, values in models.items()
            ]
        ),
        accuracy=_accuracy(truth, models, baseline, boot),
        baseline=baseline,
    )


def _buckets(
    x: FloatArray, truth: FloatArray, models: dict[str, FloatArray], baseline: str, top: int
) -> pd.DataFrame:
    bucket = np.minimum(x, top).astype(np.int64)
    labels = [str(k) for k in range(top)] + [f"{top}+"]
    counts = np.bincount(bucket, minlength=top + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "bucket": labels,
                "customers": counts,
                "actual": np.bincount(bucket, truth, minlength=top + 1) / counts,
            }
        )
        for name, values in models.items():
            table[name] = np.bincount(bucket, values, minlength=top + 1) / counts
            table[f"{name}_error"] = table[name] - table["actual"]
    allowed = np.maximum(
        BUCKET_TOLERANCE * table["actual"].abs(),
        (1.0 + BUCKET_TOLERANCE) * table[f"{baseline}_error"].abs(),
    )
    for name in models:
        if name != baseline:
            table[f"{name}_ok"] = table[f"{name}_error"].abs() <= allowed
    return table[table["customers"] > 0].reset_index(drop=True)


def _accuracy(
    truth: FloatArray, models: dict[str, FloatArray], baseline: str, boot: Bootstrap
) -> pd.DataFrame:
    weights = boot.weights.astype(float)
    total = weights.sum(axis=1)
    mae = {
        name: safe_ratio(weights @ np.abs(values - truth), total) for name, values in models.items()
    }
    rows = []
    for name, replicates in mae.items():
        rows.append(_row(name, "mae", replicates))
        if name != baseline:
            rows.append(_row(name, "mae_difference", replicates - mae[baseline]))
            rows.append(_row(name, "mae_ratio", safe_ratio(replicates, mae[baseline])))
    return pd.DataFrame(rows)


def _row(model: str, metric: str, replicates: FloatArray) -> dict[str, object]:
    lower, upper = interval(replicates[:, None])
    return {
        "model": model,
        "metric": metric,
        "value": float(replicates[0]),
        "lower": float(lower[0]),
        "upper": float(upper[0]),
    }


def _array(name: str, values: FloatArray) -> FloatArray:
    return finite_vector(name, values, ComparisonError)
