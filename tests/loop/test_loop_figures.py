"""The closed loop's figure, drawn from a tiny loop run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nba.loop.closed_loop import LoopReport, run_loop
from nba.loop.figures import LoopFigureError, change_week_of, loop_figure, save_loop_figure
from nba.loop.world import load_world


@pytest.fixture(scope="module")
def report() -> LoopReport:
    """A 3-week loop, the world changing at week 2; a low drift threshold so a gate happens."""
    spec = load_world(
        customers=400,
        shadow_customers=400,
        eval_customers=200,
        weeks=3,
        burn_in_weeks=1,
        drift_threshold=1.5,
        change={"week": 2, "kind": "channel_response", "channel": "sms", "factor": 0.5},
    )
    return run_loop(spec, seed=0)


def labels(ax) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.get_label() for h in ax.get_legend_handles_labels()[0]]


def test_three_panels_with_their_lines(report: LoopReport, tmp_path: Path) -> None:
    assert len(report.gates) >= 1  # the fixture's threshold makes the figure draw a gate
    figure = loop_figure(report)
    top, middle, bottom = figure.axes
    assert top.get_shared_x_axes().joined(top, bottom)
    top_labels = labels(top)
    for expected in (
        "champion after the week's gate",
        "business as usual (journey map)",
        "world twin (planner on the world's parameters)",
        "full-information optimum (knows the hidden stage)",
        "world changes (start of week 2)",
    ):
        assert expected in top_labels
    gate_labels = [label for label in top_labels if label.startswith("challenger ")]
    verbs = {"promoted" if g else "refused" for g in report.gates["promoted"]}
    assert {label.split()[1].rstrip(",") for label in gate_labels} == verbs
    assert labels(middle) == ["treated (the system)", "holdout (business as usual)"]
    covered = int(report.weeks["lift_covered"].sum())
    assert set(labels(bottom)) == {
        "95% interval",
        "estimated lift (treated - holdout)",
        f"true lift (shadow cohorts); covered {covered}/3 weeks",
    }
    (champion,) = [
        line for line in top.get_lines() if line.get_label() == "champion after the week's gate"
    ]
    assert list(champion.get_ydata()) == pytest.approx(report.weeks["champion_value"].tolist())
    path = save_loop_figure(report, tmp_path / "figures" / "loop.png")
    assert path.stat().st_size > 20_000


def test_change_week(report: LoopReport) -> None:
    assert change_week_of(report.weeks) == 2
    unchanged = report.weeks.assign(world="retail-world")
    assert change_week_of(unchanged) is None
    figure = loop_figure(LoopReport(0, unchanged, pd.DataFrame(), {}, {}), change_week=3)
    assert "world changes (start of week 3)" in labels(figure.axes[0])
    quiet = loop_figure(LoopReport(0, unchanged, pd.DataFrame(), {}, {}))
    assert not [
        name for name in labels(quiet.axes[0]) if name.startswith(("world changes", "challenger"))
    ]


def test_unusable_reports_name_the_field(report: LoopReport) -> None:
    with pytest.raises(LoopFigureError, match=r"^report.weeks.lift: missing column"):
        loop_figure(LoopReport(0, report.weeks.drop(columns="lift"), report.gates, {}, {}))
    with pytest.raises(LoopFigureError, match=r"^report.weeks: no loop weeks"):
        loop_figure(LoopReport(0, report.weeks.iloc[:0], report.gates, {}, {}))
