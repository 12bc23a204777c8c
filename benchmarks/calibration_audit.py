"""Calibration on Hillstrom: fit time, and how often held-out KPIs land in their intervals.

1. The full data set (64,000 customers) calibrated with 200 bootstrap replicates: seconds
   (target: under 60 s on 2 cores).
2. ``--splits`` random halves (seeds 0..S-1, the CLI's rule): calibrate on one half, audit the
   other; per-arm KPIs inside the held-out 95% interval and consistent within two-sample
   error. A perfect model is inside about 83% of the time for equal halves (both are samples).
3. The held-out value of the twin's plan against e-mailing nobody and the best single e-mail
   (IPW, paired 95% intervals) on each split.

Run: ``python benchmarks/calibration_audit.py [--data ../shared/data]``. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration import audit, calibrate
from nba.calibration.adapters import hillstrom
from nba.calibration.population import observe
from nba.calibration.targeting import best_single_action, value_on_holdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--splits", type=int, default=8)
    args = parser.parse_args()
    log = hillstrom(args.data / "hillstrom" / "hillstrom.csv")

    started = time.perf_counter()
    full = calibrate(log, n_bootstrap=200, seed=0, data_label="hillstrom")
    full_seconds = time.perf_counter() - started
    print(
        f"full Hillstrom: {len(full.snapshot.customers):,} customers calibrated in "
        f"{full_seconds:.1f} s ({full.persona_model.k} personas; target < 60 s)"
    )

    ids = log.customer_ids
    rows, plans = [], []
    for seed in range(args.splits):
        held = np.random.default_rng(seed).random(len(ids)) < 0.5
        calibration, holdout = log.for_customers(ids[~held]), log.for_customers(ids[held])
        result = calibrate(calibration, n_bootstrap=200, seed=seed, data_label="hillstrom")
        table = audit(result.scenario, holdout, seed=seed).table
        arms = table[table["group"].str.startswith("arm")]
        rows.append(
            {
                "split": seed,
                "personas": result.persona_model.k,
                "per_arm_inside": int(arms["passed"].sum()),
                "per_arm_consistent": int(arms["consistent"].sum()),
                "per_arm_kpis": len(arms),
            }
        )
        best = best_single_action(result.scenario, calibration)
        single = f"everyone {result.scenario.action_names[best]}"
        n = len(observe(result.scenario, holdout).actions)
        values = value_on_holdout(
            result.scenario,
            holdout,
            policies={single: np.full(n, best)},
            baselines=("e-mail nobody", single),
            seed=seed,
        ).set_index("policy")
        plan = values.loc["twin optimum"]
        plans.append(
            {
                "split": seed,
                "vs_nobody": plan["vs e-mail nobody"],
                "vs_nobody_lower": plan["vs e-mail nobody lower"],
                "vs_single": plan[f"vs {single}"],
                "vs_single_lower": plan[f"vs {single} lower"],
                "vs_single_upper": plan[f"vs {single} upper"],
            }
        )
        print(f"split {seed}: {rows[-1]}; plan {plans[-1]}", flush=True)
    splits, plan_table = pd.DataFrame(rows), pd.DataFrame(plans)
    inside = splits["per_arm_inside"].sum() / splits["per_arm_kpis"].sum()
    consistent = splits["per_arm_consistent"].sum() / splits["per_arm_kpis"].sum()
    print(splits.to_string(index=False))
    print(plan_table.round(4).to_string(index=False))
    print(
        f"per-arm KPIs inside the held-out 95% interval: {inside:.1%} (perfect model ~83%); "
        f"consistent within two-sample error: {consistent:.1%} (expected ~95%)"
    )
    print(
        json.dumps(
            {
                "benchmark": "calibration_audit",
                "full_calibration_seconds": round(full_seconds, 2),
                "splits": args.splits,
                "per_arm_inside_share": round(float(inside), 4),
                "per_arm_consistent_share": round(float(consistent), 4),
                "splits_all_per_arm_inside": int((splits["per_arm_inside"] == 9).sum()),
                "plan_beats_nobody_splits": int((plan_table["vs_nobody_lower"] > 0).sum()),
                "plan_beats_single_splits": int((plan_table["vs_single_lower"] > 0).sum()),
                "plan_loses_to_single_splits": int((plan_table["vs_single_upper"] < 0).sum()),
                "targets": {"full_calibration_seconds": 60},
                "targets_met": {"full_calibration_seconds": bool(full_seconds < 60)},
            }
        )
    )


if __name__ == "__main__":
    main()
