from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nba.serving.decision_log import DecisionLog
from nba.serving.scorer import PolicyScorer
from tests.serving.conftest import customer, frame

AS_OF = pd.Timestamp("2026-11-23T10:00:00Z")


def test_scored_decisions_are_logged_for_ope(export_dir: Path, tmp_path: Path) -> None:
    scorer = PolicyScorer.load(export_dir, model_version="v7")
    rows = [customer(customer_id=f"c{i}", stage=s) for i, s in enumerate(["aware", "lapsed"])]
    with DecisionLog(tmp_path / "decisions.db") as log:
        decisions = scorer.score_batch(frame(*rows), as_of=AS_OF, log=log)
        logged = log.read()
    assert logged["customer_id"].tolist() == ["c0", "c1"]
    assert logged["action"].tolist() == decisions["action"].tolist()
    assert (logged["model_version"] == "v7").all()
    assert logged["decided_at"].iloc[0].startswith("2026-11-23T10:00:00")
    assert logged["features"].iloc[0].shape == (scorer.features.size,)
    np.testing.assert_allclose([p.sum() for p in logged["probabilities"]], 1.0, rtol=1e-5)
    with DecisionLog(tmp_path / "decisions.db") as log:
        assert log._connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


WRITER = """
import sys, time
import numpy as np, pandas as pd
from nba.serving.decision_log import DecisionLog
log = DecisionLog(sys.argv[1], chunk_rows=500)
n, features, probabilities = 2000, np.ones((2000, 44)), np.full((2000, 13), 1 / 13)
batch = 0
while True:
    log.append(
        customer_id=np.array([f"b{batch}-{i}" for i in range(n)]),
        decided_at=pd.Series(pd.Timestamp("2026-11-23", tz="UTC"), index=range(n)),
        model_version="v1", actions=np.zeros(n, dtype=int),
        action_names=np.array(["no_action"] * n), propensities=np.ones(n),
        explored=np.zeros(n, dtype=bool), features=features, probabilities=probabilities,
    )
    batch += 1
    print(batch, flush=True)
"""


def test_killed_writer_leaves_only_whole_committed_chunks(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    batches_done = 0
    deadline = time.monotonic() + 60
    while batches_done < 3 and time.monotonic() < deadline:
        line = writer.stdout.readline() if writer.stdout else ""
        batches_done = int(line) if line.strip() else batches_done
    time.sleep(0.05)  # somewhere inside the next batch
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert batches_done >= 3

    with DecisionLog(path) as log:
        logged = log.read()
    assert len(logged) >= batches_done * 2000  # every reported batch is there
    assert len(logged) % 500 == 0  # whole transactions only, never a partial one
    assert logged["id"].tolist() == list(range(1, len(logged) + 1))
    assert all(f.shape == (44,) for f in logged["features"])
    assert all(p.shape == (13,) for p in logged["probabilities"])
    assert logged["customer_id"].is_unique
