"""Nightly decisions for a whole base over partitioned Parquet, on Ray or in one process.

Each partition (one Parquet file of request rows, the ``nba score`` columns) is scored whole
by a pool of actors that load the model once each. Channel capacity stays global through the
two passes of :mod:`nba.serving.capacity_plan`: every partition's candidates for the scarce
channels, one allocation on the driver, every partition decided under it. The decisions are
those of one :meth:`~nba.serving.scorer.PolicyScorer.score_batch` over the partitions
concatenated in file-name order (network outputs to float32 rounding).

A partition exported from the customer-state store (``nba store export``,
:mod:`nba.store.export`) carries each customer's belief as ``belief__*`` columns: a
belief-trained model decides on it, as ``nba decide --store`` does.

Partitions are files, not Ray Data blocks: the two passes need each partition's rows whole and
in file order, which a file keeps and a block does not promise.

Exactly once: each partition's decisions are written to ``part-NNNNN.parquet`` atomically (a
temporary file renamed), and its decision-log shard ``decisions-NNNNN.db`` (when asked for)
takes them under the batch id ``<job>-NNNNN``, which the log refuses to take twice. Actors are
restarted when their process dies and the partition is scored again: same inputs, same
decisions, the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nba.errors import NBAError
from nba.io import write_with_atomic
from nba.scale import ScaleError, import_ray
from nba.serving.capacity_plan import PartSummary, plan_for
from nba.store.export import split_export


@dataclass(frozen=True)
class DecideJob:
    """What every partition is decided with (plain values: it travels to the actors)."""

    model: str
    as_of: str  # ISO 8601: one decision time for the whole base
    capacity: dict[str, int | None] = field(default_factory=dict)
    top_k: int = 3
    epsilon: float = 0.0
    seed: int | None = None
    holdout: tuple[float, str, str] | None = None  # share, salt, control
    tracking_uri: str | None = None
    trusted_scenario: str | None = None

    def key(self, partitions: Sequence[Path]) -> str:
        """The job's identity: its settings and its partitions' names and sizes."""
        files = [(p.name, p.stat().st_size) for p in partitions]
        text = json.dumps([asdict(self), files], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DecideReport:
    job: str
    partitions: int
    customers: int
    out: Path
    seconds: dict[str, float]
    processes: list[int]  # the processes that decided partitions (a restarted actor is new)


def partition_files(source: Path) -> list[Path]:
    """The Parquet files of ``source`` (a folder of them, or one file), in name order."""
    if source.is_file() and source.suffix == ".parquet":
        return [source]
    if not source.is_dir():
        raise ScaleError(f"--requests: no Parquet file or folder at {str(source)!r}")
    files = sorted(p for p in source.iterdir() if p.suffix == ".parquet" and p.is_file())
    if not files:
        raise ScaleError(f"--requests: no .parquet files in {str(source)!r}")
    return files


class PartitionScorer:
    """One actor's scorer (the model loaded once), scoring whole partitions."""

    def __init__(self, job: DecideJob) -> None:
        from nba.cli.inputs import load_scorer
        from nba.holdout import Holdout
        from nba.serving.scorer import Exploration

        exploration = None
        if job.epsilon:
            exploration = Exploration(kind="epsilon", epsilon=job.epsilon, seed=job.seed)
        trusted = None
        if job.trusted_scenario is not None:
            from nba.scenarios import load_scenario

            trusted = load_scenario(job.trusted_scenario)
        self.job = job
        self.scorer = load_scorer(
            job.model, job.tracking_uri, exploration, trusted_scenario=trusted
        )
        if job.holdout is not None:
            self.scorer.holdout = Holdout(*job.holdout)  # type: ignore[arg-type]

    def options(self) -> dict[str, Any]:
        return {
            "capacity": self.job.capacity,
            "as_of": pd.Timestamp(self.job.as_of).to_pydatetime(),
            "top_k": self.job.top_k,
        }

    def read(self, path: str) -> tuple[pd.DataFrame, Any]:
        """A partition's request rows and, where it carries belief columns (a store's export,
        :mod:`nba.store.export`) and the model was trained on beliefs, the belief it decides
        on, as ``nba decide --store`` gives it (a state model decides on the rows' most likely
        state, as there)."""
        from nba.serving.by_id import is_belief_model

        frame = pd.read_parquet(path)
        request, belief = split_export(frame, self.scorer.policy.scenario, Path(path).name)
        return request, belief if is_belief_model(self.scorer) else None

    def check(self, path: Path) -> None:
        """Refuse a partition whose belief columns are partial, unknown or of another twin,
        from its Parquet schema alone (no rows read): one clear error before any work."""
        import pyarrow.parquet as pq

        empty = pq.read_schema(path).empty_table().to_pandas()
        split_export(empty, self.scorer.policy.scenario, path.name)

    def summarize(self, path: str) -> PartSummary:
        from nba.serving.capacity_plan import summarize_partition

        frame, belief = self.read(path)
        return summarize_partition(self.scorer, frame, belief=belief, **self.options())

    def decide(
        self, path: str, index: int, out: str, key: str, plan: Any, logs: str | None
    ) -> tuple[int, int]:
        """Decide one partition under the base's plan; write it (and its log shard) once.
        Returns the rows decided and the deciding process."""
        from nba.serving.decision_log import DecisionLog

        frame, belief = self.read(path)
        log = DecisionLog(Path(logs) / f"decisions-{index:05d}.db") if logs else None
        try:
            decisions = self.scorer.score_batch(
                frame,
                capacity_plan=plan,
                log=log,
                batch_id=f"{key}-{index:05d}",
                belief=belief,
                **self.options(),
            )
        finally:
            if log is not None:
                log.close()
        target = Path(out) / f"part-{index:05d}.parquet"
        write_with_atomic(target, lambda path: decisions.to_parquet(path, index=False))
        return len(decisions), os.getpid()


