"""Bootstrap replicates are ``--bootstrap N`` in every command; ``nba ope`` and ``nba promote``
still accept their old ``--n-boot`` (hidden, with a warning) so scripts keep working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from nba.cli import app, main

runner = CliRunner()


def test_n_boot_is_a_hidden_deprecated_alias_of_bootstrap(
    decision_log: Path, good_export: Path
) -> None:
    args = ["ope", "--log", str(decision_log), "--model", str(good_export), "--estimators",
            "ips,dr", "--seed", "3", "--json"]  # fmt: skip
    new = runner.invoke(app, [*args, "--bootstrap", "40"])
    old = runner.invoke(app, [*args, "--n-boot", "40"])
    assert new.exit_code == 0 and old.exit_code == 0, (new.output, old.output)
    assert json.loads(old.stdout) == json.loads(new.stdout)  # the same replicates
    assert "--n-boot is deprecated; use --bootstrap" in old.stderr
    assert "deprecated" not in new.stderr
    fewer = runner.invoke(app, [*args, "--bootstrap", "2"])
    assert json.loads(fewer.stdout) != json.loads(new.stdout)  # the count is really used


@pytest.mark.parametrize("command", ["ope", "promote", "calibrate"])
def test_every_bootstrap_count_is_spelt_bootstrap(command: str) -> None:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    shown = {opt for p in params if not p.hidden for opt in p.opts}
    assert "--bootstrap" in shown and "--n-boot" not in shown
    assert "--n-boot" not in runner.invoke(app, [command, "--help"]).output


def test_n_boot_below_the_minimum_is_one_line(
    decision_log: Path, good_export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ope", "--log", str(decision_log), "--model", str(good_export), "--n-boot", "1"])
    assert exited.value.code == 2
    assert "--n-boot: 1 is below the minimum of 2" in capsys.readouterr().err
