"""The twin's per-customer purchase forecasts against BG/NBD: a synthetic BG/NBD log and
Complete Journey.

* Synthetic: 25,000 customers drawn from a BG/NBD process with strong heterogeneity
  (:mod:`nba.calibration.synthetic_bgnbd`: r 0.25, alpha 5, a 0.7, b 2.2; a panel, everyone's
  trial purchase at week 0), 39 weeks to calibrate, 39 to forecast, on ``--seeds`` logs (one
  run is an anecdote: the JSON line carries the worst). BG/NBD is the true model there: the
  twin should come close to it.
* Complete Journey: both splits of ``benchmarks/forecast_audit.py`` (fit on the history before
  the cutoff, forecast the next 92 days), households BG/NBD can score.

For each: the twin is calibrated (``nba.calibration.calibrate``, each customer's own levels
by default: ``--levels auto``) on the log before the cutoff and forecast with no action:
exactly by default (``forecast_customers``: the forward equations from each customer's
filtered belief, expected baskets), or with ``--forecast monte-carlo`` by the mean of
``--replicates`` runs of the forecast audit's twin simulation; BG/NBD is fitted on the same
history. Printed: per calibration-frequency bucket (0, 1, ..., 7+ repeat purchases) the
customers, mean actual and each model's mean forecast; totals; per-customer MAE with the
paired bootstrap interval of the difference; timings.

Run: ``python benchmarks/forecast_vs_bgnbd.py [--data ../shared/data] [--customers 25000]``.
Last line: JSON with ``synthetic_mae_ratio`` (twin / BG/NBD, the worst seed),
``synthetic_total_error`` (twin, relative, the largest in size), ``cj_mae_ratio`` (worst
split), ``seconds_25k`` (twin calibration + forecast, the slowest seed).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration import EventLog, calibrate
from nba.calibration.adapters import complete_journey
from nba.calibration.bgnbd import BGNBD, rfm_summary
from nba.calibration.comparison import ForecastComparison, compare_forecasts
from nba.calibration.exact_forecast import forecast_customers
from nba.calibration.forecast import forecast_audit
from nba.calibration.synthetic_bgnbd import simulate_bgnbd
from nba.scenario import Scenario

SPLITS = (("2017-07-01", "2017-10-01"), ("2017-10-01", "2018-01-01"))
SEND_DAY, SEND_SHARE = 100, 0.01
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Case:
    """One data set's comparison and what it took."""

    name: str
    comparison: ForecastComparison
    calibrate_s: float
    forecast_s: float
    cpu_s: float  # CPU seconds of the twin's calibration and forecast (the cores are shared)
    bgnbd_s: float
    customers: int


def run_case(
    name: str, log: EventLog, cutoff: pd.Timestamp, end: pd.Timestamp, args: argparse.Namespace
) -> Case:
    """Calibrate and forecast the twin, fit BG/NBD, compare on BG/NBD's customers."""
    started, cpu = time.perf_counter(), time.process_time()
    settings = {"n_bootstrap": args.bootstrap, "seed": 0, "levels": args.levels}
    scenario = calibrate(log, holdout_after=cutoff, **settings).scenario
    calibrate_s = time.perf_counter() - started
    rfm = rfm_summary(log.events, cutoff)
    days = int((end - cutoff) / DAY)
    started = time.perf_counter()
    twin = twin_forecast(scenario, log, cutoff, end, rfm.index, args)
    forecast_s = time.perf_counter() - started
    cpu_s = time.process_time() - cpu
    started = time.perf_counter()
    bgnbd = BGNBD().fit(rfm["frequency"], rfm["recency"], rfm["T"])
    expected = bgnbd.expected_purchases(days, rfm["frequency"], rfm["recency"], rfm["T"])
    bgnbd_s = time.perf_counter() - started
    window = log.between(cutoff, end).events
    bought = window.loc[window["event"] == "purchased", "customer_id"]
    rows = rfm.index.get_indexer(bought)
    actual = np.bincount(rows[rows >= 0], minlength=len(rfm))
    comparison = compare_forecasts(
        rfm["frequency"].to_numpy(),
        actual.astype(float),
        {"twin": twin, "bgnbd": expected},
        n_bootstrap=args.bootstrap,
        seed=0,
    )
    return Case(name, comparison, calibrate_s, forecast_s, cpu_s, bgnbd_s, len(rfm))


def twin_forecast(
    scenario: Scenario,
    log: EventLog,
    cutoff: pd.Timestamp,
    end: pd.Timestamp,
    ids: pd.Index,
    args: argparse.Namespace,
) -> np.ndarray:
    """Each of ``ids``'s expected baskets in ``[cutoff, end)`` with no action: exact (the
    forward equations from the filtered belief) or the mean of Monte Carlo runs."""
    days = int((end - cutoff) / DAY)
    if args.forecast == "exact":
        rows = forecast_customers(
            scenario, log.between(None, cutoff), days, cutoff=cutoff, customer_ids=ids
        )
        return rows.set_index("customer_id")["expected_baskets"].reindex(ids).to_numpy()
    audit = forecast_audit(
        scenario, log, cutoff, end, replicates=args.replicates, n_bootstrap=20, actions="none"
    )
    return audit.customers["twin"].reindex(ids).to_numpy()


