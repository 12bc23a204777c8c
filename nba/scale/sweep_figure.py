"""A sweep's figure: every trial's learning curve, so a reviewer sees where ASHA cut each one.

Completed trials are solid lines, trials stopped early dashed and ending where they were
stopped, failed ones dotted; the best completed trial is drawn thickest. Matplotlib's Figure
API without pyplot: no global backend, nothing to close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from nba.progress import count

__all__ = ["sweep_figure"]

_STYLE = {"completed": "-", "stopped early": "--", "failed": ":"}


def sweep_figure(
    curves: Mapping[int, tuple[Sequence[float], Sequence[float], str]],
    path: Path,
    best: int | None = None,
) -> Path:
    """Plot ``{trial: (steps, values, status)}`` to ``path`` (PNG), trial ``best`` thickest."""
    fig = Figure(figsize=(7.5, 4.4))
    ax = fig.subplots()
    for i, (trial, (steps, values, status)) in enumerate(sorted(curves.items())):
        label = f"trial {trial}: {status}"
        if trial == best:
            label += " (best)"
        ax.plot(
            steps,
            values,
            linestyle=_STYLE.get(status, "-"),
            marker="o",
            markersize=3,
            linewidth=3.0 if trial == best else 1.4,
            color=f"C{i % 10}",
            label=label,
            zorder=4 if trial == best else 3,
        )
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: count(x)))
    ax.set_xlabel("environment steps (customer-days)")
    ax.set_ylabel("value per customer (evaluation)")
    ax.set_title(f"Sweep: {len(curves)} trials (dashed: stopped early by ASHA)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
