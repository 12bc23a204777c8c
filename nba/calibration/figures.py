"""Figures of forecast comparisons, for notebooks and reports.

The bucket figure is BG/NBD's standard diagnostic drawn (Fader, Hardie & Lee 2005, figure 4):
a model can be right in total and still too flat, and only the per-bucket means show it. Built
on :class:`matplotlib.figure.Figure` directly, not pyplot: no global figure state, no backend
to choose, so it works the same in a notebook, a report or a test.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from nba.calibration.comparison import ComparisonError, ForecastComparison

#: How the models compare_forecasts is usually given read in a legend.
LABELS = {"twin": "twin (exact forecast)", "bgnbd": "BG/NBD"}
MARKERS = ("o", "D", "s", "^", "v", "P")
COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def bucket_figure(
    comparison: ForecastComparison,
    *,
    title: str = "Forecast by calibration-frequency bucket",
    labels: Mapping[str, str] | None = None,
    size: tuple[float, float] = (9.0, 4.8),
) -> Figure:
    """Per calibration-frequency bucket, the mean actual count (bars) against each model's
    mean forecast (markers), with the customers per bucket in the tick labels.

    :param labels: model name -> legend label (default :data:`LABELS`, else the name).
    """
    buckets = comparison.buckets
    models = list(comparison.totals["model"])
    missing = [name for name in ["actual", *models] if name not in buckets.columns]
    if missing:
        raise ComparisonError(f"buckets: missing column(s) {missing}")
    if buckets.empty:
        raise ComparisonError("buckets: no customers to draw")
    names = {**LABELS, **(labels or {})}
    x = np.arange(len(buckets))
    figure = Figure(figsize=size, layout="constrained")
    axes = figure.add_subplot()
    axes.bar(x, buckets["actual"], width=0.6, color="#c7c7c7", label="actual")
    offsets = np.linspace(-0.16, 0.16, len(models)) if len(models) > 1 else [0.0]
    for k, (name, offset) in enumerate(zip(models, offsets, strict=True)):
        axes.plot(
            x + offset,
            buckets[name],
            linestyle="none",
            marker=MARKERS[k % len(MARKERS)],
            markersize=7,
            color=COLOURS[k % len(COLOURS)],
            label=names.get(name, name),
        )
    axes.set_xticks(
        x, [f"{b}\n({n:,})" for b, n in zip(buckets["bucket"], buckets["customers"], strict=True)]
    )
    axes.set_xlabel("repeat purchases in the calibration window (customers)")
    axes.set_ylabel("mean purchases in the forecast window")
    axes.set_title(title)
    axes.set_ylim(0.0, 1.12 * float(np.nanmax(buckets[["actual", *models]].to_numpy())))
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", frameon=False)
    return figure
