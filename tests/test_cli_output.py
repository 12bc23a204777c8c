"""Output people can read: tables whole when piped, stdout pure JSON with --json, progress on
stderr."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from nba.cli import app, output
from tests.training.conftest import tiny_config_for

runner = CliRunner()  # not a terminal: what a pipe, a log or a notebook gets


def _emit_output(rows: list[dict[str, Any]], as_json: bool = False) -> str:
    @app.command("emit-probe", hidden=True)
    def probe() -> None:
        output.emit(rows, as_json, title="probe")

    try:
        result = runner.invoke(app, ["emit-probe"])
    finally:
        app.registered_commands.pop()
    assert result.exit_code == 0, result.output
    return result.stdout


def test_piped_tables_cut_no_cell_and_show_no_dict_repr() -> None:
    rows = [
        {
            "check": "inter_purchase_days",
            "n": 1500.0,
            "value": 0.016986542443063968,
            "tiny": 0.0000123,
            "low": None,
            "high": math.nan,
            "kpis": {"conversion": 0.5312, "contacts": 12_345},
            "arms": ["mens", "womens"],
            "passed": True,
            "method": "Kolmogorov-Smirnov distance between the gaps of purchase days, "
            "twin against the held-out customers, with a bootstrap noise level",
        }
    ] * 3
    text = _emit_output(rows)
    assert "…" not in text and "{'" not in text and "['" not in text
    assert "inter_purchase_days" in text and "1,500" in text and "1,500.000" not in text
    assert "0.017" in text and "1.2e-05" in text and "nan" not in text.lower()
    assert "conversion 0.531, contacts 12,345" in text and "mens, womens" in text
    assert "yes" in text and "Kolmogorov-Smirnov" in text


def test_emit_json_is_strict_json() -> None:
    text = _emit_output([{"a": math.nan, "b": 1.5}], as_json=True)
    assert json.loads(text) == [{"a": None, "b": 1.5}]
    assert "NaN" not in text


def test_evaluation_table_is_whole_when_piped() -> None:
    result = runner.invoke(app, ["evaluate", "--policies", "myopic", "--customers", "300"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout and "exact" not in result.stdout
    for column in ("share of optimum", "conversion", "violations", "myopic", "optimal"):
        assert column in result.stdout
    # progress on stderr, in lines a log can keep
    assert "evaluating policies on 300 customers: done in" in result.stderr


def test_train_json_stdout_is_only_json_whatever_mlflow_prints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MLflow prints "View run" links to stdout when it talks to a server; they go to stderr."""
    from nba.training import trainer

    table = pd.DataFrame([{"policy": "ppo", "value": 1.0, "share_of_optimum": math.nan}])

    def chatty_train(**_: Any) -> trainer.TrainResult:
        print("🏃 View run ppo-retail-seed0 at: http://127.0.0.1:5000/#/experiments/1/runs/x")
        return trainer.TrainResult("x", table, [], Path("."), "models:/m-1", None)

    monkeypatch.setattr(trainer, "train", chatty_train)
    result = runner.invoke(app, ["train", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["run_id"] == "x" and payload["table"][0]["share_of_optimum"] is None
    assert "View run" in result.stderr


def test_a_real_train_json_run_reports_progress_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tiny_config_for(tmp_path, "ppo")
    args = ["train", "--timesteps", "2048", "--eval-every", "1024", "--eval-customers", "200"]
    result = runner.invoke(app, [*args, "--config", str(config), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert {row["policy"] for row in payload["table"]} >= {"ppo", "optimal"}
    err = result.stderr
    assert "train: 0/2.0k steps, exact share" in err
    assert "final evaluation: 6 policies on 200 customers" in err
    assert "exporting and logging the policy: done in" in err


# ------------------------------------------------------------------ CSV a spreadsheet opens safely
HOSTILE_IDS = ['=HYPERLINK("http://evil.example","click")', "+1", "@SUM(1)", "-2+3", "\tcmd", "\rx"]


def test_csv_quotes_formula_like_text_and_leaves_numbers_alone() -> None:
    import io

    from nba.io import csv_bytes

    frame = pd.DataFrame(
        {
            "customer_id": [*HOSTILE_IDS, "c-7", "safe"],
            "value": [-1.5, -2.0, 3.0, 0.0, 1.0, -7.25, 2.0, -3.0],
            "count": [-1, 2, 3, 4, 5, 6, 7, -8],
            "action": pd.Categorical(["=x", "email", "email", "sms", "sms", "sms", "-", "sms"]),
            "mixed": pd.Series([1, "=1", None, True, 2.5, "@a", "b", -3], dtype=object),
            "=sum(A1)": 1,
        }
    )
    before = frame.copy()
    back = pd.read_csv(io.BytesIO(csv_bytes(frame)), dtype={"customer_id": str})
    assert back["customer_id"].tolist()[:6] == [
        "'" + v if v != "\rx" else "'\rx" for v in HOSTILE_IDS
    ]
    assert back["customer_id"].tolist()[6:] == ["c-7", "safe"]
    assert back["value"].tolist() == frame["value"].tolist()  # negative numbers stay numbers
    assert back["count"].tolist() == frame["count"].tolist()
    assert back["action"].tolist()[:1] == ["'=x"] and back["action"].iloc[6] == "'-"
    assert back["mixed"].tolist()[1] == "'=1" and back["mixed"].tolist()[5] == "'@a"
    assert "'=sum(A1)" in back.columns
    # the caller's frame is untouched, and nothing to quote means the frame as it was
    pd.testing.assert_frame_equal(frame, before)
    plain = pd.DataFrame({"a": ["x", "y"], "b": [-1, 2]})
    assert csv_bytes(plain) == plain.to_csv(index=False).encode()


def test_converted_event_logs_keep_ids_joined_after_quoting(tmp_path: Path) -> None:
    from nba.calibration.events import EventLog, load_events, save_events

    ids = ["=cmd|' /C calc'!A0", "+1", "c-3"]
    events = pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04"]),
            "event": "purchased",
            "value": [10.0, 20.0, 30.0],
        }
    )
    customers = pd.DataFrame({"customer_id": ids, "segment": ["-", "a", "@b"]})
    log = EventLog.from_frames(events, customers)
    save_events(log, tmp_path / "events.csv", tmp_path / "customers.csv")
    text = (tmp_path / "events.csv").read_text()
    assert "\n'=cmd" in text and "\n'+1," in text and "\nc-3," in text
    again = load_events(tmp_path / "events.csv", tmp_path / "customers.csv")
    assert set(again.customer_ids) == {"'" + ids[0], "'+1", "c-3"}
    assert set(again.customers["customer_id"]) == set(again.customer_ids)
