"""Serving latency and throughput of ``PolicyScorer`` against SB3 ``model.predict``.

Both sides use the same PPO policy (64x64, the packaged architecture; weights do not change
timings). Single customer: ``PolicyScorer.score(dict)`` (validation + features + contact rules
+ network + ranking) against ``model.predict`` on the already-built observation (no validation,
no rules), over the same random valid customers. Every documented request form is timed side by
side, interleaved call by call so background load falls on all of them alike:

- ``days_since``: contact history as ``days_since_<cap>`` counts (the persona's consent);
- ``timestamps``: ``last_contact_<channel>`` ISO 8601 times instead (some empty);
- ``consent``: ``days_since`` plus every ``consent_<channel>``, set at random;
- ``exploration``: ``days_since`` with epsilon-greedy exploration (0.1, seeded);
- ``exploration_softmax``: ``days_since`` with softmax exploration (seeded).

Batch: ``score_batch`` on 1,000,000 customers (validation included) against ``model.predict``
on their observations.

Run: ``python benchmarks/serving_latency.py``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from stable_baselines3 import PPO

from nba.envs import TwinVecEnv
from nba.scenarios import load_scenario
from nba.serving.export import export_policy
from nba.serving.scorer import Exploration, PolicyScorer

AS_OF = pd.Timestamp("2026-11-25T10:00:00Z")
TARGET_SINGLE_US = 100.0  # p50 per form


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


def request_forms(
    records: list[dict[str, Any]], scorer: PolicyScorer, seed: int
) -> dict[str, list[dict[str, Any]]]:
    """The same customers in each documented request form."""
    rng = np.random.default_rng(seed)
    capped = scorer.schema.capped_channels
    channels = scorer.policy.scenario.channel_names
    stamped, consented = [], []
    for record in records:
        history = {k: v for k, v in record.items() if not k.startswith("days_since_")}
        for channel in capped:
            hours = float(rng.uniform(1.0, 24.0 * 12))
            when = (AS_OF - pd.Timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
            history[f"last_contact_{channel}"] = None if rng.random() < 0.3 else when
        stamped.append(history)
        consent = {f"consent_{c}": bool(rng.random() < 0.7) for c in channels}
        consented.append({**record, **consent})
    return {"days_since": records, "timestamps": stamped, "consent": consented}


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.array(samples) * 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=3_000, help="single-customer calls")
    parser.add_argument("--batch", type=int, default=1_000_000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, scorer, epsilon, softmax = _policies()
    single, (sb3_p50, sb3_p99) = _single_timings(model, scorer, epsilon, softmax, args.single)
    batch_seconds, sb3_batch_seconds = _batch_timings(model, scorer, args.batch)
    _report(args, single, sb3_p50, sb3_p99, batch_seconds, sb3_batch_seconds)


def _policies() -> tuple[PPO, PolicyScorer, PolicyScorer, PolicyScorer]:
    """An untrained 64x64 PPO and its export, served greedy, epsilon-greedy and softmax."""
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
        epsilon = PolicyScorer.load(folder, exploration=Exploration("epsilon", 0.1, seed=7))
        softmax = PolicyScorer.load(folder, exploration=Exploration("softmax", seed=7))
    return model, scorer, epsilon, softmax


def _single_timings(
    model: PPO, scorer: PolicyScorer, epsilon: PolicyScorer, softmax: PolicyScorer, n: int
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """(p50, p99) in us of every request form and of SB3's ``predict``, calls interleaved."""
    rows = customers(n, seed=1)
    records = rows.astype({"persona": str, "stage": str}).to_dict(orient="records")
    forms = request_forms(records, scorer, seed=3)
    cases = [(name, scorer, requests) for name, requests in forms.items()]
    cases += [("exploration", epsilon, records), ("exploration_softmax", softmax, records)]
    parsed = scorer.schema.parse(rows, as_of=AS_OF.to_pydatetime())
    observations = scorer.features.build(parsed.state, parsed.day, weekday=parsed.weekday)
    for i in range(200):  # warm-up every side (and build the planning day's decision tables)
        for _, served, requests in cases:
            served.score(requests[i], as_of=AS_OF)
        model.predict(observations[i : i + 1], deterministic=True)
    timings: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    theirs = []
    for i in range(len(records)):  # interleaved: load on the machine hits every form alike
        for name, served, requests in cases:
            started = time.perf_counter()
            served.score(requests[i], as_of=AS_OF)
            timings[name].append(time.perf_counter() - started)
        started = time.perf_counter()
        model.predict(observations[i : i + 1], deterministic=True)
        theirs.append(time.perf_counter() - started)
    single = {name: percentiles(samples) for name, samples in timings.items()}
    return single, percentiles(theirs)


