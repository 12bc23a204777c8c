"""Figures for a run: learning curve, journey flows (learned policy vs journey map), action mix.

Each function returns what it wrote; the training run logs the files as MLflow artifacts
(PNG for a quick look, HTML for the interactive Sankey). Panels that are compared share one
colour scale and one colour bar; a cell with no customers behind it is hatched and marked
"n/a" rather than coloured as a zero; the Sankey page carries plotly.js inside it, so it opens
without a network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, to_rgb
from matplotlib.figure import Figure  # no pyplot: no global backend, nothing to close
from matplotlib.image import AxesImage
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter

from nba.evaluation import Rollout
from nba.io import write_text_atomic
from nba.progress import count
from nba.scenario import Scenario

# Reference lines closer than this on the learning curve are drawn as interleaved dashes and
# labelled as overlapping, so neither hides the other.
OVERLAP = 0.01
EMPTY_HATCH = "////"
EMPTY_COLOUR = "0.85"


def learning_curve(
    history: Sequence[dict[str, float]],
    references: dict[str, float],
    path: Path,
    target: float | None = 0.95,
) -> Path:
    """Share of the optimum against environment steps, with baseline levels.

    Exact for a full-state policy; a policy of beliefs is scored on a cohort (the history's
    ``exact`` flag), and its title says so. Each reference has its own colour and dash
    pattern, and its value in the legend; two that (nearly) coincide get dashes offset against
    each other, so both stay visible.
    """
    fig = Figure(figsize=(7.5, 4.4))
    ax = fig.subplots()
    steps = [h["timesteps"] for h in history]
    ax.plot(
        steps,
        [h["share_of_optimum"] for h in history],
        marker="o",
        markersize=4,
        linewidth=2,
        color="C0",
        label="learned policy",
        zorder=4,
    )
    placed: list[float] = []
    for i, (name, share) in enumerate(references.items()):
        overlaps = [p for p in placed if abs(p - share) < OVERLAP]
        # dash pattern 5 on / 5 off; a coinciding line starts 5 later and fills the gaps
        dashes = (5.0 * (len(overlaps) % 2), (5.0, 5.0 * (1 + len(overlaps) // 2)))
        label = f"{name} {share:.3f}" + (" (overlaps the line above)" if overlaps else "")
        ax.axhline(share, linestyle=dashes, color=f"C{i + 1}", linewidth=1.8, label=label, zorder=3)
        placed.append(share)
    exact = all(h.get("exact", 1.0) for h in history)
    if target is not None and exact:  # the 95% goal is the full-state learner's
        ax.axhline(
            target, color="black", linestyle=":", linewidth=1.0, label=f"target {target:.0%}"
        )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: count(x)))
    ax.set_xlabel("environment steps (customer-days)")
    ax.set_ylabel("share of the gap no action → optimum")
    how = "exact evaluation" if exact else "on beliefs, cohort evaluation"
    ax.set_title(f"Learning curve ({how})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def journey_flow(
    scenario: Scenario, rollouts: dict[str, Rollout], path: Path, min_share: float = 0.002
) -> Path:
    """Stage-to-stage movements (excluding staying put) as Sankey diagrams, one per policy.

    A stage has one colour in every diagram, its outgoing links a pale shade of it; hovering a
    link shows the moves per 1,000 customer-days. The page embeds plotly.js (about 4.7 MB) so
    that it renders offline, e.g. downloaded from the MLflow UI.
    """
    stages = scenario.stage_names
    k = len(stages)
    colours = [to_rgb(colormaps["tab10"](i % 10)) for i in range(k)]
    node_colours = [_rgba(c, 0.9) for c in colours] * 2
    figure = go.Figure()
    n = len(rollouts)
    for i, (name, rollout) in enumerate(rollouts.items()):
        flows = rollout.flows.astype(float)
        days = max(float(rollout.flows.sum()), 1.0)
        np.fill_diagonal(flows, 0.0)
        total = flows.sum() or 1.0
        source, target = np.nonzero(flows / total >= min_share)
        figure.add_trace(
            go.Sankey(
                domain={"x": [i / n + 0.01, (i + 1) / n - 0.01], "y": [0.0, 0.92]},
                node={
                    "label": [f"{s} (from)" for s in stages] + [f"{s} (to)" for s in stages],
                    "color": node_colours,
                },
                link={
                    "source": source.tolist(),
                    "target": (target + k).tolist(),
                    "value": flows[source, target].tolist(),
                    "color": [_rgba(colours[s], 0.35) for s in source],
                    "customdata": (flows[source, target] / days * 1000.0).round(2).tolist(),
                    "hovertemplate": "%{source.label} → %{target.label}: %{value:,.0f} moves"
                    " (%{customdata} per 1,000 customer-days)<extra></extra>",
                },
                name=name,
            )
        )
        figure.add_annotation(
            x=(i + 0.5) / n,
            y=1.0,
            text=f"<b>{name}</b>: {flows.sum() / days * 1000.0:.1f} moves per 1,000 customer-days",
            showarrow=False,
            xref="paper",
            yref="paper",
        )
    figure.update_layout(
        title="Journey flows over the horizon: customer moves between stages",
        height=520,
        width=520 * n,
    )
    write_text_atomic(path, figure.to_html(include_plotlyjs=True, full_html=True))
    return path


def flow_matrices(scenario: Scenario, rollouts: dict[str, Rollout], path: Path) -> Path:
    """Static companion of the Sankey: moves from stage to stage per 1,000 customer-days.

    One colour scale for all panels. Staying put (the diagonal) is not a move and is hatched;
    a stage no customer was in is hatched and marked "n/a"; a move that never happened is
    blank; every other cell carries its number.
    """
    stages = scenario.stage_names
    k = len(stages)
    rates = {}
    for name, rollout in rollouts.items():
        flows = rollout.flows.astype(float)
        moves = flows.copy()
        np.fill_diagonal(moves, 0.0)
        rates[name] = moves / max(float(flows.sum()), 1.0) * 1000.0
    vmax = max((float(r.max()) for r in rates.values()), default=1.0) or 1.0
    cmap = _with_blank_bad("Blues")
    fig = Figure(figsize=(4.2 * len(rollouts) + 1.2, 4.6))
    axes = fig.subplots(1, len(rollouts), squeeze=False)
    image = None
    for ax, (name, rollout) in zip(axes[0], rollouts.items(), strict=True):
        rate = rates[name]
        occupied = rollout.flows.sum(axis=1) > 0
        shown = np.ma.masked_where(rate <= 0, rate)
        image = ax.imshow(shown, cmap=cmap, vmin=0.0, vmax=vmax)
        for i in range(k):
            for j in range(k):
                if not occupied[i]:
                    _hatch(ax, j, i, "n/a" if j == 0 else "")
                elif i == j:
                    _hatch(ax, j, i, "")
                elif rate[i, j] > 0:
                    dark = rate[i, j] > 0.55 * vmax
                    ax.text(
                        j,
                        i,
                        f"{rate[i, j]:.2f}" if rate[i, j] < 10 else f"{rate[i, j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=6.5,
                        color="white" if dark else "black",
                    )
        ax.set_xticks(range(k), stages, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), stages, fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("to")
        ax.set_ylabel("from")
    _shared_colourbar(fig, axes[0], image, "moves per 1,000 customer-days")
    fig.legend(
        handles=[
            Patch(facecolor="white", edgecolor=EMPTY_COLOUR, hatch=EMPTY_HATCH, label="not a move"),
            Patch(facecolor="white", edgecolor="0.6", label="no such move"),
        ],
        loc="lower left",
        fontsize=7,
        ncol=2,
        frameon=False,
    )
    fig.savefig(path, dpi=120)
    return path


def action_mix(scenario: Scenario, rollouts: Rollout | Mapping[str, Rollout], path: Path) -> Path:
    """Share of each action among the decisions made per persona x stage (churned omitted).

    Several policies are drawn side by side on one colour scale (0 to 1, one colour bar); an
    action never chosen is blank; a persona x stage that no customer reached under a policy is
    hatched and marked "n/a".
    """
    compared = {rollouts.policy: rollouts} if isinstance(rollouts, Rollout) else dict(rollouts)
    stages = [s for s in scenario.stage_names if s != scenario.churn_stage]
    keep = [scenario.stage_names.index(s) for s in stages]
    labels = [f"{p} / {s}" for p in scenario.persona_names for s in stages]
    n_actions = len(scenario.action_names)
    cmap = _with_blank_bad("YlGnBu")
    width = 2.6 + (0.42 * n_actions + 0.4) * len(compared)
    fig = Figure(figsize=(width, 1.4 + 0.26 * len(labels)))
    axes = fig.subplots(
        1,
        len(compared),
        squeeze=False,
        sharey=True,
    )
    image = None
    for ax, (name, rollout) in zip(axes[0], compared.items(), strict=True):
        counts = rollout.action_mix[:, keep, :].reshape(-1, n_actions).astype(float)
        decided = counts.sum(axis=1, keepdims=True)
        shares = counts / np.maximum(decided, 1.0)
        shares = np.ma.masked_where(shares <= 0, shares)  # never chosen: blank
        image = ax.imshow(shares, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        for row in np.flatnonzero(decided[:, 0] == 0):
            for column in range(n_actions):
                _hatch(ax, column, row, "")
            ax.text(
                (n_actions - 1) / 2, row, "n/a: no customers", ha="center", va="center", fontsize=6
            )
        ax.set_xticks(range(n_actions), scenario.action_names, rotation=60, ha="right", fontsize=7)
        ax.set_title(name, fontsize=10)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=7)
    fig.suptitle("Action mix by persona and stage (share of decisions)", fontsize=10)
    _shared_colourbar(fig, axes[0], image, "share of decisions")
    fig.savefig(path, dpi=120)
    return path


def _with_blank_bad(name: str) -> Colormap:
    """``name`` with masked cells left white (nothing to colour), not painted as a value."""
    return colormaps[name].with_extremes(bad="white")


def _hatch(ax: Axes, x: int, y: int, text: str) -> None:
    """Cover cell (x, y) with a hatch: there is no number to show there."""
    ax.add_patch(
        Rectangle(
            (x - 0.5, y - 0.5),
            1.0,
            1.0,
            facecolor="white",
            edgecolor=EMPTY_COLOUR,
            hatch=EMPTY_HATCH,
            linewidth=0.0,
        )
    )
    if text:
        ax.text(x, y, text, ha="center", va="center", fontsize=6, color="0.35")


def _shared_colourbar(
    fig: Figure, axes: Sequence[Axes], image: AxesImage | None, label: str
) -> None:
    """One colour bar for panels drawn on the same scale, to the right of all of them."""
    fig.tight_layout(rect=(0.0, 0.04, 0.93, 1.0))
    if image is None:
        return
    top = max(ax.get_position().y1 for ax in axes)
    bottom = min(ax.get_position().y0 for ax in axes)
    bar = fig.add_axes((0.945, bottom, 0.012, top - bottom))
    fig.colorbar(image, cax=bar, label=label)


def _rgba(colour: tuple[float, float, float], alpha: float) -> str:
    red, green, blue = (round(255 * c) for c in colour)
    return f"rgba({red},{green},{blue},{alpha})"
