"""Customer-steps per second of the vectorised twin against stepping customers one at a time.

Both sides run the same dynamics (the same ``CustomerTwin`` code and tables) in this process:
the vectorised twin steps N customers per call; the loop keeps one N=1 twin per customer and
steps them in a Python loop, as per-customer simulators do. Requested actions are uniform over
the catalogue, so the contact rules block many of them, as in training.

Run: ``python benchmarks/twin_throughput.py``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from nba import CustomerTwin

SIZES = (1, 256, 4_096, 65_536)
LOOP_CUSTOMERS = 256


def vectorised_rate(base: CustomerTwin, n: int, min_seconds: float) -> float:
    twin = base.spawn(seed=n)
    twin.reset(n)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, twin.n_actions, size=(64, n))
    twin.step(actions[0])  # warm-up
    steps, started = 0, time.perf_counter()
    while True:
        twin.step(actions[steps % 64])
        steps += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds and steps >= 10:
            return n * steps / elapsed


def loop_rate(base: CustomerTwin, customers: int, min_seconds: float) -> float:
    twins = [base.spawn(seed=i) for i in range(customers)]
    for twin in twins:
        twin.reset(1)
    rng = np.random.default_rng(0)
    actions = rng.integers(0, base.n_actions, size=(64, customers, 1))
    days, started = 0, time.perf_counter()
    while True:
        today = actions[days % 64]
        for i, twin in enumerate(twins):
            twin.step(today[i])
        days += 1
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return customers * days / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="retail")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum time per measurement")
    args = parser.parse_args()

    base = CustomerTwin(args.scenario, seed=0)
    base.tables  # build once, outside the timings  # noqa: B018
    loop = loop_rate(base, LOOP_CUSTOMERS, args.seconds)
    rates = {n: vectorised_rate(base, n, args.seconds) for n in SIZES}

    print(f"scenario {args.scenario}: {base.space.size:,} states, {base.n_actions} actions")
    print(f"{'customers':>10} {'customer-steps/s':>18} {'x one-at-a-time loop':>22}")
    for n, rate in rates.items():
        print(f"{n:>10,} {rate:>18,.0f} {rate / loop:>22.1f}")
    print(f"{'loop':>10} {loop:>18,.0f} {1.0:>22.1f}   ({LOOP_CUSTOMERS} N=1 twins)")
    result = {
        "benchmark": "twin_throughput",
        "scenario": args.scenario,
        "python": platform.python_version(),
        "customer_steps_per_s": {str(n): round(r) for n, r in rates.items()},
        "loop_customer_steps_per_s": round(loop),
        "speedup_vs_loop": {str(n): round(r / loop, 1) for n, r in rates.items()},
        "target_4096_steps_per_s": 5_000_000,
        "target_4096_speedup": 50,
        "targets_met": bool(rates[4_096] >= 5_000_000 and rates[4_096] / loop >= 50),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