def decide_partitions(
    job: DecideJob,
    source: Path,
    out: Path,
    engine: str = "ray",
    address: str | None = None,
    workers: int = 2,
    logs: Path | None = None,
) -> DecideReport:
    """Decide every partition of ``source`` into ``out`` (module docstring); with ``logs``, a
    decision-log shard per partition there."""
    if engine not in ("ray", "local"):
        raise ScaleError(f"--engine: expected 'ray' or 'local', got {engine!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ScaleError(f"--workers: expected a positive integer, got {workers!r}")
    files = partition_files(source)
    out.mkdir(parents=True, exist_ok=True)
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    key = job.key(files)
    local = PartitionScorer(job)  # the limits and the plan, under the job's own model
    for path in files:  # belief columns whole and of the model's twin, before any work
        local.check(path)
    run = _ray_runner(job, address, workers) if engine == "ray" else _local_runner(local)
    began = time.perf_counter()
    summaries = run("summarize", [(str(p),) for p in files])
    first = time.perf_counter()
    plan = plan_for(local.scorer, summaries, job.capacity)
    planned = time.perf_counter()
    shards = str(logs) if logs is not None else None
    calls = [(str(p), i, str(out), key, plan, shards) for i, p in enumerate(files)]
    decided = run("decide", calls)
    done = time.perf_counter()
    seconds = {"pass_1": first - began, "plan": planned - first, "pass_2": done - planned}
    rows = int(sum(n for n, _ in decided))
    return DecideReport(key, len(files), rows, out, seconds, sorted({pid for _, pid in decided}))


def _local_runner(scorer: PartitionScorer) -> Callable[[str, list[tuple[Any, ...]]], list[Any]]:
    def run(method: str, calls: list[tuple[Any, ...]]) -> list[Any]:
        return [getattr(scorer, method)(*call) for call in calls]

    return run


def _ray_runner(
    job: DecideJob, address: str | None, workers: int
) -> Callable[[str, list[tuple[Any, ...]]], list[Any]]:
    """An actor pool on Ray; a dead actor is restarted and its calls retried by Ray."""
    from nba.scale.cluster import connect

    ray = import_ray()
    connect(address, num_cpus=workers if address is None else None, name="--address")
    from ray.util import ActorPool

    actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(PartitionScorer)
    pool = ActorPool([actor.remote(job) for _ in range(workers)])

    def run(method: str, calls: list[tuple[Any, ...]]) -> list[Any]:
        try:
            return list(pool.map(lambda a, call: getattr(a, method).remote(*call), calls))
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, NBAError):  # bad input: our one line, not Ray's trace
                raise error.cause from None
            raise

    return run
