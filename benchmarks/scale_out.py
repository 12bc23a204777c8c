"""Deciding a base of millions on Ray (issue 18's targets: 10,000,000 customers on 2 cores in
under 2 minutes, at least 1.6x one worker's throughput, identical to the single-process
scorer).

Writes ``--customers`` random valid request rows (retail) as ``--partitions`` Parquet files
(untimed), exports an untrained seeded PPO policy (the network's cost is what matters, not its
skill), then times in one run, side by side:

- ``single_process``: one :meth:`PolicyScorer.score_batch` per partition with the two-pass
  capacity plan, in this process (``--engine local``): the work without Ray;
- ``ray_1`` and ``ray_2``: the same job on a local Ray cluster of 1 and 2 scoring actors
  (``--engine ray --workers N``);

with the retail call centre's 500 a day and a direct-mail limit binding across partitions. It
then checks the Ray output equal to the single-process output, decision for decision.

Then ``nba sweep``'s engine (:func:`nba.scale.sweep.sweep`): ``--trials`` (8) short PPO trials
of ``--sweep-timesteps`` (3,000,000) on retail with ASHA (3 rungs), two at a time on this
machine's local cluster, in a private MLflow store; timed end to end (cluster start to the
best trial registered), with each trial's status and value printed.

Run: ``nice python benchmarks/scale_out.py [--customers 10000000] [--partitions 20]
[--trials 8] [--sections decide sweep]``. The last line is JSON with ``decide_10m_seconds``
(2 workers), ``speedup_2_vs_1``, ``identical_to_single_process`` and ``sweep_seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

AS_OF = "2026-11-23T12:00:00+00:00"
CAPACITY = {"call_centre": 500, "direct_mail": 20_000}


def write_requests(folder: Path, customers: int, partitions: int, seed: int = 0) -> None:
    """``customers`` random valid retail request rows as ``partitions`` Parquet files."""
    from nba.scenarios import load_scenario

    scenario = load_scenario("retail")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    edges = np.linspace(0, customers, partitions + 1).astype(np.int64)
    for k in range(partitions):
        n = int(edges[k + 1] - edges[k])
        frame = pd.DataFrame(
            {
                "customer_id": np.char.add("c", np.arange(edges[k], edges[k + 1]).astype(str)),
                "persona": pd.Categorical.from_codes(
                    rng.integers(0, len(scenario.personas), n), scenario.persona_names
                ),
                "stage": pd.Categorical.from_codes(
                    rng.integers(0, len(scenario.stages), n), scenario.stage_names
                ),
                "pressure": rng.integers(0, scenario.contact_rules.pressure_capacity + 1, n),
                "discount_habit": rng.random(n) < 0.3,
                "opted_out": rng.random(n) < 0.05,
                "days_since_direct": rng.integers(1, 12, n),
                "days_since_messaging": rng.integers(1, 4, n),
            }
        )
        frame.to_parquet(folder / f"requests-{k:04d}.parquet", index=False)


def export_model(folder: Path) -> None:
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.scenarios import load_scenario
    from nba.serving.export import export_policy

    scenario = load_scenario("retail")
    model = PPO("MlpPolicy", TwinVecEnv(scenario, n_envs=4, seed=0), seed=0, device="cpu")
    export_policy(model, scenario, folder, algo="ppo")


def timed(job: Any, requests: Path, out: Path, engine: str, workers: int) -> dict[str, Any]:
    from nba.scale.ray_decide import decide_partitions

    began = time.perf_counter()
    report = decide_partitions(job, requests, out, engine=engine, workers=workers)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "customers": report.customers, **report.seconds}


def identical(first: Path, second: Path) -> bool:
    """Every decision equal, partition by partition; network outputs within float32 rounding
    (a matrix product rounds differently for different batch shapes)."""
    parts = sorted(first.glob("part-*.parquet"))
    if [p.name for p in parts] != [p.name for p in sorted(second.glob("part-*.parquet"))]:
        return False
    for part in parts:
        a, b = pd.read_parquet(part), pd.read_parquet(second / part.name)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            return False
        for column in a.columns:
            x, y = a[column], b[column]
            if x.dtype.kind == "f":
                same = np.allclose(x, y, rtol=1e-5, atol=1e-6, equal_nan=True)
            else:
                same = x.equals(y)  # missing cells equal (no suppressed action, say)
            if not same:
                return False
    return True


def decide_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Single process, then Ray with 1 and 2 workers, side by side; the identity check."""
    began = time.perf_counter()
    write_requests(work / "requests", args.customers, args.partitions)
    export_model(work / "model")
    setup = time.perf_counter() - began
    from nba.scale.ray_decide import DecideJob

    job = DecideJob(str(work / "model"), AS_OF, capacity=CAPACITY)
    runs = {"single_process": timed(job, work / "requests", work / "local", "local", 1)}
    import ray

    for workers in (1, 2):
        runs[f"ray_{workers}"] = timed(
            job, work / "requests", work / f"ray{workers}", "ray", workers
        )
        ray.shutdown()  # a fresh local cluster of the next size
    checked = time.perf_counter()
    same = identical(work / "ray2", work / "local")
    print(f"identity check: {time.perf_counter() - checked:.1f} s")
    for name, run in runs.items():
        rate = run["customers"] / run["seconds"]
        print(
            f"{name:>15}: {run['seconds']:7.1f} s ({rate:,.0f} customers/s; pass 1 "
            f"{run['pass_1']:.1f} s, plan {run['plan']:.2f} s, pass 2 {run['pass_2']:.1f} s)"
        )
    scale = 10_000_000 / args.customers
    return {
        "customers": args.customers,
        "partitions": args.partitions,
        "decide_10m_seconds": round(runs["ray_2"]["seconds"] * scale, 1),
        "speedup_2_vs_1": round(runs["ray_1"]["seconds"] / runs["ray_2"]["seconds"], 3),
        "overhead_vs_single_process": round(
            runs["ray_1"]["seconds"] / runs["single_process"]["seconds"], 3
        ),
        "identical_to_single_process": same,
        "setup_seconds": round(setup, 1),
    }


