"""``nba sweep`` and ``nba train-twins`` refuse bad input in one line, before any cluster starts
or any MLflow run is created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_runner import run_cli


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["sweep", "--algo", "sac"], "--algo: unknown algorithm 'sac'"),
        (["sweep", "--scenario", "nowhere.yaml"], "nowhere.yaml"),
        (["sweep", "--space", "missing.yaml"], "space: no such file 'missing.yaml'"),
        (["sweep", "--observation", "stage"], "--observation: expected state or belief"),
        (["sweep", "--config", "missing.yaml"], "config: no such file"),
        (["sweep", "--address", "nohost"], "--address: expected HOST:PORT"),
        (["train-twins", "--scenario", "retail", "--scenario", "retail"], "given twice"),
        (["train-twins", "--scenario", "retail", "--algo", "sac"], "--algo: unknown algorithm"),
    ],
)
def test_bad_input_is_one_line_naming_it(
    args: list[str],
    named: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *args, "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert code == 2 and out == "", err
    assert named in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "m.db").exists()  # refused before any run was created


@pytest.mark.parametrize(("option", "value"), [("--trials", "0"), ("--reduction-factor", "1")])
def test_out_of_range_counts_are_usage_errors_naming_the_option(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "sweep", option, value)
    assert code == 2 and option in err, err  # click's range check, before the command runs


def test_a_space_with_a_typo_is_refused_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("algorithm.ent_coeff: {loguniform: [0.001, 0.01]}\n")
    code, _, err = run_cli(capsys, "sweep", "--space", str(space))
    assert code == 2 and "ent_coeff" in err and str(space) in err, err
