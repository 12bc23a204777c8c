"""The lift figure: cumulative value per customer, treated vs holdout, with bands.

Matplotlib's Figure API without pyplot: no global backend, nothing to close, safe in servers.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from nba.lift import LiftError

__all__ = ["lift_figure", "save_lift_figure"]

_TREATED, _CONTROL = "#1f77b4", "#7f7f7f"


def lift_figure(cumulative: pd.DataFrame, title: str | None = None) -> Figure:
    """Two panels from :func:`nba.lift.cumulative_lift`: each group's cumulative KPI per
    customer with its band, and their difference with its band (zero marked)."""
    needed = ("day", "treated_mean", "control_mean", "difference")
    missing = [c for c in needed if c not in cumulative.columns]
    if missing:
        raise LiftError(f"cumulative.{missing[0]}: missing column (use cumulative_lift)")
    if cumulative.empty:
        raise LiftError("cumulative: no days to draw")
    kpi = str(cumulative.attrs.get("kpi", "value"))
    level = float(cumulative.attrs.get("level", 0.95))
    days = pd.to_datetime(cumulative["day"]).dt.tz_localize(None)
    fig = Figure(figsize=(8, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    for name, colour, label in (
        ("treated", _TREATED, "treated (model)"),
        ("control", _CONTROL, "holdout (control)"),
    ):
        top.plot(days, cumulative[f"{name}_mean"], color=colour, label=label)
        top.fill_between(
            days,
            cumulative[f"{name}_lower"],
            cumulative[f"{name}_upper"],
            color=colour,
            alpha=0.2,
            linewidth=0,
        )
    top.set_ylabel(f"cumulative {kpi} per customer")
    top.legend(loc="upper left")
    top.set_title(title or f"Cumulative {kpi} per customer, treated vs holdout")
    bottom.plot(days, cumulative["difference"], color="#2ca02c", label="treated - holdout")
    bottom.fill_between(
        days,
        cumulative["difference_lower"],
        cumulative["difference_upper"],
        color="#2ca02c",
        alpha=0.2,
        linewidth=0,
        label=f"{level:.0%} interval",
    )
    bottom.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
    bottom.set_ylabel(f"lift in {kpi}")
    bottom.set_xlabel("day")
    bottom.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def save_lift_figure(cumulative: pd.DataFrame, path: str | Path, title: str | None = None) -> Path:
    """Draw and write the figure as PNG; the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lift_figure(cumulative, title).savefig(target, dpi=110)
    return target
