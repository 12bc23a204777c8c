"""``nba score --log``: a crash (kill -9) and a rerun log each batch once and write the output.

The kills are injected where they matter, in a subprocess that SIGKILLs itself: inside the
log's transaction with uncommitted rows already spilled to the WAL, and between the log's commit
and the output's replacement.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.cli import main
from nba.serving.decision_log import DecisionLog
from tests.serving.conftest import population

# Runs ``nba`` after arranging to SIGKILL itself: "rows N" inside the log's transaction after N
# rows (with a tiny page cache, so uncommitted rows are already in the WAL), "output" after the
# log's commit, just before the output file would be replaced.
KILLER = """
import os, signal, sys
from nba.serving import decision_log

where, args = sys.argv[1], sys.argv[2:]
if where.startswith("rows"):
    limit = int(where.split()[1])
    opened, insert = decision_log.DecisionLog._open, decision_log._Prepared.insert

    def small_cache(self):
        connection = opened(self)
        connection.execute("PRAGMA cache_size=-256")
        return connection

    def dying_insert(self, batch):
        statement, rows = insert(self, batch)

        def rows_then_kill():
            for i, row in enumerate(rows):
                if i == limit:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield row

        return statement, rows_then_kill()

    decision_log.DecisionLog._open = small_cache
    decision_log._Prepared.insert = dying_insert
elif where == "output":
    import nba.io
    nba.io.write_bytes_atomic = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
