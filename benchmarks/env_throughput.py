"""Env steps per second: the native ``TwinVecEnv`` against per-customer env stacks.

Three ways to step the same number of customers of the same scenario, measured in one run:
``TwinVecEnv`` (one numpy call for all), Gymnasium's ``SyncVectorEnv`` over ``JourneyEnv``
instances, and SB3's ``DummyVecEnv`` over the same. Actions are uniform over the catalogue.

Run: ``python benchmarks/env_throughput.py [--customers 4096]``. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import gymnasium
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv

from nba.envs import JourneyEnv, TwinVecEnv


def measure(step: Callable[[np.ndarray], object], actions: np.ndarray, min_seconds: float) -> float:
    """Customer-steps per second of ``step`` over pre-drawn action batches."""
    step(actions[0])  # warm-up
    steps, started = 0, time.perf_counter()
    while True:
        step(actions[steps % len(actions)])
        steps += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and steps >= 3:
            return actions.shape[1] * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4096)
    parser.add_argument("--scenario", default="retail")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    n = args.customers

    rng = np.random.default_rng(0)
    twin_env = TwinVecEnv(args.scenario, n_envs=n, seed=0)
    actions = rng.integers(0, twin_env.action_space.n, size=(16, n))

    started = time.perf_counter()
    sync = gymnasium.vector.SyncVectorEnv(
        [lambda: JourneyEnv(args.scenario) for _ in range(n)], autoreset_mode="SameStep"
    )
    dummy = DummyVecEnv([lambda: JourneyEnv(args.scenario) for _ in range(n)])
    build_seconds = time.perf_counter() - started

    twin_env.reset()
    sync.reset(seed=0)
    dummy.seed(0)
    dummy.reset()
    rates = {
        "TwinVecEnv": measure(lambda a: twin_env.step(a), actions, args.seconds),
        "SyncVectorEnv(JourneyEnv)": measure(lambda a: sync.step(a), actions, args.seconds),
        "DummyVecEnv(JourneyEnv)": measure(lambda a: dummy.step(a), actions, args.seconds),
    }
    reference = rates["TwinVecEnv"]
    print(f"{n:,} customers of '{args.scenario}'; per-customer envs built in {build_seconds:.1f}s")
    print(f"{'env':>28} {'customer-steps/s':>18} {'TwinVecEnv is x faster':>24}")
    for name, rate in rates.items():
        print(f"{name:>28} {rate:>18,.0f} {reference / rate:>24.1f}")
    result = {
        "benchmark": "env_throughput",
        "customers": n,
        "steps_per_s": {k: round(v) for k, v in rates.items()},
        "speedup_vs_sync_vector_env": round(reference / rates["SyncVectorEnv(JourneyEnv)"], 1),
        "speedup_vs_dummy_vec_env": round(reference / rates["DummyVecEnv(JourneyEnv)"], 1),
        "target_speedup_vs_sync_vector_env": 100,
        "target_met": bool(reference / rates["SyncVectorEnv(JourneyEnv)"] >= 100),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
