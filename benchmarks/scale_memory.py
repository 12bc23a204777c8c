"""Memory and time per million customers on Ray, and the cluster they imply (issue 18,
deliverable 5: size a cluster for 100 million customers decided in a one-hour window).

Writes ``--customers`` random retail request rows as ``--partitions`` Parquet files and an
untrained seeded policy (``benchmarks/scale_out.py``'s helpers, in a child process so the
driver never imports torch, as ``nba decide`` does not), then decides them through
``decide_partitions(..., engine="ray", workers=W)`` on a local cluster while a thread on the
driver samples, every ``--interval`` seconds, with psutil:

- the RSS of every scoring actor (processes under this driver whose title, which Ray sets,
  contains ``ray::PartitionScorer``), and its high-water mark (``VmHWM``: the true peak,
  which a sample may miss);
- the driver's RSS;
- the object store's bytes in use, which Ray reports without the dashboard only through a
  private call (``ray._private.internal_api``); ``null`` when that call fails.

An actor's idle RSS (model loaded, nothing scored) comes from a probe actor of the same class
and job, started and measured before the run. Memory per row is (peak actor RSS - idle) over
the rows of the largest partition: a worker holds one partition at a time, so the partition
size chooses its memory. Seconds per million per worker are the passes' wall seconds times
the workers over the millions decided (Ray's start and the actors' model loads excluded).

Run: ``nice python benchmarks/scale_memory.py [--customers 2000000] [--partitions 4]
[--workers 2] [--partition-rows 500000]``. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_out import AS_OF, CAPACITY, export_model, write_requests

TITLE = "ray::PartitionScorer"
MB = 1024 * 1024
#: the base and window deliverable 5 sizes a cluster for
TARGET_MILLIONS = 100
WINDOW_S = 3600.0
#: spare capacity on top of the measured rate: stragglers, a restarted actor, a slower node
HEADROOM = 1.5


def setup(work: Path, customers: int, partitions: int) -> None:
    """The requests and the model (run in a child: torch stays out of the driver)."""
    warnings.simplefilter("ignore")
    write_requests(work / "requests", customers, partitions)
    export_model(work / "model")


def _peak_rss(process: psutil.Process) -> int | None:
    """The process's RSS high-water mark (Linux ``VmHWM``), or ``None`` where not exposed."""
    try:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def scorers(driver: psutil.Process) -> list[psutil.Process]:
    """The scoring actors under this driver (Ray's raylet, the driver's child, forks them)."""
    found = []
    for child in driver.children(recursive=True):
        try:
            if TITLE in " ".join(child.cmdline()) or TITLE in child.name():
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class Sampler:
    """Peak memory of the driver, the actors and the object store while the job runs."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.driver = psutil.Process()
        self.actor_rss: dict[int, int] = {}  # pid: sampled peak
        self.actor_hwm: dict[int, int] = {}  # pid: highest VmHWM read
        self.driver_rss = 0
        self.store_bytes: int | None = None
        self.store_capacity: int | None = None
        self.store_error: str | None = None
        self.samples = 0
        self.halt = threading.Event()
        self._store = self._store_reader()
        self._thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self) -> None:
        while True:
            self.sample()
            if self.halt.wait(self.interval):
                self.sample()
                return

    def sample(self) -> None:
        self.samples += 1
        self.driver_rss = max(self.driver_rss, self.driver.memory_info().rss)
        for actor in scorers(self.driver):
            try:
                rss = actor.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            self.actor_rss[actor.pid] = max(self.actor_rss.get(actor.pid, 0), rss)
            hwm = _peak_rss(actor)
            if hwm is not None:
                self.actor_hwm[actor.pid] = max(self.actor_hwm.get(actor.pid, 0), hwm)
        if self._store is not None and self.samples % 5 == 1:  # an RPC: once a second
            try:
                used, capacity = self._store()
            except Exception as error:  # a private API: any change in it ends the sampling
                self.store_error = f"{type(error).__name__}: {error}"
                self._store = None
                return
            self.store_bytes = max(self.store_bytes or 0, used)
            self.store_capacity = capacity

    def _store_reader(self) -> Any:
        """Bytes in the object store, from the raylet's memory report (what ``ray memory
        --stats-only`` prints); needs no dashboard, but the call is private to Ray."""
        try:
            import ray
            from ray._private import internal_api

            state = internal_api.get_state_from_address(ray.get_runtime_context().gcs_address)
        except Exception as error:
            self.store_error = f"{type(error).__name__}: {error}"
            return None

        def read() -> tuple[int, int]:
            stats = internal_api.get_memory_info_reply(state, timeout_seconds=5.0).store_stats
            return int(stats.object_store_bytes_used), int(stats.object_store_bytes_avail)

        return read

    def stop(self) -> None:
        self.halt.set()
        self._thread.join()


def idle_actor_rss(job: Any) -> int:
    """RSS of a scoring actor with its model loaded and nothing scored (a probe, then gone)."""
    import ray

    from nba.scale.ray_decide import PartitionScorer

    driver = psutil.Process()
    before = {p.pid for p in scorers(driver)}
    probe = ray.remote(num_cpus=1)(PartitionScorer).remote(job)
    ray.get(probe.__ray_ready__.remote())  # returns once __init__ (the model load) is done
    time.sleep(1.0)  # let the title settle and the allocator return what __init__ freed
    found = [p for p in scorers(driver) if p.pid not in before]
    if len(found) != 1:
        raise RuntimeError(f"expected one probe actor titled {TITLE}, found {len(found)}")
    rss = found[0].memory_info().rss
    ray.kill(probe)
    try:
        found[0].wait(timeout=30)  # its CPU is the pool's: gone before the job starts
    except psutil.TimeoutExpired:
        pass
    return rss


@dataclass
class Measured:
    """What one job on Ray measured (bytes and seconds)."""

    report: Any
    sampler: Sampler
    peaks: dict[int, int]
    idle: int
    driver_idle: int
    largest: int
    capacity: float
    wall: float
    cluster_s: float
    setup_s: float

    @property
    def actor_peak(self) -> int:
        return max(self.peaks.values())

    @property
    def per_million_rows(self) -> float:
        return (self.actor_peak - self.idle) / MB / (self.largest / 1e6)

    def per_worker(self, workers: int) -> dict[str, float]:
        millions = self.report.customers / 1e6
        return {n: self.report.seconds[n] * workers / millions for n in ("pass_1", "pass_2")}


def measure(args: argparse.Namespace, work: Path, setup_s: float) -> Measured:
    """Decide the partitions on a local cluster while the sampler watches every process."""
    import pyarrow.parquet as pq
    import ray

    from nba.scale.cluster import connect
    from nba.scale.ray_decide import DecideJob, decide_partitions, partition_files

    files = partition_files(work / "requests")
    largest = max(pq.ParquetFile(p).metadata.num_rows for p in files)
    job = DecideJob(str(work / "model"), AS_OF, capacity=CAPACITY)
    started = time.perf_counter()
    connect(None, num_cpus=args.workers)  # decide_partitions reuses this local cluster
    idle = idle_actor_rss(job)
    driver_idle = psutil.Process().memory_info().rss
    sampler = Sampler(interval=args.interval)
    sampler.start()
    decided = time.perf_counter()
    report = decide_partitions(job, work / "requests", work / "out", "ray", workers=args.workers)
    wall = time.perf_counter() - decided
    sampler.stop()
    capacity = float(ray.cluster_resources().get("object_store_memory", 0.0))
    ray.shutdown()
    peaks = {pid: max(rss, sampler.actor_hwm.get(pid, 0)) for pid, rss in sampler.actor_rss.items()}
    if not peaks:
        raise SystemExit(f"no process titled {TITLE} was sampled: nothing to report")
    return Measured(
        report,
        sampler,
        peaks,
        idle,
        driver_idle,
        largest,
        capacity,
        wall,
        decided - started,
        setup_s,
    )


def store_note(m: Measured) -> str:
    if m.sampler.store_bytes is not None:
        return "peak bytes in use, from the raylet's memory report (a private Ray call)"
    return (
        "bytes in use not exposed without the dashboard: Ray's memory report needs grpcio, "
        f"which ray[default] brings and nba[ray] does not ({m.sampler.store_error})"
    )


def print_report(m: Measured, args: argparse.Namespace) -> None:
    """The table of processes and the derived figures, as docs/scale_out.md quotes them."""
    sampler, report = m.sampler, m.report
    per_worker = m.per_worker(args.workers)
    per_million = per_worker["pass_1"] + per_worker["pass_2"]
    print(
        f"{report.customers:,} customers, {report.partitions} partitions (largest {m.largest:,} "
        f"rows), {args.workers} workers; Ray start + actors {m.cluster_s:.1f} s, passes "
        f"{m.wall:.1f} s; {sampler.samples} samples every {args.interval} s"
    )
    print(f"| {'process':<26} | {'idle MB':>8} | {'sampled peak MB':>15} | {'VmHWM MB':>8} |")
    print(f"|{'-' * 28}|{'-' * 9}:|{'-' * 16}:|{'-' * 9}:|")
    for pid in sorted(m.peaks):
        hwm = sampler.actor_hwm.get(pid)
        print(
            f"| {TITLE + ' ' + str(pid):<26} | {m.idle / MB:>8.0f} | "
            f"{sampler.actor_rss[pid] / MB:>15.0f} | "
            f"{(hwm / MB if hwm else float('nan')):>8.0f} |"
        )
    print(
        f"| {'driver':<26} | {m.driver_idle / MB:>8.0f} | {sampler.driver_rss / MB:>15.0f} | "
        f"{'':>8} |"
    )
    store = f"{sampler.store_bytes / MB:.1f} MB" if sampler.store_bytes is not None else "n/a"
    print(f"object store: {store} in use of {m.capacity / MB:,.0f} MB; {store_note(m)}")
    print(
        f"per million rows in a partition: {m.per_million_rows:.0f} MB; seconds per million per "
        f"worker: pass 1 {per_worker['pass_1']:.2f} + pass 2 {per_worker['pass_2']:.2f} = "
        f"{per_million:.2f} (the plan: {report.seconds['plan']:.2f} s once, on the driver)"
    )
    workers_100m, memory_gb = sizing(m, args)
    print(
        f"100M in {WINDOW_S / 3600:.0f} h: ceil({HEADROOM} x {TARGET_MILLIONS} x "
        f"{per_million:.2f} / {WINDOW_S:.0f}) = {workers_100m} worker(s), "
        f"{memory_gb:.2f} GB each at {args.partition_rows:,} rows a partition"
    )


def sizing(m: Measured, args: argparse.Namespace) -> tuple[int, float]:
    """Workers for 100M customers in the window (with headroom), and GB per worker."""
    per_million = sum(m.per_worker(args.workers).values())  # the plan: once, on the driver
    workers = math.ceil(HEADROOM * TARGET_MILLIONS * per_million / WINDOW_S)
    memory_gb = (m.idle / MB + m.per_million_rows * args.partition_rows / 1e6) / 1024
    return workers, memory_gb


def summary(m: Measured, args: argparse.Namespace) -> dict[str, Any]:
    import ray

    per_worker = m.per_worker(args.workers)
    workers_100m, memory_gb = sizing(m, args)
    store_bytes = m.sampler.store_bytes
    return {
        "customers": m.report.customers,
        "partitions": m.report.partitions,
        "largest_partition_rows": m.largest,
        "workers": args.workers,
        "actor_peak_rss_mb": round(m.actor_peak / MB, 1),
        "actor_idle_rss_mb": round(m.idle / MB, 1),
        "rss_mb_per_million_rows_in_partition": round(m.per_million_rows, 1),
        "driver_peak_rss_mb": round(m.sampler.driver_rss / MB, 1),
        "driver_idle_rss_mb": round(m.driver_idle / MB, 1),
        "object_store_peak_mb": round(store_bytes / MB, 2) if store_bytes is not None else None,
        "object_store_capacity_mb": round(m.capacity / MB, 1),
        "object_store_note": store_note(m),
        "seconds_per_million_per_worker": round(sum(per_worker.values()), 3),
        "seconds_per_million_per_worker_pass_1": round(per_worker["pass_1"], 3),
        "seconds_per_million_per_worker_pass_2": round(per_worker["pass_2"], 3),
        "plan_seconds": round(m.report.seconds["plan"], 3),
        "headroom_factor": HEADROOM,
        "implied_workers_for_100m_in_1h": workers_100m,
        "partition_rows": args.partition_rows,
        "implied_memory_per_worker_gb": round(memory_gb, 2),
        "passes_seconds": round(m.wall, 1),
        "cluster_start_seconds": round(m.cluster_s, 1),
        "setup_seconds": round(m.setup_s, 1),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "ray": ray.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--partition-rows", type=int, default=500_000, help="rows per partition to size for"
    )
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the unsigned export: the benchmark's own choice
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nba_scale_memory_"))
    began = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(
        target=setup, args=(work, args.customers, args.partitions)
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"setup failed (exit {child.exitcode})")
    measured = measure(args, work, time.perf_counter() - began)
    print_report(measured, args)
    print(json.dumps(summary(measured, args)))


if __name__ == "__main__":
    main()
