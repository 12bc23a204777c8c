"""Figures a reviewer can trust: shared colour scales, no hidden lines, empty cells marked,
and a Sankey page that opens offline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from nba.evaluation import Rollout, evaluate_policies
from nba.scenario import Scenario
from nba.training import figures


@pytest.fixture(scope="module")
def rollouts(retail: Scenario) -> dict[str, Rollout]:
    report = evaluate_policies(retail, ["myopic", "journey_map"], n_customers=600, seed=1)
    return report.rollouts


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the functions draw, kept for inspection."""
    kept: list[Figure] = []

    class Recorded(Figure):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            kept.append(self)

    monkeypatch.setattr(figures, "Figure", Recorded)
    return kept


def _images(figure: Figure) -> list[AxesImage]:
    return [image for ax in figure.axes for image in ax.images]


def _hatched(figure: Figure) -> int:
    return sum(1 for ax in figure.axes for p in ax.patches if p.get_hatch() == figures.EMPTY_HATCH)


def test_flow_matrices_share_one_colour_scale_and_bar(
    retail: Scenario, rollouts: dict[str, Rollout], drawn: list[Figure], tmp_path: Path
) -> None:
    compared = {name: rollouts[name] for name in ("myopic", "journey_map", "optimal")}
    figures.flow_matrices(retail, compared, tmp_path / "flows.png")
    (figure,) = drawn
    images = _images(figure)
    assert len(images) == 3
    assert len({image.get_clim() for image in images}) == 1  # one scale for every panel
    busiest = max(float(np.ma.max(image.get_array())) for image in images)
    assert images[0].get_clim() == (0.0, pytest.approx(busiest))
    colourbars = [ax for ax in figure.axes if ax.get_ylabel().startswith("moves per 1,000")]
    assert len(colourbars) == 1
    # the diagonal (staying put) is hatched, never coloured as a number
    assert all(np.ma.getmaskarray(image.get_array()).diagonal().all() for image in images)
    assert _hatched(figure) >= 3 * len(retail.stage_names)
    assert (tmp_path / "flows.png").stat().st_size > 0


def test_action_mix_marks_cells_without_customers_as_empty(
    retail: Scenario, rollouts: dict[str, Rollout], drawn: list[Figure], tmp_path: Path
) -> None:
    learned = rollouts["myopic"]
    empty_mix = learned.action_mix.copy()
    empty_mix[0, 0, :] = 0  # nobody of the first persona in the first stage
    nobody = Rollout(**{**learned.__dict__, "action_mix": empty_mix})
    figures.action_mix(
        retail, {"learned": nobody, "optimal": rollouts["optimal"]}, tmp_path / "m.png"
    )
    (figure,) = drawn
    learned_image, optimal_image = _images(figure)
    assert learned_image.get_clim() == optimal_image.get_clim() == (0.0, 1.0)
    mask = np.ma.getmaskarray(learned_image.get_array())
    assert mask[0].all()  # the empty row is masked, not drawn as zero shares
    assert not mask[:, 0].all()  # rows with decisions keep their "no action" share
    assert _hatched(figure) >= len(retail.action_names)
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert "n/a: no customers" in texts
    assert sum(ax.get_ylabel() == "share of decisions" for ax in figure.axes) == 1


def test_learning_curve_keeps_coinciding_baselines_visible(
    drawn: list[Figure], tmp_path: Path
) -> None:
    history = [
        {"timesteps": 0.0, "share_of_optimum": 0.05},
        {"timesteps": 1e6, "share_of_optimum": 0.6},
    ]
    figures.learning_curve(history, {"myopic": 0.180, "journey_map": 0.181}, tmp_path / "c.png")
    (figure,) = drawn
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    myopic, journey = lines["myopic 0.180"], lines["journey_map 0.181 (overlaps the line above)"]
    assert myopic.get_color() != journey.get_color()
    # same dash pattern, shifted by one dash: each fills the other's gaps
    (offset_a, dashes_a), (offset_b, dashes_b) = myopic._dash_pattern, journey._dash_pattern
    assert offset_a != offset_b and dashes_a == dashes_b
    assert lines["learned policy"].get_zorder() > myopic.get_zorder()


def test_sankey_page_works_offline(
    retail: Scenario, rollouts: dict[str, Rollout], tmp_path: Path
) -> None:
    compared = {name: rollouts[name] for name in ("myopic", "journey_map", "optimal")}
    path = figures.journey_flow(retail, compared, tmp_path / "flow.html")
    html = path.read_text("utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", html)  # nothing fetched: no CDN, no files
    assert "Plotly.newPlot" in html and len(html) < 8_000_000  # plotly.js inline, ~4.7 MB
    for name in compared:  # each diagram is titled with its policy and its volume of moves
        assert re.search(rf"{name}[^:]{{0,30}}: [0-9.]+ moves per 1,000 customer-days", html)