def sweep_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``nba sweep``'s engine end to end: 8 short PPO trials, ASHA, two at a time."""
    import ray

    from nba.scale.sweep import sweep
    from nba.scale.sweep_record import COMPLETED, STOPPED

    if ray.is_initialized():
        ray.shutdown()
    began = time.perf_counter()
    result = sweep(
        "retail",
        "ppo",
        trials=args.trials,
        timesteps=args.sweep_timesteps,
        rungs=3,
        seed=0,
        workers=2,
        tracking_uri=f"sqlite:///{work / 'sweep.db'}",
        experiment="scale-out-benchmark",
        output_dir=work / "sweep",
    )
    seconds = time.perf_counter() - began
    shown = ["trial", "status", "timesteps", "value", "share_of_optimum"]
    print(result.trials[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"sweep: {args.trials} trials in {seconds:.1f} s (inside the engine {result.seconds:.1f} s)"
    )
    statuses = result.trials["status"]
    return {
        "sweep_seconds": round(seconds, 1),
        "sweep_trials": args.trials,
        "sweep_timesteps_per_trial": args.sweep_timesteps,
        "sweep_completed": int((statuses == COMPLETED).sum()),
        "sweep_stopped_early": int((statuses == STOPPED).sum()),
        "sweep_best_share_of_optimum": round(
            float(result.trials["share_of_optimum"][statuses == COMPLETED].max()), 4
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--sweep-timesteps", type=int, default=3_000_000)
    parser.add_argument("--sections", nargs="+", default=["decide", "sweep"])
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the unsigned export: the benchmark's own choice
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nba_scale_"))
    summary: dict[str, Any] = {
        "decide_10m_seconds": None,
        "speedup_2_vs_1": None,
        "identical_to_single_process": None,
        "sweep_seconds": None,
    }
    if "decide" in args.sections:
        summary |= decide_section(args, work)
    if "sweep" in args.sections:
        summary |= sweep_section(args, work)
    summary |= {
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
