"""``nba lift`` end to end: a decision log with holdout rows, events from the twin."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from nba.cli.entry import app
from nba.serving.decision_log import DecisionLog
from tests.test_lift import simulate

runner = CliRunner()


def _files(folder: Path) -> tuple[Path, Path]:
    decisions, events, _, held = simulate(1500, 10, seed=9)
    n = len(decisions)
    log = folder / "decisions.db"
    with DecisionLog(log) as writer:
        writer.append(
            customer_id=decisions["customer_id"].to_numpy(),
            decided_at=pd.Timestamp("2026-12-01T06:00:00Z"),
            model_version="v1",
            actions=np.zeros(n, dtype=np.int64),
            action_names=["none"] * n,
            propensities=np.ones(n),
            explored=np.zeros(n, dtype=bool),
            features=np.zeros((n, 2)),
            probabilities=np.tile([1.0, 0.0], (n, 1)),
            holdout=held,
        )
    path = folder / "events.parquet"
    events.to_parquet(path)
    return log, path


def test_lift_json_csv_and_period(tmp_path: Path) -> None:
    log, events = _files(tmp_path)
    out = tmp_path / "lift.csv"
    args = ["lift", "--log", str(log), "--outcomes", str(events), "--scenario", "retail"]
    result = runner.invoke(app, [*args, "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [r["kpi"] for r in rows] == ["value", "revenue", "purchases", "conversion", "contacts"]
    assert rows[1]["difference_lower"] > 0  # the myopic policy lifts revenue
    assert pd.read_csv(out)["kpi"].tolist() == [r["kpi"] for r in rows]
    short = runner.invoke(app, [*args, "--json", "--to", "2026-12-02", "--kpis", "purchases"])
    assert short.exit_code == 0, short.output
    assert json.loads(short.output)["rows"][0]["treated_mean"] < rows[2]["treated_mean"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "Lift against the holdout" in table.output


def test_lift_errors_are_one_line(tmp_path: Path) -> None:
    log, events = _files(tmp_path)
    args = ["lift", "--log", str(log), "--outcomes", str(events)]
    for extra, message in (
        (["--from", "2027-01-01"], "decisions: none in the period"),
        (["--by", "persona"], "--by: no column 'persona'"),
        (["--kpis", "value"], "value needs a scenario"),
    ):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code != 0
        assert message in str(result.exception) or message in result.output, result.output
    missing = runner.invoke(app, ["lift", "--log", str(tmp_path / "no.db"), "--outcomes", "x.csv"])
    assert missing.exit_code != 0


def test_lift_logs_table_and_figure_to_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    log, events = _files(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = runner.invoke(
        app,
        [
            "lift", "--log", str(log), "--outcomes", str(events), "--scenario", "retail",
            "--mlflow", "--experiment", "lift-test", "--tracking-uri", uri, "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout[result.stdout.index("{") :])["run_id"]
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.metrics["revenue_difference"] > 0
    names = {f.path for f in client.list_artifacts(run_id, "lift")}
    assert {"lift/lift.csv", "lift/lift.png", "lift/cumulative_lift.csv"} <= names
