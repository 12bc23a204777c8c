"""Serving latency and throughput of ``PolicyScorer`` against SB3 ``model.predict``.

Both sides use the same PPO policy (64x64, the packaged architecture; weights do not change
timings). Single customer: ``PolicyScorer.score(dict)`` (validation + features + contact rules
+ network + ranking) against ``model.predict`` on the already-built observation (no validation,
no rules), over the same random valid customers. Batch: ``score_batch`` on 1,000,000 customers
(validation included) against ``model.predict`` on their observations.

Run: ``python benchmarks/serving_latency.py``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import PPO

from nba.envs import TwinVecEnv
from nba.scenarios import load_scenario
from nba.serving.export import export_policy
from nba.serving.scorer import PolicyScorer

AS_OF = pd.Timestamp("2026-11-25T10:00:00Z")


def customers(n: int, seed: int) -> pd.DataFrame:
    scenario = load_scenario("retail")
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "persona": pd.Categorical(rng.choice(scenario.persona_names, n)),
            "stage": pd.Categorical(rng.choice(scenario.stage_names, n)),
            "pressure": rng.integers(0, 7, n),
            "discount_habit": rng.random(n) < 0.3,
            "opted_out": rng.random(n) < 0.1,
            "days_since_direct": rng.integers(1, 12, n),
            "days_since_messaging": rng.integers(1, 4, n),
        }
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3_000, help="single-customer calls")
    parser.add_argument("--batch", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(2)

    scenario = load_scenario("retail")
    model = PPO(
        "MlpPolicy",
        TwinVecEnv(scenario, n_envs=4),
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [64, 64]},
    )
    with tempfile.TemporaryDirectory() as folder:
        export_policy(model, scenario, folder, algo="ppo")
        scorer = PolicyScorer.load(folder)

    rows = customers(args.single, seed=1)
    records = rows.astype({"persona": str, "stage": str}).to_dict(orient="records")
    parsed = scorer.schema.parse(rows, as_of=AS_OF.to_pydatetime())
    observations = scorer.features.build(parsed.state, parsed.day, weekday=parsed.weekday)
    for i in range(200):  # warm-up both sides
        scorer.score(records[i], as_of=AS_OF)
        model.predict(observations[i : i + 1], deterministic=True)
    ours, theirs = [], []
    for i, record in enumerate(records):
        started = time.perf_counter()
        scorer.score(record, as_of=AS_OF)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.predict(observations[i : i + 1], deterministic=True)
        theirs.append(time.perf_counter() - started)
    ours_p50, ours_p99 = percentiles(ours)
    sb3_p50, sb3_p99 = percentiles(theirs)

    big = customers(args.batch, seed=2)
    scorer.score_batch(big.head(10_000), as_of=AS_OF)
    started = time.perf_counter()
    decisions = scorer.score_batch(big, as_of=AS_OF)
    batch_seconds = time.perf_counter() - started
    parsed_big = scorer.schema.parse(big, as_of=AS_OF.to_pydatetime())
    big_obs = scorer.features.build(parsed_big.state, parsed_big.day, weekday=parsed_big.weekday)
    started = time.perf_counter()
    model.predict(big_obs, deterministic=True)
    sb3_batch_seconds = time.perf_counter() - started
    assert len(decisions) == args.batch

    print(f"{'':>28} {'p50 us':>10} {'p99 us':>10}")
    print(f"{'PolicyScorer.score':>28} {ours_p50:>10.1f} {ours_p99:>10.1f}")
    print(f"{'SB3 model.predict':>28} {sb3_p50:>10.1f} {sb3_p99:>10.1f}")
    print(f"single-customer p50 speed-up over SB3: x{sb3_p50 / ours_p50:.2f} (target x5)")
    print(
        f"score_batch: {args.batch:,} customers in {batch_seconds:.3f} s "
        f"({args.batch / batch_seconds:,.0f}/s; target < 1.5 s); SB3 predict on their "
        f"observations alone: {sb3_batch_seconds:.3f} s"
    )
    print(
        json.dumps(
            {
                "benchmark": "serving_latency",
                "single_p50_us": round(ours_p50, 1),
                "single_p99_us": round(ours_p99, 1),
                "sb3_predict_p50_us": round(sb3_p50, 1),
                "sb3_predict_p99_us": round(sb3_p99, 1),
                "single_speedup_vs_sb3": round(sb3_p50 / ours_p50, 2),
                "batch_customers": args.batch,
                "batch_seconds": round(batch_seconds, 3),
                "sb3_batch_predict_seconds": round(sb3_batch_seconds, 3),
                "targets": {"single_speedup_vs_sb3": 5, "batch_seconds": 1.5},
                "targets_met": {
                    "single": bool(sb3_p50 / ours_p50 >= 5),
                    "batch": bool(batch_seconds < 1.5),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