def _batch_timings(model: PPO, scorer: PolicyScorer, n: int) -> tuple[float, float]:
    """Seconds for ``score_batch`` on ``n`` customers, and for SB3's predict on their obs."""
    big = customers(n, seed=2)
    scorer.score_batch(big.head(10_000), as_of=AS_OF)
    started = time.perf_counter()
    decisions = scorer.score_batch(big, as_of=AS_OF)
    batch_seconds = time.perf_counter() - started
    parsed_big = scorer.schema.parse(big, as_of=AS_OF.to_pydatetime())
    big_obs = scorer.features.build(parsed_big.state, parsed_big.day, weekday=parsed_big.weekday)
    started = time.perf_counter()
    model.predict(big_obs, deterministic=True)
    sb3_batch_seconds = time.perf_counter() - started
    assert len(decisions) == n
    return batch_seconds, sb3_batch_seconds


def _report(
    args: argparse.Namespace,
    single: dict[str, tuple[float, float]],
    sb3_p50: float,
    sb3_p99: float,
    batch_seconds: float,
    sb3_batch_seconds: float,
) -> None:
    """The table, the summary lines and the JSON record, on stdout."""
    ours_p50 = single["days_since"][0]
    every_form_met = max(p50 for p50, _ in single.values()) < TARGET_SINGLE_US

    print(f"{'one customer':>40} {'p50 us':>10} {'p99 us':>10}")
    for name, (p50, p99) in single.items():
        print(f"{'PolicyScorer.score ' + name:>40} {p50:>10.1f} {p99:>10.1f}")
    print(f"{'SB3 model.predict (ready obs)':>40} {sb3_p50:>10.1f} {sb3_p99:>10.1f}")
    print(
        f"single-customer p50 speed-up over SB3 (days_since): x{sb3_p50 / ours_p50:.2f} (target x5)"
    )
    print(f"every form p50 < {TARGET_SINGLE_US:.0f} us: {every_form_met}")
    print(
        f"score_batch: {args.batch:,} customers in {batch_seconds:.3f} s "
        f"({args.batch / batch_seconds:,.0f}/s; target < 1.5 s); SB3 predict on their "
        f"observations alone: {sb3_batch_seconds:.3f} s"
    )
    print(
        json.dumps(
            {
                "benchmark": "serving_latency",
                "single_p50_us": {name: round(p50, 1) for name, (p50, _) in single.items()},
                "single_p99_us": {name: round(p99, 1) for name, (_, p99) in single.items()},
                "sb3_predict_p50_us": round(sb3_p50, 1),
                "sb3_predict_p99_us": round(sb3_p99, 1),
                "single_speedup_vs_sb3": round(sb3_p50 / ours_p50, 2),
                "batch_customers": args.batch,
                "batch_seconds": round(batch_seconds, 3),
                "sb3_batch_predict_seconds": round(sb3_batch_seconds, 3),
                "targets": {
                    "single_speedup_vs_sb3": 5,
                    "single_p50_us_every_form": TARGET_SINGLE_US,
                    "batch_seconds": 1.5,
                },
                "targets_met": {
                    "single": bool(sb3_p50 / ours_p50 >= 5),
                    "single_every_form": bool(every_form_met),
                    "batch": bool(batch_seconds < 1.5),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
