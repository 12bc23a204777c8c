"""Bad input at every entry point: one line on stderr, exit code 2, nothing created.

Each case runs ``nba.cli.main`` (the console entry point, not just the typer app) in an empty
working directory and checks that the directory holds the same files afterwards: no
``mlflow.db``, no output, no empty decision log.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nba.cli import main
from nba.serving.decision_log import DecisionLog
from tests.serving.conftest import population


@pytest.fixture
def policy(export_dir: Path) -> Path:
    """The shared exported policy (tests/conftest.py)."""
    return export_dir


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file per way of being unreadable, beside a good customer table."""
    folder = tmp_path_factory.mktemp("inputs")
    good = folder / "good.csv"
    population(12).to_csv(good, index=False)
    rows = list(csv.reader(good.open()))
    header = rows[0]
    bad_number = [row[:] for row in rows]
    bad_number[5][header.index("pressure")] = "x"  # the 5th data row
    csv.writer((folder / "bad_number.csv").open("w", newline="")).writerows(bad_number)
    bad_flag = [row[:] for row in rows]
    bad_flag[3][header.index("opted_out")] = "maybe"
    csv.writer((folder / "bad_flag.csv").open("w", newline="")).writerows(bad_flag)
    (folder / "ragged.csv").write_text(good.read_text() + "a,b,c,d,e,f,g,h,i,j,k\n")
    (folder / "latin1.csv").write_bytes(good.read_bytes().replace(b"c1,", b"\xe9t\xe9,", 1))
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (folder / "empty.csv").write_bytes(b"")
    pd.read_csv(good).to_parquet(folder / "good.parquet")
    whole = (folder / "good.parquet").read_bytes()
    (folder / "truncated.parquet").write_bytes(whole[: len(whole) // 2])
    (folder / "text.parquet").write_text("not parquet")
    (folder / "not_a_log.db").write_text("hello")
    import sqlite3

    with sqlite3.connect(folder / "other.db") as connection:
        connection.execute("CREATE TABLE runs (id TEXT)")
    (folder / "binary.yaml").write_bytes(b"\xff\xfe\x00 scenario")
    (folder / "broken.yaml").write_text("name: [1,\n  2\nchannels: {\n")
    return folder


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


# (arguments with {policy} and {inputs} placeholders, text the one line must hold)
BAD = [
    # nba score: the model
    ("score -m models:/nope@champion -i {inputs}/good.csv -o out.csv", "--model: no MLflow store"),
    ("score -m runs:/0123abc/policy -i {inputs}/good.csv -o out.csv", "--model: no MLflow store"),
    ("score -m models:nope -i {inputs}/good.csv -o out.csv", "--model: expected models:/"),
    ("score -m no_such_dir -i {inputs}/good.csv -o out.csv", "--model: no export directory"),
    # nba score: the input, row by row and file by file
    (
        "score -m {policy} -i {inputs}/bad_number.csv -o out.csv",
        "row 5, pressure: expected a whole number, got 'x'",
    ),
    (
        "score -m {policy} -i {inputs}/bad_flag.csv -o out.csv --log d.db",
        "row 3, opted_out: expected true or false, got 'maybe'",
    ),
    ("score -m {policy} -i {inputs}/ragged.csv -o out.csv", "--input: cannot read"),
    ("score -m {policy} -i {inputs}/latin1.csv -o out.csv", "--input: cannot read"),
    ("score -m {policy} -i {inputs}/binary.csv -o out.csv", "--input: cannot read"),
    ("score -m {policy} -i {inputs}/empty.csv -o out.csv", "--input: cannot read"),
    ("score -m {policy} -i {inputs}/truncated.parquet -o out.csv", "--input: cannot read"),
    ("score -m {policy} -i {inputs}/text.parquet -o out.csv", "--input: cannot read"),
    ("score -m {policy} -i missing.csv -o out.csv", "--input: no such file"),
    ("score -m {policy} -i {inputs} -o out.csv", "--input: expected a .csv or .parquet path"),
    ("score -m {policy} -i {inputs}/good.csv -o out.xlsx", "--output: expected a .csv or .parquet"),
    ("score -m {policy} -i {inputs}/good.csv -o no_dir/out.csv", "--output: no folder 'no_dir'"),
    (
        "score -m {policy} -i {inputs}/good.csv -o out.csv --log {inputs}/not_a_log.db",
        "--log: cannot read",
    ),
    ("score -m {policy} -i {inputs}/good.csv -o out.csv --log {inputs}/other.db", "--log: "),
    ("score -m {policy} -i {inputs}/good.csv -o out.csv --log no_dir/d.db", "--log: no folder"),
    ("score -m {policy} -i {inputs}/good.csv -o out.csv --capacity email", "--capacity: expected"),
    # nba ope and nba promote
    ("ope --log {inputs}/not_a_log.db -m {policy}", "--log: cannot read"),
    ("ope --log missing.db -m {policy}", "--log: no such decision log"),
    ("ope --log {inputs}/other.db -m {policy}", "without a decisions table"),
    ("promote -m m --challenger 1 --scenario retial", "scenario: unknown name 'retial'"),
    ("promote -m m --challenger 1 --scenario {inputs}/binary.yaml", "--scenario: cannot read"),
    ("promote -m m --challenger 1 --log {inputs}/not_a_log.db", "--log: cannot read"),
    ("promote -m m --challenger 1", "--model: no MLflow store"),
    # scenarios everywhere
    ("validate {inputs}/binary.yaml", "PATH: cannot read"),
    ("validate {inputs}/broken.yaml", "scenario YAML: cannot parse"),
    ("validate missing.yaml", "PATH: no such file"),
    ("evaluate -s {inputs}/binary.yaml", "not UTF-8"),
    ("simulate -s retial -o k.csv", "scenario: unknown name"),
    ("solve -s {inputs}/broken.yaml", "scenario YAML: cannot parse"),
    # calibration
    ("convert hillstrom {inputs}/binary.csv -o ev.parquet", "SOURCE: cannot read"),
    ("convert hillstrom missing.csv -o ev.parquet", "SOURCE: no such file"),
    ("convert hillstrom {inputs}/good.csv -o no_dir/ev.parquet", "--out: no folder"),
    ("convert hilstrom {inputs}/good.csv -o ev.parquet", "DATASET: unknown 'hilstrom'"),
    ("calibrate -e {inputs}/latin1.csv -o s.yaml", "--events: cannot read"),
    ("calibrate -e {inputs}/truncated.parquet -o s.yaml", "--events: cannot read"),
    ("calibrate -e {inputs}/ragged.csv -o s.yaml", "--events: cannot read"),
    ("calibrate -e {inputs}/empty.csv -o s.yaml", "--events: cannot read"),
    ("calibrate -e {inputs}/good.csv -o no_dir/s.yaml", "--out: no folder"),
    ("calibrate -e {inputs}/good.csv -o s.txt", "--out: expected a .yaml or .yml path"),
    ("audit -s {inputs}/binary.yaml -e {inputs}/good.csv", "--scenario: cannot read"),
    ("audit -s missing.yaml -e {inputs}/good.csv", "--scenario: no such file"),
]


@pytest.mark.parametrize(("command", "expected"), BAD, ids=[c for c, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    command: str,
    expected: str,
    policy: Path,
    inputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = command.format(policy=policy, inputs=inputs).split()
    code, out, err = run_main(args, capsys)
    assert code == 2, err
    # progress announcements ("evaluating policies ...", another feature) may precede it
    lines = [line for line in err.splitlines() if not line.endswith(" ...")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert out == ""
    assert sorted(os.listdir(tmp_path)) == []


def test_good_input_writes_output_and_log(
    policy: Path,
    inputs: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The control: the same command with good input creates exactly what it should."""
    monkeypatch.chdir(tmp_path)
    args = ["score", "-m", str(policy), "-i", str(inputs / "good.csv"), "-o", "out.csv"]
    code, _, err = run_main([*args, "--log", "d.db"], capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "out.csv")) == 12
    with DecisionLog(tmp_path / "d.db") as log:
        assert len(log) == 12
    # an existing log is appended to, and a table that fails leaves it as it was
    code, _, _ = run_main([*args, "--log", "d.db"], capsys)
    assert code == 0
    bad = ["score", "-m", str(policy), "-i", str(inputs / "bad_number.csv"), "-o", "out.csv"]
    code, _, _ = run_main([*bad, "--log", "d.db"], capsys)
    assert code == 2
    with DecisionLog(tmp_path / "d.db") as log:
        assert len(log) == 24


def test_unknown_model_in_an_existing_store_is_one_line(
    policy: Path, inputs: Path, tmp_path: Path
) -> None:
    """A real MLflow store: a misspelt alias or run id is MLflow's message on one line.

    A subprocess, so that MLflow's process-wide tracking URI does not leak into other tests.
    """
    from mlflow.tracking import MlflowClient

    store = tmp_path / "store" / "mlflow.db"
    store.parent.mkdir()
    uri = f"sqlite:///{store}"
    MlflowClient(uri).search_experiments()  # creates the store's tables
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for model, expected in (
        ("models:/nope@champion", "nope"),
        ("runs:/0123abc/policy", "0123abc"),
    ):
        completed = subprocess.run(
            [sys.executable, "-c", "from nba.cli import main; main()", "score", "-m", model,
             "-i", str(inputs / "good.csv"), "-o", "out.csv", "--tracking-uri", uri],
            cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert completed.returncode == 2, completed.stderr
        lines = [line for line in completed.stderr.splitlines() if "INFO" not in line]
        assert len(lines) == 1, completed.stderr
        assert lines[0].startswith(f"error: --model: cannot load {model!r}")
        assert expected in lines[0]
        assert os.listdir(work) == []
