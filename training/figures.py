"""Figures for a run: learning curve, journey flows (learned policy vs journey map), action mix.

Each function returns what it wrote; the training run logs the files as MLflow artifacts
(PNG for a quick look, HTML for the interactive Sankey).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
import plotly.graph_objects as go

from nba.evaluation import Rollout
from nba.io import write_text_atomic
from nba.scenario import Scenario


def learning_curve(
    history: Sequence[dict[str, float]],
    references: dict[str, float],
    path: Path,
    target: float | None = 0.95,
) -> Path:
    """Exact share of the optimum against environment steps, with baseline levels."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    steps = [h["timesteps"] for h in history]
    ax.plot(steps, [h["share_of_optimum"] for h in history], marker="o", label="learned policy")
    for i, (name, share) in enumerate(references.items()):
        ax.axhline(share, linestyle="--", color=f"C{i + 1}", label=name)
    if target is not None:
        ax.axhline(target, color="black", linewidth=0.8, label=f"target {target:.0%}")
    ax.set_xlabel("environment steps (customer-days)")
    ax.set_ylabel("share of gap no action -> optimum")
    ax.set_title("Learning curve (exact evaluation)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def journey_flow(
    scenario: Scenario, rollouts: dict[str, Rollout], path: Path, min_share: float = 0.002
) -> Path:
    """Stage-to-stage movements (excluding staying put) as Sankey diagrams, one per policy."""
    stages = scenario.stage_names
    k = len(stages)
    figure = go.Figure()
    n = len(rollouts)
    for i, (name, rollout) in enumerate(rollouts.items()):
        flows = rollout.flows.astype(float)
        np.fill_diagonal(flows, 0.0)
        total = flows.sum() or 1.0
        source, target = np.nonzero(flows / total >= min_share)
        figure.add_trace(
            go.Sankey(
                domain={"x": [i / n + 0.01, (i + 1) / n - 0.01], "y": [0.0, 0.92]},
                node={"label": [f"{s} (from)" for s in stages] + [f"{s} (to)" for s in stages]},
                link={
                    "source": source.tolist(),
                    "target": (target + k).tolist(),
                    "value": flows[source, target].tolist(),
                },
                name=name,
            )
        )
        figure.add_annotation(
            x=(i + 0.5) / n,
            y=1.0,
            text=f"<b>{name}</b>",
            showarrow=False,
            xref="paper",
            yref="paper",
        )
    figure.update_layout(
        title="Journey flows over the horizon: customer moves between stages",
        height=520,
        width=520 * n,
    )
    write_text_atomic(path, figure.to_html(include_plotlyjs="cdn", full_html=True))
    return path


def flow_matrices(scenario: Scenario, rollouts: dict[str, Rollout], path: Path) -> Path:
    """Static companion of the Sankey: row-normalised stage transition shares per policy."""
    stages = scenario.stage_names
    fig, axes = plt.subplots(1, len(rollouts), figsize=(4.6 * len(rollouts), 4.2), squeeze=False)
    for ax, (name, rollout) in zip(axes[0], rollouts.items(), strict=True):
        flows = rollout.flows.astype(float)
        np.fill_diagonal(flows, 0.0)
        shares = flows / max(rollout.flows.sum(), 1) * 1000.0
        image = ax.imshow(shares, cmap="Blues")
        ax.set_xticks(range(len(stages)), stages, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(stages)), stages, fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("to")
        ax.set_ylabel("from")
        fig.colorbar(image, ax=ax, fraction=0.046, label="moves per 1,000 customer-days")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def action_mix(scenario: Scenario, rollout: Rollout, path: Path) -> Path:
    """Share of each action among the decisions made per persona x stage (churned omitted)."""
    stages = [s for s in scenario.stage_names if s != scenario.churn_stage]
    keep = [scenario.stage_names.index(s) for s in stages]
    counts = rollout.action_mix[:, keep, :].reshape(-1, rollout.action_mix.shape[2]).astype(float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    labels = [f"{p} / {s}" for p in scenario.persona_names for s in stages]
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * shares.shape[1], 0.9 + 0.28 * len(labels)))
    image = ax.imshow(shares, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(
        range(shares.shape[1]), scenario.action_names, rotation=60, ha="right", fontsize=7
    )
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_title(f"Action mix of '{rollout.policy}' by persona and stage", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03, label="share of decisions")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
