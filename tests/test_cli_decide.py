"""``nba decide``: a store's customers decided to parquet, JSON summary, one-line refusals."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest

from nba.scenarios import load_scenario
from nba.serving.by_id import decide_from_store
from nba.serving.decision_log import DecisionLog
from nba.serving.scorer import PolicyScorer
from nba.store import CustomerStore
from nba.store.synthetic import START, synthetic_events
from tests.cli_runner import run_cli

NOW = START + pd.Timedelta(days=31)
AS_OF = "2025-02-02T09:00:00Z"


def _store(path: Path, scenario: str = "retail") -> Path:
    twin = load_scenario(scenario)
    with CustomerStore.create(path, twin) as store:
        store.ingest(synthetic_events(twin, 400, 40, days=30, seed=5), now=NOW)
    return path


def test_round_trip_parquet_json_and_log(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store(tmp_path / "customers.db")
    out, log = tmp_path / "decisions.parquet", tmp_path / "decisions.db"
    args = ["decide", "--store", str(db), "-m", str(export_dir), "--as-of", AS_OF]
    code, text, err = run_cli(capsys, *args, "--out", str(out), "--log", str(log), "--json")
    assert code == 0, err
    summary = json.loads(text)
    decisions = pd.read_parquet(out)
    assert summary["customers"] == len(decisions) == 40
    assert sum(summary["actions"].values()) == 40
    assert {"persona", "persona_probability", "stage", "stage_probability"} <= set(decisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scorer = PolicyScorer.load(export_dir)
    with CustomerStore.open(db) as store:
        expected = decide_from_store(scorer, store, as_of=pd.Timestamp(AS_OF))
    pd.testing.assert_frame_equal(decisions, expected, check_dtype=False)
    code, _, err = run_cli(capsys, *args, "--out", str(out), "--log", str(log), "--json")
    assert code == 0, err
    with DecisionLog(log) as held:
        assert len(held.read()) == 40  # the same run is not logged twice
    ids = tmp_path / "ids.csv"
    pd.DataFrame({"customer_id": ["c3", "c1"]}).to_csv(ids, index=False)
    code, text, err = run_cli(capsys, *args, "--out", str(out), "--customers", str(ids))
    assert code == 0, err
    assert list(pd.read_parquet(out)["customer_id"]) == ["c3", "c1"]


def test_refusals_are_one_line(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "d.parquet")
    base = ["-m", str(export_dir), "--as-of", AS_OF, "--out", out]
    code, _, err = run_cli(capsys, "decide", "--store", str(tmp_path / "none.db"), *base)
    assert code == 2 and "--store" in err and len(err.strip().splitlines()) == 1
    other = _store(tmp_path / "levels.db", "retail_levels")
    code, _, err = run_cli(capsys, "decide", "--store", str(other), *base)
    assert code == 2 and "retail_levels" in err and "another twin" in err
    assert len(err.strip().splitlines()) == 1
    db = _store(tmp_path / "customers.db")
    ids = tmp_path / "ids.csv"
    pd.DataFrame({"customer_id": ["c1", "ghost-7"]}).to_csv(ids, index=False)
    code, _, err = run_cli(capsys, "decide", "--store", str(db), *base, "--customers", str(ids))
    assert code == 2 and "ghost-7" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "decide", *base)
    assert code == 2 and "--store: needed (or --requests" in err
    code, _, err = run_cli(capsys, "decide", "--store", str(db), *base, "--engine", "ray")
    assert code == 2 and "--engine: ray decides --requests partitions" in err
    code, _, err = run_cli(capsys, "decide", "--requests", str(tmp_path / "none"), *base)
    assert code == 2 and "--requests: no Parquet file or folder" in err
    assert not Path(out).exists()


def test_holdout_options_hold_out_the_same_customers_and_log_them(
    tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nba.holdout import Holdout
    from nba.serving.decision_log import read_decision_log

    db = _store(tmp_path / "customers.db")
    out, log = tmp_path / "decisions.parquet", tmp_path / "decisions.db"
    args = ["decide", "--store", str(db), "-m", str(export_dir), "--as-of", AS_OF, "--out"]
    held = ["--holdout-share", "0.4", "--holdout-salt", "pilot"]
    code, _, err = run_cli(capsys, *args, str(out), *held, "--log", str(log))
    assert code == 0, err
    decisions = pd.read_parquet(out)
    member = Holdout(0.4, "pilot").assign(decisions["customer_id"])
    assert (decisions["holdout"].to_numpy() == member).all() and member.any()
    assert (decisions.loc[member, "action_name"] == "no_action").all()
    assert (read_decision_log(log).holdout == member).all()
    for bad, field in (
        (["--holdout-share", "0.4"], "--holdout-salt"),
        (["--holdout-salt", "pilot"], "--holdout-share"),
        ([*held[:1], "0.9", *held[2:]], "--holdout-share"),
        ([*held, "--holdout-control", "coin"], "--holdout-control"),
    ):
        code, _, err = run_cli(capsys, *args, str(out), *bad)
        assert code == 2 and err.strip().splitlines()[-1].startswith(f"error: {field}:"), err
