from __future__ import annotations

from dataclasses import replace
from io import BytesIO

import numpy as np
import pytest

from nba.calibration.comparison import ComparisonError, compare_forecasts
from nba.calibration.figures import bucket_figure


def comparison():
    frequency = np.array([0, 0, 1, 3, 9, 12])
    actual = np.array([0.0, 1.0, 2.0, 3.0, 10.0, 6.0])
    twin = actual + np.array([0.5, -0.5, 0.0, 0.0, -1.0, 1.0])
    flat = np.full(6, actual.mean())
    return compare_forecasts(frequency, actual, {"twin": twin, "bgnbd": flat}, n_bootstrap=20)


def test_bars_are_the_actual_means_and_markers_each_models():
    c = comparison()
    figure = bucket_figure(c, title="toy", labels={"twin": "my twin"})
    (axes,) = figure.axes
    heights = [bar.get_height() for bar in axes.patches]
    np.testing.assert_allclose(heights, c.buckets["actual"])
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert set(lines) == {"my twin", "BG/NBD"}
    np.testing.assert_allclose(lines["my twin"].get_ydata(), c.buckets["twin"])
    np.testing.assert_allclose(lines["BG/NBD"].get_ydata(), c.buckets["bgnbd"])
    assert lines["my twin"].get_marker() != lines["BG/NBD"].get_marker()
    ticks = [t.get_text() for t in axes.get_xticklabels()]
    assert ticks == ["0\n(2)", "1\n(1)", "3\n(1)", "7+\n(2)"]  # customers per bucket
    assert axes.get_title() == "toy" and axes.get_xlabel() and axes.get_ylabel()
    legend = [t.get_text() for t in axes.get_legend().get_texts()]
    assert "actual" in legend and "my twin" in legend
    assert axes.get_ylim()[1] > c.buckets[["actual", "twin", "bgnbd"]].to_numpy().max()
    png = BytesIO()
    figure.savefig(png, format="png")
    assert png.getvalue().startswith(b"\x89PNG")


def test_refuses_a_comparison_without_its_model_columns():
    c = comparison()
    with pytest.raises(ComparisonError, match="buckets: missing column"):
        bucket_figure(replace(c, buckets=c.buckets.drop(columns="twin")))
    with pytest.raises(ComparisonError, match="no customers"):
        bucket_figure(replace(c, buckets=c.buckets.iloc[:0]))
