from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from nba.cli import app
from tests.ope.conftest import MODEL

runner = CliRunner()


def test_ope_json_ranks_the_better_policy_higher(
    decision_log: Path, good_export: Path, bad_export: Path
) -> None:
    values = {}
    for name, export in (("good", good_export), ("bad", bad_export)):
        result = runner.invoke(
            app,
            ["ope", "--log", str(decision_log), "--model", str(export), "--bootstrap", "200",
             "--estimators", "ips,snips,dr,dm", "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        payload = json.loads(result.output)
        assert payload["decisions"] == 6_000
        assert payload["diagnostics"]["effective_sample_size"] > 100
        estimates = {row["estimator"]: row for row in payload["estimates"]}
        assert list(estimates) == ["ips", "snips", "dr", "dm"]
        for row in estimates.values():
            assert row["lower"] <= row["estimate"] <= row["upper"]
        values[name] = estimates["dr"]
    assert values["good"]["lower"] > values["bad"]["upper"]


def test_ope_takes_estimator_parameters_as_tables_label_them(
    decision_log: Path, good_export: Path
) -> None:
    args = ["ope", "--log", str(decision_log), "--model", str(good_export), "--bootstrap", "20"]
    result = runner.invoke(
        app, [*args, "--estimators", "dr, switch_dr(tau=1e9), switch_dr(tau=0.5)", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {row["estimator"]: row for row in json.loads(result.stdout)["estimates"]}
    assert list(rows) == ["dr", "switch_dr(tau=1e+09)", "switch_dr(tau=0.5)"]
    # no weight above 1e9: switch-DR is plain DR; a low threshold moves it
    assert rows["switch_dr(tau=1e+09)"]["estimate"] == rows["dr"]["estimate"]
    assert rows["switch_dr(tau=0.5)"]["estimate"] != rows["dr"]["estimate"]
    for bad, message in (("switch_dr(taw=2)", "unknown parameter(s) ['taw']"),
                         ("pdis", "pdis evaluates trajectories")):  # fmt: skip
        refused = runner.invoke(app, [*args, "--estimators", bad])
        assert refused.exit_code != 0 and message in str(refused.exception), refused.output


def test_ope_table_and_clear_errors(decision_log: Path, good_export: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["ope", "--log", str(decision_log), "--model", str(good_export), "--bootstrap", "50"]
    )
    assert result.exit_code == 0 and "snips" in result.output and "95% interval" in result.output
    missing = runner.invoke(
        app, ["ope", "--log", str(tmp_path / "none.db"), "--model", str(good_export)]
    )
    assert missing.exit_code != 0 and "no such decision log" in str(missing.exception)
    bad = runner.invoke(
        app, ["ope", "--log", str(decision_log), "--model", str(good_export), "--estimators", "x"]
    )
    assert "estimator: unknown 'x'" in str(bad.exception)
    for command in ("ope", "promote"):
        assert "Usage" in runner.invoke(app, [command, "--help"]).output


def test_promote_moves_the_champion_only_on_strong_evidence(
    registry: Callable[[Path], str], bad_export: Path, good_export: Path, decision_log: Path
) -> None:
    bad, good = registry(bad_export), registry(good_export)
    client = MlflowClient()
    common = ["--model", MODEL, "--bootstrap", "200", "--json"]

    nothing = runner.invoke(app, ["promote", "--challenger", good, *common])
    assert nothing.exit_code == 1
    assert "no evidence" in json.loads(nothing.output)["reasons"][0]

    first = runner.invoke(
        app, ["promote", "--challenger", bad, "--log", str(decision_log), *common]
    )
    assert first.exit_code == 1, first.output  # direct mail loses money: no better than nothing
    refused = json.loads(first.output)
    assert refused["incumbent"] == "no_action" and not refused["promoted"]
    assert refused["challenger_lower"] <= refused["incumbent_estimate"]

    second = runner.invoke(
        app, ["promote", "--challenger", good, "--log", str(decision_log), *common]
    )
    assert second.exit_code == 0, second.output
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == good

    back = runner.invoke(app, ["promote", "--challenger", bad, "--log", str(decision_log), *common])
    assert back.exit_code == 1
    assert json.loads(back.output)["incumbent"] == f"{MODEL} v{good}"
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == good

    runs = client.search_runs(
        [client.get_experiment_by_name("nba-promotion").experiment_id],
        order_by=["attributes.start_time ASC"],
    )
    assert [r.data.tags["nba.promotion.decision"] for r in runs] == [
        "refused", "refused", "promoted", "refused",
    ]  # fmt: skip
    evidence = runs[2].data.tags
    assert evidence["nba.promotion.method"] == "ope"
    assert evidence["nba.promotion.estimator"] == "dr"
    assert float(evidence["nba.promotion.challenger_lower"]) > float(
        evidence["nba.promotion.incumbent_estimate"]
    )
    assert client.get_model_version(MODEL, good).tags["nba.promotion.run_id"] == runs[2].info.run_id
