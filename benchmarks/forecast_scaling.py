"""How the twin's per-customer filter and exact forecast scale with the number of customers.

Issue 15, deliverable 5: calibration plus forecast of 25,000 customers in under 30 s on 2
cores, and the filter and forecast vectorised over customers, up to 1,000,000 customers.

For each size N a purchase-only log is drawn from a BG/NBD process
(:mod:`nba.calibration.synthetic_bgnbd`, seeded; 39 weeks observed). The twin is calibrated
once, on the 25,000-customer log (``calibrate(levels=...)``, timed); then for every N the
filter (``filter_states``: persona, stage and each customer's own levels at the cutoff) and
the exact forecast (``expected_outcomes``: 39 weeks, no action, by backward recursion) are
timed separately, over blocks of ``--chunk`` customers so that memory stays bounded (the
log is split by customer once, outside the timings; drawing the log is not timed either).

Printed: a table (customers, filter s, forecast s, per-million s, peak MB) where peak MB is
the process's peak resident memory so far (``resource.getrusage``; sizes run in increasing
order, so it is the peak up to and including that size). Last line: JSON with
``seconds_25k`` (calibrate + filter + forecast of 25,000 customers),
``filter_forecast_seconds_per_million`` (at the largest size run) and ``peak_mb``.

Run: ``python benchmarks/forecast_scaling.py [--sizes 25000 100000 1000000] [--chunk 100000]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from nba.calibration import EventLog, calibrate
from nba.calibration.exact_forecast import expected_outcomes
from nba.calibration.filtering import filter_states
from nba.calibration.synthetic_bgnbd import simulate_bgnbd
from nba.scenario import Scenario
from nba.twin import CustomerTwin

HORIZON_DAYS = 39 * 7
CALIBRATION_CUSTOMERS = 25_000


def peak_mb() -> float:
    """The process's peak resident memory so far, in MB (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def blocks(log: EventLog, ids: pd.Index, chunk: int) -> Iterator[tuple[EventLog, pd.Index]]:
    """``log`` split into blocks of ``chunk`` customers (in ``ids`` order), each block's
    events still sorted by time."""
    row = ids.get_indexer(log.events["customer_id"])
    block = row // chunk
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(0, len(ids) // chunk + 2))
    for k, lo in enumerate(range(0, len(ids), chunk)):
        take = order[bounds[k] : bounds[k + 1]]
        events = log.events.iloc[take].reset_index(drop=True)
        yield EventLog(events, None, 0), ids[lo : lo + chunk]


def run_size(
    scenario: Scenario, n: int, chunk: int, seed: int
) -> tuple[float, float, float, float]:
    """Filter and forecast ``n`` customers of a fresh BG/NBD log: (filter s, forecast s,
    CPU s of both, total expected purchases)."""
    synthetic = simulate_bgnbd(n, seed=seed)
    cutoff = synthetic.calibration_end
    history = synthetic.log.between(None, cutoff)
    parts = list(blocks(history, synthetic.customer_ids, chunk))
    del synthetic, history
    filter_s = forecast_s = total = 0.0
    cpu = time.process_time()
    started = time.perf_counter()
    twin = CustomerTwin(scenario, tabulate=True)  # built once per size, counted as forecast
    forecast_s += time.perf_counter() - started
    for part, ids in parts:
        started = time.perf_counter()
        belief = filter_states(scenario, part, cutoff, ids)
        filter_s += time.perf_counter() - started
        started = time.perf_counter()
        result = expected_outcomes(
            twin, belief, HORIZON_DAYS, start_weekday=int(cutoff.day_of_week)
        )
        forecast_s += time.perf_counter() - started
        total += float(result.purchases.sum())
    return filter_s, forecast_s, time.process_time() - cpu, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[25_000, 100_000, 1_000_000])
    parser.add_argument("--chunk", type=int, default=100_000, help="customers per block")
    parser.add_argument("--levels", choices=("none", "auto"), default="auto")
    parser.add_argument("--bootstrap", type=int, default=200, help="calibrate(n_bootstrap=)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sample = simulate_bgnbd(CALIBRATION_CUSTOMERS, seed=args.seed)
    started = time.perf_counter()
    scenario = calibrate(
        sample.log.between(None, sample.calibration_end),
        holdout_after=sample.calibration_end,
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        levels=args.levels,
    ).scenario
    calibrate_s = time.perf_counter() - started
    del sample
    print(f"calibrate ({CALIBRATION_CUSTOMERS} customers, levels={args.levels}): "
          f"{calibrate_s:.1f} s", flush=True)  # fmt: skip

    rows = []
    for n in sorted(args.sizes):
        filter_s, forecast_s, cpu_s, total = run_size(scenario, n, args.chunk, args.seed)
        rows.append(
            {
                "customers": n,
                "filter_s": round(filter_s, 2),
                "forecast_s": round(forecast_s, 2),
                "cpu_s": round(cpu_s, 1),
                "per_million_s": round((filter_s + forecast_s) * 1e6 / n, 1),
                "peak_mb": round(peak_mb()),
                "purchases_per_customer": round(total / n, 4),
            }
        )
        print(f"  {n:>9} customers: filter {filter_s:.1f} s, forecast {forecast_s:.1f} s, "
              f"peak {peak_mb():.0f} MB", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False))
    small = table[table["customers"] == CALIBRATION_CUSTOMERS]
    seconds_25k = (
        round(calibrate_s + float(small["filter_s"].iloc[0] + small["forecast_s"].iloc[0]), 1)
        if len(small)
        else None
    )
    largest = rows[-1]
    print(
        json.dumps(
            {
                "benchmark": "forecast_scaling",
                "levels": args.levels,
                "horizon_days": HORIZON_DAYS,
                "chunk": args.chunk,
                "calibrate_s": round(calibrate_s, 1),
                "seconds_25k": seconds_25k,
                "filter_forecast_seconds_per_million": largest["per_million_s"],
                "per_million_at": largest["customers"],
                "peak_mb": round(peak_mb()),
                "sizes": rows,
                "targets": {"seconds_25k": 30.0},
                "targets_met": {"seconds_25k": seconds_25k is not None and seconds_25k < 30.0},
            }
        )
    )


if __name__ == "__main__":
    main()
