"""The closed loop's figure: what the champion is worth in the world's truth, week by week.

Three panels share the loop's weeks: (a) the champion's true value against business as usual,
the world twin and the full-information optimum, with the world's change and every gate
decision marked; (b) the value a treated and a holdout customer realized each week; (c) the
cumulative lift estimate with its 95% band against the true lift of the shadow cohorts.

Matplotlib's Figure API without pyplot: no global backend, nothing to close, safe in servers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from nba.errors import NBAValidationError
from nba.loop.closed_loop import LoopReport

__all__ = ["LoopFigureError", "change_week_of", "loop_figure", "save_loop_figure"]

_CHAMPION, _BAU, _WORLD_TWIN, _OPTIMUM = "#1f77b4", "#7f7f7f", "#ff7f0e", "#2ca02c"
_TREATED, _HOLDOUT, _LIFT, _TRUTH = "#1f77b4", "#7f7f7f", "#2ca02c", "black"
_RIGHT, _WRONG = "#2ca02c", "#d62728"
_WEEK_COLUMNS = (
    "week",
    "world",
    "champion",
    "champion_value",
    "business_as_usual_value",
    "world_twin_value",
    "optimum_value",
    "treated_value",
    "holdout_value",
    "lift",
    "lift_lower",
    "lift_upper",
    "true_lift",
)


class LoopFigureError(NBAValidationError):
    """A loop report the figure cannot be drawn from (names the field)."""


def change_week_of(weeks: pd.DataFrame) -> int | None:
    """The first loop week played in a different world than the first week's, if any."""
    worlds = weeks["world"].astype(str).to_numpy()
    changed = np.flatnonzero(worlds != worlds[0])
    return int(weeks["week"].iloc[changed[0]]) if changed.size else None


def loop_figure(report: LoopReport, change_week: int | None = None) -> Figure:
    """Three panels over the loop's weeks (module docstring); ``change_week`` defaults to the
    week ``report.weeks["world"]`` first changes."""
    weeks = report.weeks
    missing = [c for c in _WEEK_COLUMNS if c not in weeks.columns]
    if missing:
        raise LoopFigureError(f"report.weeks.{missing[0]}: missing column (use run_loop)")
    if weeks.empty:
        raise LoopFigureError("report.weeks: no loop weeks to draw")
    if change_week is None:
        change_week = change_week_of(weeks)
    fig = Figure(figsize=(9, 10))
    top, middle, bottom = fig.subplots(3, 1, sharex=True, height_ratios=(3, 2, 2))
    x = weeks["week"].to_numpy()
    _truth_panel(top, weeks, report.gates)
    _realized_panel(middle, weeks)
    _lift_panel(bottom, weeks)
    for ax in (top, middle, bottom):
        if change_week is not None:
            ax.axvline(
                change_week - 0.5,
                color="#9467bd",
                linestyle=":",
                linewidth=1.5,
                label=f"world changes (start of week {change_week})" if ax is top else None,
            )
        ax.grid(alpha=0.3)
    top.legend(loc="best", fontsize=8, ncol=2)
    if len(x) <= 26:  # every week labelled while that stays legible
        bottom.set_xticks(x)
    else:
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.set_xlim(x.min() - 0.6, x.max() + 0.6)
    bottom.set_xlabel("loop week (after the business-as-usual burn-in)")
    fig.suptitle(_headline(report), fontsize=11)
    fig.tight_layout()
    return fig


def save_loop_figure(report: LoopReport, path: str | Path, change_week: int | None = None) -> Path:
    """Draw and write the figure as PNG; the path written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    loop_figure(report, change_week).savefig(target, dpi=110)
    return target


def _truth_panel(ax: Axes, weeks: pd.DataFrame, gates: pd.DataFrame) -> None:
    """(a) the champion's world-truth value, the references as steps, the gate decisions."""
    x = weeks["week"].to_numpy()
    for column, colour, style, label in (
        ("optimum_value", _OPTIMUM, "--", "full-information optimum (knows the hidden stage)"),
        ("world_twin_value", _WORLD_TWIN, "-.", "world twin (planner on the world's parameters)"),
        ("business_as_usual_value", _BAU, "--", "business as usual (journey map)"),
    ):
        ax.step(x, weeks[column], where="mid", color=colour, linestyle=style, label=label)
    ax.plot(
        x,
        weeks["champion_value"],
        color=_CHAMPION,
        marker="o",
        linewidth=2,
        label="champion after the week's gate",
        zorder=4,
    )
    _version(ax, x[0], float(weeks["champion_value"].iloc[0]), weeks["champion"].iloc[0])
    if not gates.empty:
        _gate_markers(ax, weeks, gates)
    ax.set_ylabel("true value per customer\n(discounted, world's truth)")
    ax.set_title("(a) The champion's value in the world's truth, against the yardsticks")


