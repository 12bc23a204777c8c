"""The closed loop: reproducible, every gate decision what its evidence says and judged in
truth, holdout customers decided by business as usual, the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nba.cli.entry import main
from nba.loop.closed_loop import LoopReport, run_loop
from nba.loop.populations import Deciders, Population, View, business_as_usual, play_day
from nba.loop.world import WorldSpec, load_world, world_scenario, wrong_twin

TINY = {
    "customers": 600,
    "shadow_customers": 400,
    "eval_customers": 300,
    "burn_in_weeks": 1,
    "weeks": 3,
    "min_sends": 20,
    "drift_threshold": 1.0,  # tiny cohorts: refit (and so test a challenger) most weeks
    "change": {"week": 2, "kind": "channel_response", "channel": "sms", "factor": 0.5},
}


@pytest.fixture(scope="module")
def spec() -> WorldSpec:
    return load_world(TINY)


@pytest.fixture(scope="module")
def report(spec: WorldSpec) -> LoopReport:
    return run_loop(spec, seed=3)


def test_the_same_seed_gives_the_same_loop(spec: WorldSpec, report: LoopReport) -> None:
    again = run_loop(spec, seed=3)
    pd.testing.assert_frame_equal(report.weeks, again.weeks)
    pd.testing.assert_frame_equal(report.gates, again.gates)
    other = run_loop(spec, seed=4)
    assert not np.allclose(other.weeks["treated_value"], report.weeks["treated_value"])


def test_each_week_reports_truth_and_the_world_changes_when_told(report: LoopReport) -> None:
    weeks = report.weeks
    assert weeks["week"].tolist() == [1, 2, 3]
    changed = "retail-world-changed"
    assert weeks["world"].tolist() == ["retail-world", changed, changed]
    gap = weeks["world_twin_value"] - weeks["business_as_usual_value"]
    share = (weeks["champion_value"] - weeks["business_as_usual_value"]) / gap
    np.testing.assert_allclose(weeks["share_of_world_twin"], share)
    np.testing.assert_allclose(weeks["regret"], weeks["optimum_value"] - weeks["champion_value"])
    assert (weeks["optimum_value"] > weeks["world_twin_value"]).all()  # full information wins
    assert report.summary["week12_share"] == weeks["share_of_world_twin"].iloc[-1]
    flagged = weeks.loc[(weeks["week"] >= 2) & weeks["drifted"], "week"]
    detected = report.summary["change_detected_after_weeks"]
    assert detected == (int(flagged.iloc[0]) - 2 if len(flagged) else None)


def test_every_gate_decision_follows_its_lower_bound_and_is_judged(report: LoopReport) -> None:
    gates = report.gates
    assert len(gates) >= 1, "the tiny loop's low threshold should test a challenger"
    assert (gates["promoted"] == (gates["lower"] > 0)).all()
    assert (gates["false_promotion"] == (gates["promoted"] & (gates["true_difference"] < 0))).all()
    held = ~gates["promoted"] & (gates["true_difference"] > 0)
    assert (gates["held_back_better"] == held).all()
    weeks = report.weeks.set_index("week")
    for gate in gates.itertuples():
        assert weeks.loc[gate.week, "gate"] in ("promoted", "refused")
        assert weeks.loc[gate.week, "challenger_tested"] == gate.challenger
        if gate.promoted:
            assert weeks.loc[gate.week, "champion"] == gate.champion  # decided this week...
            later = weeks.loc[weeks.index > gate.week, "champion"]
            assert later.empty or later.iloc[0] == gate.challenger  # ...champion from the next


def test_a_day_gives_holdout_customers_business_as_usual(spec: WorldSpec) -> None:
    world = world_scenario(spec)
    wrong, _ = wrong_twin(world, 0.3, np.random.default_rng(0))
    control = np.arange(300) % 3 == 0
    ids = np.char.add("c", np.arange(300).astype(str))
    population = Population.start("main", world, ids, 1, control, np.full(300, 0.9))
    view = View.of("v1", wrong)
    view.follow(population)
    bau, features = business_as_usual(world)
    deciders = Deciders(view, None, 0.5, 0.0, bau, features)
    state, day = population.world.state.copy(), population.world.day.copy()
    mask = population.world.action_masks()
    expected_bau, _ = bau.act(features.build(state, day), mask)  # type: ignore[attr-defined]
    expected_champion, _ = view.policy.act(view.observers["main"].build(state, day), mask)
    before = view.observers["main"].belief.copy()
    result = play_day(population, deciders, 1, np.random.default_rng(0), watch=(view,))
    np.testing.assert_array_equal(result.executed[control], expected_bau[control])
    np.testing.assert_array_equal(result.executed[~control], expected_champion[~control])
    assert len(population.log) == 1 and not np.allclose(view.observers["main"].belief, before)
    assert view.week_evidence(1).sums["sends"].sum() == 300


def test_the_cli_runs_a_loop_and_writes_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = tmp_path / "world.yaml"
    world.write_text(json.dumps({**TINY, "weeks": 2}))  # JSON is YAML
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["loop", "--world", str(world), "--out", str(tmp_path / "out"), "--json"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--mlflow", "--tracking-uri", uri])
    assert exited.value.code in (0, None)
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"week12_share", "recovery_weeks", "false_promotions", "lift_covered"} <= set(summary)
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["world"]["weeks"] == 2 and written["summary"]["seed"] == 0
    assert len(pd.read_csv(tmp_path / "out" / "weeks.csv")) == 2
    from mlflow.tracking import MlflowClient

    run = MlflowClient(uri).get_run(summary["mlflow_run_id"])
    assert run.data.metrics["share_of_world_twin"] == pytest.approx(summary["week12_share"])


def test_the_cli_refuses_a_bad_world_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = tmp_path / "world.yaml"
    world.write_text("twin_error: 3\n")
    with pytest.raises(SystemExit) as exited:
        main(["loop", "--world", str(world)])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 2 and "twin_error" in err and len(err.splitlines()) == 1


def test_a_longer_test_decides_after_its_weeks(spec: WorldSpec) -> None:
    report = run_loop(load_world({**TINY, "test_weeks": 2}), seed=3)
    weeks = report.weeks.set_index("week")
    assert len(report.gates) >= 1
    for gate in report.gates.itertuples():
        started = weeks.loc[weeks.index < gate.week, "challenger_next"].dropna()
        assert started.iloc[-1] == gate.challenger  # chosen before its two test weeks
        assert weeks.loc[gate.week - 1, "gate"] == "testing"
