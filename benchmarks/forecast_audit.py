"""Complete Journey: the calibrated twin's per-household purchase forecasts against BG/NBD.

For each split (fit on the history before the cutoff, forecast the next 92 days), the twin is
calibrated (rate tiers and unseen churn included) and audited twice on the same scenario:
households placed by the forward filter (each one's posterior persona and stage given their
own history, the default) and by the recency/frequency rules. Both are scored by MAE (and
RMSE) against a BG/NBD model fitted on the same history (target: twin MAE no worse than
BG/NBD), with the paired 95% interval of the difference, plus the distribution checks (count
distribution, gaps, lapse curve).

Run: ``python benchmarks/forecast_audit.py [--data ../shared/data]``. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from nba.calibration import calibrate
from nba.calibration.adapters import complete_journey
from nba.calibration.forecast import forecast_audit

SPLITS = (("2017-07-01", "2017-10-01"), ("2017-10-01", "2018-01-01"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--replicates", type=int, default=200)
    args = parser.parse_args()
    log = complete_journey(args.data / "completejourney")
    rows = []
    for cutoff, end in SPLITS:
        started = time.perf_counter()
        scenario = calibrate(log, holdout_after=cutoff, n_bootstrap=200, seed=0).scenario
        seconds = time.perf_counter() - started
        for placement in ("filtered", "rules"):
            started = time.perf_counter()
            s = forecast_audit(
                scenario, log, cutoff, end, replicates=args.replicates, placement=placement
            ).summary()
            rows.append(
                {
                    "cutoff": cutoff,
                    "placement": placement,
                    "calibrate_s": round(seconds, 1),
                    "audit_s": round(time.perf_counter() - started, 1),
                    "mae_twin": s["mae_twin"],
                    "mae_bgnbd": s["mae_bgnbd"],
                    "difference": s["mae_difference"],
                    "lower": s["mae_difference_lower"],
                    "upper": s["mae_difference_upper"],
                    "rmse_twin": s["rmse_twin"],
                    "rmse_bgnbd": s["rmse_bgnbd"],
                    "count_tv": s["count_distribution_distance"],
                    "count_noise": s["count_distribution_noise"],
                    "gaps_ks": s["inter_purchase_days_distance"],
                    "gaps_noise": s["inter_purchase_days_noise"],
                    "lapse": s["lapse_curve_distance"],
                    "lapse_noise": s["lapse_curve_noise"],
                }
            )
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.round(3).to_string(index=False))
    filtered = table[table["placement"] == "filtered"]
    met = bool((filtered["mae_twin"] <= filtered["mae_bgnbd"]).all())
    print(
        json.dumps(
            {
                "benchmark": "forecast_audit",
                "splits": [
                    {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
                    for row in rows
                ],
                "targets": {"mae_twin_minus_bgnbd": 0.0},
                "targets_met": {"mae_twin_minus_bgnbd": met},
            }
        )
    )


if __name__ == "__main__":
    main()