def _gate_markers(ax: Axes, weeks: pd.DataFrame, gates: pd.DataFrame) -> None:
    """Each challenger at its gate's week and its own true value: filled when promoted, hollow
    when refused; red when the decision was wrong in the world's truth. The legend's markers
    are black proxies, so their colour does not depend on the first decision's."""
    for promoted in (True, False):
        chosen = gates[gates["promoted"] == promoted]
        if chosen.empty:
            continue
        challenger = chosen["challenger_value"].to_numpy()
        wrong = (chosen["false_promotion"] | chosen["held_back_better"]).to_numpy(bool)
        colours = [_WRONG if w else _RIGHT for w in wrong]
        ax.scatter(
            chosen["week"],
            challenger,
            s=90,
            marker="D",
            facecolors=colours if promoted else "none",
            edgecolors=colours,
            linewidths=1.8,
            zorder=5,
        )
        verb = "promoted" if promoted else "refused"
        ax.plot(
            [],
            [],
            marker="D",
            linestyle="none",
            markersize=8,
            color=_RIGHT,
            markerfacecolor=_RIGHT if promoted else "none",
            label=f"challenger {verb}, at its true value",
        )
        if promoted:
            for week, value, label in zip(
                chosen["week"], challenger, chosen["challenger"], strict=True
            ):
                _version(ax, week, value, label)
    if (gates["false_promotion"] | gates["held_back_better"]).any():
        ax.plot(
            [],
            [],
            marker="D",
            linestyle="none",
            markersize=8,
            color=_WRONG,
            label="gate wrong in the world's truth",
        )


def _version(ax: Axes, week: float, value: float, label: str) -> None:
    """The champion's model version, written above its point."""
    ax.annotate(
        str(label),
        (week, value),
        xytext=(0, 9),
        textcoords="offset points",
        ha="center",
        fontsize=8,
        color=_CHAMPION,
    )


def _realized_panel(ax: Axes, weeks: pd.DataFrame) -> None:
    """(b) the week's realized reward per customer, treated vs holdout."""
    x = weeks["week"].to_numpy()
    ax.plot(x, weeks["treated_value"], color=_TREATED, marker="o", label="treated (the system)")
    ax.plot(
        x,
        weeks["holdout_value"],
        color=_HOLDOUT,
        marker="s",
        linestyle="--",
        label="holdout (business as usual)",
    )
    ax.set_ylabel("value realized\nper customer that week")
    ax.set_title("(b) What customers brought in each week: treated vs holdout")
    ax.legend(loc="best", fontsize=8)


def _lift_panel(ax: Axes, weeks: pd.DataFrame) -> None:
    """(c) the cumulative lift estimate and its band against the shadow cohorts' true lift."""
    x = weeks["week"].to_numpy()
    covered = weeks.get("lift_covered", pd.Series(True, index=weeks.index)).to_numpy(bool)
    ax.fill_between(
        x,
        weeks["lift_lower"],
        weeks["lift_upper"],
        color=_LIFT,
        alpha=0.2,
        linewidth=0,
        label="95% interval",
    )
    ax.plot(x, weeks["lift"], color=_LIFT, marker="o", label="estimated lift (treated - holdout)")
    ax.plot(
        x,
        weeks["true_lift"],
        color=_TRUTH,
        linestyle="--",
        marker="x",
        label=f"true lift (shadow cohorts); covered {covered.sum()}/{covered.size} weeks",
    )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("cumulative lift\nper customer")
    ax.set_title("(c) Lift since the loop began: estimate and 95% interval vs the truth")
    ax.legend(loc="best", fontsize=8)


def _headline(report: LoopReport) -> str:
    """The figure's title: the loop's headline numbers in words."""
    summary = report.summary
    parts = [f"Closed loop, seed {report.seed}"]
    share = summary.get("week12_share")
    if share is not None:
        last = int(report.weeks["week"].iloc[-1])
        parts.append(f"week {last}: {share:.0%} of the world twin's gap over business as usual")
    if "gate_decisions" in summary:
        parts.append(
            f"{summary['gate_decisions']} gate decisions, {summary.get('promotions', 0)} "
            f"promoted, {summary.get('false_promotions', 0)} false"
        )
    return "\n".join([parts[0], "; ".join(parts[1:])]) if len(parts) > 1 else parts[0]
