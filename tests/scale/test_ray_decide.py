"""Deciding a base over partitioned Parquet on a real two-node Ray cluster: the decisions of
one batch over all partitions, capacity global, every customer exactly once even when a worker
is killed mid-job."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.scale import ScaleError
from nba.scale.ray_decide import DecideJob, decide_partitions
from nba.serving.scorer import PolicyScorer
from tests.serving.conftest import population
from tests.serving.test_capacity_plan import SCARCE, assert_same_decisions

pytestmark = pytest.mark.integration
AS_OF = "2026-11-23T12:00:00+00:00"


def _base(n: int, parts: int, folder: Path) -> pd.DataFrame:
    few = population(max(n // 5, 1), seed=7)
    frame = pd.concat([few] * 5, ignore_index=True).iloc[:n]  # ties across partitions
    frame["customer_id"] = [f"c{i:06d}" for i in range(len(frame))]
    folder.mkdir()
    for k, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"requests-{k:03d}.parquet", index=False)
    return frame


def _read(out: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True
    )


def _single_process(export_dir: Path, job: DecideJob, frame: pd.DataFrame) -> pd.DataFrame:
    from nba.holdout import Holdout

    scorer = PolicyScorer.load(export_dir)
    if job.holdout is not None:
        scorer.holdout = Holdout(*job.holdout)  # type: ignore[arg-type]
    whole = scorer.score_batch(
        frame, capacity=job.capacity, as_of=pd.Timestamp(job.as_of).to_pydatetime()
    )
    return whole.reset_index(drop=True)


def test_ray_decisions_equal_one_batch_over_all_partitions(
    ray_cluster: str, export_dir: Path, tmp_path: Path
) -> None:
    frame = _base(6_000, 5, tmp_path / "requests")
    job = DecideJob(
        str(export_dir), AS_OF, capacity=SCARCE, holdout=(0.2, "scale", "business_as_usual")
    )
    logs = tmp_path / "logs"
    report = decide_partitions(
        job, tmp_path / "requests", tmp_path / "out", address=ray_cluster, logs=logs
    )
    assert (report.partitions, report.customers) == (5, 6_000)
    shards = sorted(logs.glob("decisions-*.db"))
    assert len(shards) == 5
    from nba.ope.decision_log import read_decision_log

    logged = sum(len(read_decision_log(shard, None).customer_id) for shard in shards)
    assert logged == 6_000
    got = _read(tmp_path / "out")
    want = _single_process(export_dir, job, frame)
    assert_same_decisions(got, want)
    for channel, limit in SCARCE.items():  # global, not per partition
        assert (got["channel"] == channel).sum() <= limit
    local = decide_partitions(job, tmp_path / "requests", tmp_path / "local", engine="local")
    assert local.job == report.job
    assert_same_decisions(_read(tmp_path / "local"), got)


def _actor_pids() -> set[int]:
    """Processes of our scoring actors (Ray titles an actor's process ``ray::<class>``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::PartitionScorer"):
                found.add(int(entry.name))
    return found


def test_a_worker_killed_mid_job_leaves_every_customer_decided_once(
    ray_cluster: str, export_dir: Path, tmp_path: Path
) -> None:
    frame = _base(48_000, 24, tmp_path / "requests")
    job = DecideJob(str(export_dir), AS_OF, capacity=SCARCE)
    out = tmp_path / "out"
    result: dict[str, object] = {}

    def run() -> None:
        result["report"] = decide_partitions(job, tmp_path / "requests", out, address=ray_cluster)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.005)
    written_before = len(list(out.glob("part-*.parquet")))
    before = _actor_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    worker.join(timeout=300)
    assert 0 < written_before < 24, "the kill must land mid-job"
    report = result["report"]
    got = _read(out)
    assert report.customers == 48_000  # type: ignore[attr-defined]
    assert got["customer_id"].is_unique and set(got["customer_id"]) == set(frame["customer_id"])
    assert_same_decisions(got, _single_process(export_dir, job, frame))
    replaced = set(report.processes) - before  # type: ignore[attr-defined]
    assert replaced, "a restarted actor decided the killed one's partitions"


def test_bad_settings_name_the_option(tmp_path: Path, export_dir: Path) -> None:
    job = DecideJob(str(export_dir), AS_OF)
    with pytest.raises(ScaleError, match="--requests: no Parquet"):
        decide_partitions(job, tmp_path / "nowhere", tmp_path / "out", engine="local")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScaleError, match=r"--requests: no \.parquet files"):
        decide_partitions(job, tmp_path / "empty", tmp_path / "out", engine="local")
    with pytest.raises(ScaleError, match="--engine: expected"):
        decide_partitions(job, tmp_path / "empty", tmp_path / "out", engine="spark")
    with pytest.raises(ScaleError, match="--workers: expected"):
        decide_partitions(job, tmp_path / "empty", tmp_path / "out", workers=0)


def test_the_cli_decides_partitions_on_the_cluster_as_the_engine_does(
    ray_cluster: str, export_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from nba.cli.entry import main

    frame = _base(3_000, 3, tmp_path / "requests")
    args = ["decide", "-m", str(export_dir), "--requests", str(tmp_path / "requests")]
    args += ["--as-of", AS_OF, "--capacity", "push=200", "--capacity", "paid_social=150"]
    with pytest.raises(SystemExit) as exited:
        main([*args, "-o", str(tmp_path / "out"), "--engine", "ray", "--address", ray_cluster,
              "--log", str(tmp_path / "logs"), "--json"])  # fmt: skip
    assert exited.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["customers"], summary["partitions"], summary["engine"]) == (3_000, 3, "ray")
    job = DecideJob(str(export_dir), AS_OF, capacity={"push": 200, "paid_social": 150})
    assert_same_decisions(_read(tmp_path / "out"), _single_process(export_dir, job, frame))
    assert len(list((tmp_path / "logs").glob("decisions-*.db"))) == 3
    for bad, says in (
        (["--store", str(tmp_path / "x.db")], "--requests: give --store or --requests"),
        (["--log", str(tmp_path / "requests" / "requests-000.parquet")], "--log: "),
    ):
        with pytest.raises(SystemExit) as exited:
            main([*args, "-o", str(tmp_path / "again"), *bad])
        err = capsys.readouterr().err
        assert exited.value.code == 2 and says in err, err
