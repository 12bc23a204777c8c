"""Exports from before the ``days_left`` feature block still load, serve and evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nba.evaluation import evaluate_policies
from nba.features import FeatureBuilder
from nba.serving.scorer import PolicyScorer
from tests.serving.conftest import population


def _legacy_copy(export_dir: Path, folder: Path) -> Path:
    """The export as it was written before the block: first layer without its last inputs."""
    spec = json.loads((export_dir / "policy.json").read_text())
    with np.load(export_dir / "weights.npz", allow_pickle=False) as archive:
        weights = {name: archive[name] for name in archive.files}
    scorer = PolicyScorer.load(export_dir)
    legacy = FeatureBuilder(scorer.arrays, final_days=0)
    for network in spec["networks"].values():
        if network:
            first = network[0]["weight"]
            weights[first] = weights[first][:, : legacy.size]
    spec["features"] = legacy.names
    folder.mkdir()
    np.savez(folder / "weights.npz", **weights)
    (folder / "policy.json").write_text(json.dumps(spec))
    return folder


def test_a_legacy_export_scores_and_evaluates_as_before(export_dir: Path, tmp_path: Path) -> None:
    legacy = PolicyScorer.load(_legacy_copy(export_dir, tmp_path / "legacy"))
    current = PolicyScorer.load(export_dir)
    assert legacy.features.size == current.features.size - current.features.final_days
    customers = population(500, seed=3)  # live requests plan on day 0: the block is all zero
    a, b = legacy.score_batch(customers), current.score_batch(customers)
    np.testing.assert_array_equal(a["action"].to_numpy(), b["action"].to_numpy())
    report = evaluate_policies("retail", [legacy.as_policy("legacy")], n_customers=200)
    assert np.isfinite(report.table.set_index("policy").loc["legacy", "value"])
