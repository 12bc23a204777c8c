"""The continuous loop against a hidden world, over seeds (issue 17's targets).

Runs ``--loops`` closed loops (:func:`nba.loop.closed_loop.run_loop`, one seed each, on the
default world unless ``--world``: retail, 20,000 customers, response parameters up to 30%
wrong, the sms channel's response halving in week 6) in ``--workers`` processes, and one
``nba cycle`` of 100,000 customers (``benchmarks/cycle_100k.py``) unless ``--skip-cycle``.

Printed per loop: the champion's share of the world twin's gap in week 12 (and of the
full-information optimum's), the weeks it took to recover after the change, the gate's
decisions, and the lift interval against the true lift. Then over loops:

- ``week12_share``: median week-12 share of the gap between business as usual and the policy
  the same planner serves with the world's exact parameters (``week12_share_worst`` beside);
- ``week12_share_full_information``: the same against the full-information optimum, which no
  policy deciding from events reaches (see the closed loop's docstring);
- ``recovery_weeks``: median (and worst) weeks after the change to ``recovery_level`` (0.8);
- ``false_promotion_rate``: promotions of a policy worse in the world's truth over all gate
  decisions; ``held_back_rate``: refusals of a better one over all gate decisions;
- ``lift_coverage``: loops whose 95% lift interval (treated vs holdout, cumulative value per
  customer) covers the true lift (shadow cohorts);
- ``cycle_seconds_100k``: one ``nba cycle`` for 100,000 customers.

Run: ``nice python benchmarks/closed_loop.py --loops 20 --workers 2`` (about 20 minutes on 2
cores). The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _one_loop(arguments: tuple[str | None, int, dict[str, Any]]) -> dict[str, Any]:
    """One seeded loop in a worker process (one BLAS thread: the workers share the cores)."""
    from threadpoolctl import threadpool_limits

    from nba.loop.closed_loop import run_loop
    from nba.loop.world import load_world

    world, seed, overrides = arguments
    with threadpool_limits(1):
        report = run_loop(load_world(world, **overrides), seed=seed)
    return {**report.summary, "gates": report.gates.to_dict(orient="records")}


def _aggregate(loops: list[dict[str, Any]]) -> dict[str, Any]:
    shares = np.array([loop["week12_share"] for loop in loops])
    full = np.array([loop["week12_share_full_information"] for loop in loops])
    recoveries = [loop["recovery_weeks"] for loop in loops]
    recovered = [r for r in recoveries if r is not None]
    decisions = sum(loop["gate_decisions"] for loop in loops)
    false = sum(loop["false_promotions"] for loop in loops)
    held = sum(loop["held_back_better"] for loop in loops)
    return {
        "week12_share": float(np.median(shares)),
        "week12_share_worst": float(shares.min()),
        "week12_share_full_information": float(np.median(full)),
        "recovery_weeks": float(np.median(recovered)) if recovered else None,
        "recovery_weeks_worst": max(recovered) if len(recovered) == len(loops) else None,
        "loops_not_recovered": len(loops) - len(recovered),
        "change_detected_within_1_week": float(np.mean([_detected(loop, 1) for loop in loops])),
        "gate_decisions": decisions,
        "promotions": sum(loop["promotions"] for loop in loops),
        "false_promotion_rate": false / decisions if decisions else 0.0,
        "held_back_rate": held / decisions if decisions else 0.0,
        "lift_coverage": float(np.mean([loop["lift_covered"] for loop in loops])),
        "loops": len(loops),
        "loop_seconds_median": float(np.median([loop["seconds"] for loop in loops])),
    }


def _detected(loop: dict[str, Any], weeks: int) -> bool:
    after = loop.get("change_detected_after_weeks")
    return after is not None and after <= weeks


def _print_loop(loop: dict[str, Any]) -> None:
    print(
        f"seed {loop['seed']:>3}: week-12 share {loop['week12_share']:.3f} "
        f"(full information {loop['week12_share_full_information']:.3f}, start "
        f"{loop['start_share']:.3f}, unfitted {loop['start_share_unfitted']:.3f}), recovery "
        f"{loop['recovery_weeks']} wk, gate {loop['promotions']}/{loop['gate_decisions']} "
        f"promoted, {loop['false_promotions']} false, {loop['held_back_better']} held back; "
        f"lift {loop['lift']:+.2f} [{loop['lift_lower']:+.2f}, {loop['lift_upper']:+.2f}] "
        f"true {loop['true_lift']:+.2f}; {loop['seconds']:.0f} s",
        flush=True,
    )


def _cycle(customers: int, train_steps: int) -> dict[str, Any]:
    from cycle_100k import measure_cycle

    result = measure_cycle(customers=customers, train_steps=train_steps)
    return {"seconds": result["cycle_seconds"], "steps": result["steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default=None, help="World YAML (default: the built-in).")
    parser.add_argument("--loops", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--shadow-customers", type=int, default=None)
    parser.add_argument("--eval-customers", type=int, default=None)
    parser.add_argument("--skip-cycle", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every loop and gate.")
    parser.add_argument("--cycle-customers", type=int, default=100_000)
    parser.add_argument("--cycle-train-steps", type=int, default=200_000)
    args = parser.parse_args()
    overrides = {
        "customers": args.customers,
        "shadow_customers": args.shadow_customers,
        "eval_customers": args.eval_customers,
    }
    seeds = range(args.first_seed, args.first_seed + args.loops)
    began = time.perf_counter()
    work = [(args.world, seed, overrides) for seed in seeds]
    loops: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for loop in pool.map(_one_loop, work):
            _print_loop(loop)
            loops.append(loop)
    summary = _aggregate(loops)
    if args.out is not None:
        args.out.write_text(json.dumps(loops, indent=1, default=str))
    summary["loops_seconds"] = time.perf_counter() - began
    summary["cycle_seconds_100k"] = None
    if not args.skip_cycle:
        cycle = _cycle(args.cycle_customers, args.cycle_train_steps)
        summary["cycle_customers"], summary["cycle_steps"] = args.cycle_customers, cycle["steps"]
        summary["cycle_seconds_100k"] = cycle["seconds"]
    for key, value in summary.items():
        print(f"{key:>32}: {value}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