def report(case: Case) -> dict[str, object]:
    """Print the case's tables; its numbers for the JSON line."""
    c = case.comparison
    print(f"\n== {case.name}: {case.customers} customers scored")
    print(c.buckets.round(3).to_string(index=False))
    print(c.totals.round(4).to_string(index=False))
    print(c.accuracy.round(4).to_string(index=False))
    print(
        f"   calibrate {case.calibrate_s:.1f} s, twin forecast {case.forecast_s:.1f} s, "
        f"(twin CPU {case.cpu_s:.1f} s), BG/NBD fit + forecast {case.bgnbd_s:.1f} s",
        flush=True,
    )
    ratio = c.accuracy[(c.accuracy["model"] == "twin") & (c.accuracy["metric"] == "mae_ratio")]
    top = c.buckets.iloc[-1]
    return {
        "case": case.name,
        "customers": case.customers,
        "mae_twin": round(c.mae("twin"), 4),
        "mae_bgnbd": round(c.mae("bgnbd"), 4),
        "mae_ratio": round(c.mae_ratio("twin"), 4),
        "mae_ratio_lower": round(float(ratio["lower"].iloc[0]), 4),
        "mae_ratio_upper": round(float(ratio["upper"].iloc[0]), 4),
        "total_error_twin": round(c.total_error("twin"), 4),
        "total_error_bgnbd": round(c.total_error("bgnbd"), 4),
        "buckets_ok": int(c.buckets["twin_ok"].sum()),
        "buckets": len(c.buckets),
        "top_bucket_twin_error": round(float(top["twin_error"]), 4),
        "top_bucket_bgnbd_error": round(float(top["bgnbd_error"]), 4),
        "calibrate_s": round(case.calibrate_s, 1),
        "forecast_s": round(case.forecast_s, 1),
        "twin_cpu_s": round(case.cpu_s, 1),
        "bgnbd_s": round(case.bgnbd_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--customers", type=int, default=25_000)
    parser.add_argument("--forecast", choices=("exact", "monte-carlo"), default="exact")
    parser.add_argument("--replicates", type=int, default=20, help="Monte Carlo runs")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--skip-cj", action="store_true", help="the synthetic log only")
    parser.add_argument(
        "--levels", choices=("none", "auto"), default="auto", help="calibrate(levels=...)"
    )
    parser.add_argument("--seeds", type=int, default=3, help="synthetic logs (seeds 0, 1, ...)")
    args = parser.parse_args()

    rows = []
    for seed in range(args.seeds):
        synthetic = simulate_bgnbd(args.customers, seed=seed)
        case = run_case(
            f"synthetic BG/NBD, seed {seed}",
            synthetic.log,
            synthetic.calibration_end,
            synthetic.forecast_end,
            args,
        )
        rows.append(report(case))
    cj_path = args.data / "completejourney"
    if not args.skip_cj and cj_path.exists():
        log = complete_journey(cj_path)
        for cutoff, end in SPLITS:
            case = run_case(
                f"Complete Journey {cutoff}", log, pd.Timestamp(cutoff, tz="UTC"),
                pd.Timestamp(end, tz="UTC"), args,
            )  # fmt: skip
            rows.append(report(case))
    elif not args.skip_cj:
        print(f"\nComplete Journey: {cj_path} not found, skipped")
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False))
    cj = table[table["case"].str.startswith("Complete Journey")]
    synthetic = table[table["case"].str.startswith("synthetic")]
    ratio = float(synthetic["mae_ratio"].max())
    total_error = float(synthetic["total_error_twin"].abs().max())
    worst_cj = float(cj["mae_ratio"].max()) if len(cj) else None
    seconds = round(float((synthetic["calibrate_s"] + synthetic["forecast_s"]).max()), 1)
    met = {
        "synthetic_mae_ratio": ratio <= 1.02,
        "synthetic_total_error": total_error <= 0.05,
        "synthetic_buckets": bool((synthetic["buckets_ok"] == synthetic["buckets"]).all()),
        "cj_mae_ratio": worst_cj is not None and worst_cj <= 0.97,
        "seconds_25k": args.customers >= 25_000 and seconds < 30.0,
    }
    print(
        json.dumps(
            {
                "benchmark": "forecast_vs_bgnbd",
                "synthetic_customers": args.customers,
                "synthetic_seeds": args.seeds,
                "levels": args.levels,
                "forecast": args.forecast,
                "replicates": args.replicates if args.forecast == "monte-carlo" else None,
                "synthetic_mae_ratio": ratio,
                "synthetic_mae_ratio_median": float(synthetic["mae_ratio"].median()),
                "synthetic_total_error": total_error,
                "cj_mae_ratio": worst_cj,
                "seconds_25k": seconds,
                "cases": rows,
                "targets": {
                    "synthetic_mae_ratio": 1.02,
                    "synthetic_total_error": 0.05,
                    "cj_mae_ratio": 0.97,
                    "seconds_25k": 30.0,
                },
                "targets_met": met,
            }
        )
    )


if __name__ == "__main__":
    main()