from nba.cli import main
main(args)
"""


@pytest.fixture
def policy(export_dir: Path) -> Path:
    """The shared exported policy (tests/conftest.py)."""
    return export_dir


def nba(args: list[str], cwd: Path, kill: str | None = None) -> subprocess.CompletedProcess[str]:
    """``nba ARGS`` in a subprocess, killed with SIGKILL where ``kill`` says."""
    command = [sys.executable, "-c", KILLER, kill, *args] if kill else [
        sys.executable, "-c", "from nba.cli import main; main()", *args
    ]  # fmt: skip
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180)


def batches(log: Path) -> list[tuple[str, int, int]]:
    """(batch id, rows it claims, rows it has) per logged batch."""
    with sqlite3.connect(log) as connection:
        return connection.execute(
            "SELECT b.batch_id, b.row_count, COUNT(d.id) FROM batches b "
            "LEFT JOIN decisions d ON d.batch = b.id GROUP BY b.id ORDER BY b.id"
        ).fetchall()


def pending(log: Path) -> int:
    with sqlite3.connect(log) as connection:
        return int(connection.execute("SELECT COUNT(*) FROM pending_runs").fetchone()[0])


def assert_output_is_the_logged_batch(output: Path, log: Path) -> None:
    decisions = pd.read_csv(output)
    with DecisionLog(log) as opened:
        logged = opened.read()
    assert len(decisions) == len(logged)
    assert decisions["customer_id"].astype(str).tolist() == logged["customer_id"].tolist()
    assert decisions["action"].tolist() == logged["action"].tolist()
    assert decisions["explored"].tolist() == logged["explored"].tolist()
    np.testing.assert_allclose(decisions["propensity"], logged["propensity"])


def test_killed_inside_the_log_transaction_then_rerun_logs_the_batch_once(
    policy: Path, tmp_path: Path
) -> None:
    """kill -9 while the batch is being written (uncommitted rows already in the WAL): the
    log holds none of it; the rerun decides at the pinned time, logs it once, writes it all."""
    population(20_000, seed=4).to_csv(tmp_path / "customers.csv", index=False)
    args = ["score", "-m", str(policy), "-i", "customers.csv", "-o", "out.csv", "--log", "d.db"]
    args += ["--epsilon", "0.3"]  # no --seed: the seed is derived from the batch id

    killed = nba(args, tmp_path, kill="rows 15000")
    assert killed.returncode == -9, killed.stderr
    assert (tmp_path / "d.db-wal").stat().st_size > 1 << 20  # uncommitted pages were on disk
    assert not (tmp_path / "out.csv").exists()
    assert batches(tmp_path / "d.db") == [] and pending(tmp_path / "d.db") == 1

    rerun = nba(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming an interrupted run" in rerun.stderr
    [(batch_id, claimed, present)] = batches(tmp_path / "d.db")
    assert batch_id.startswith("score-") and claimed == present == 20_000
    assert pending(tmp_path / "d.db") == 0
    assert_output_is_the_logged_batch(tmp_path / "out.csv", tmp_path / "d.db")
    assert pd.read_csv(tmp_path / "out.csv")["explored"].any()


def test_killed_after_logging_before_the_output_then_rerun_writes_the_same_decisions(
    policy: Path, tmp_path: Path
) -> None:
    """kill -9 between the log's commit and the output: the rerun finds its batch already
    logged (same pinned time, derived seed, so the same decisions), logs nothing, writes the
    output. A later run of the same command is a new run, at a new time: a new batch."""
    population(300, seed=5).to_csv(tmp_path / "customers.csv", index=False)
    args = ["score", "-m", str(policy), "-i", "customers.csv", "-o", "out.csv", "--log", "d.db"]
    args += ["--epsilon", "0.5"]

    killed = nba(args, tmp_path, kill="output")
    assert killed.returncode == -9, killed.stderr
    [(first, claimed, present)] = batches(tmp_path / "d.db")
    assert claimed == present == 300 and not (tmp_path / "out.csv").exists()

    rerun = nba(args, tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "not logged again" in " ".join(rerun.stdout.split())  # rich may wrap
    assert batches(tmp_path / "d.db") == [(first, 300, 300)]
    assert_output_is_the_logged_batch(tmp_path / "out.csv", tmp_path / "d.db")

    again = nba(args, tmp_path)
    assert again.returncode == 0, again.stderr
    assert [row[0] == first for row in batches(tmp_path / "d.db")] == [True, False]


def run_main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(args)
    captured = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def test_decision_times_from_the_input_or_as_of_make_reruns_idempotent(
    policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    customers = population(12, seed=6)
    customers.to_csv("plain.csv", index=False)
    customers.assign(as_of="2026-11-23T09:00:00Z").to_csv("stamped.csv", index=False)
    common = ["score", "-m", str(policy), "-o", "out.parquet", "--log", "d.db"]
    runs = [
        ["-i", "stamped.csv"],
        ["-i", "stamped.csv"],  # the same run again: not logged twice
        ["-i", "plain.csv", "--as-of", "2026-11-23T10:00:00+01:00"],
        ["-i", "plain.csv", "--as-of", "2026-11-23T09:00:00Z"],  # the same instant
        ["-i", "plain.csv", "--as-of", "2026-11-24"],  # another decision time: a new batch
        ["-i", "stamped.csv", "--capacity", "email=3"],  # another capacity: a new batch
    ]
    for extra in runs:
        code, _, err = run_main([*common, *extra], capsys)
        assert code == 0, err
        assert len(pd.read_parquet("out.parquet")) == 12
    assert [present for _, _, present in batches(tmp_path / "d.db")] == [12, 12, 12, 12]
    assert pending(tmp_path / "d.db") == 0

    code, _, err = run_main([*common, "-i", "plain.csv", "--as-of", "next tuesday"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--as-of: not a timestamp" in err


def test_a_failed_run_leaves_the_log_as_it_was(
    policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    population(5).to_csv("good.csv", index=False)
    population(5).assign(pressure="x").to_csv("bad.csv", index=False)
    code, _, err = run_main(["score", "-m", str(policy), "-i", "good.csv", "-o", "o.csv",
                             "--log", "d.db"], capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = run_main(["score", "-m", str(policy), "-i", "bad.csv", "-o", "o.csv",
                             "--log", "d.db"], capsys)  # fmt: skip
    assert code == 2 and "pressure" in err
    assert len(batches(tmp_path / "d.db")) == 1 and pending(tmp_path / "d.db") == 0
