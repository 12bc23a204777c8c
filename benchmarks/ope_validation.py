"""Off-policy estimators against ground truth: repeated twin logs, and Hillstrom halves.

Twin, one step: the journey map with 30% uniform exploration serves 5,000 simulated customers
for 14 days (70,000 logged decisions, exact propensities); each estimator estimates the DP
optimum's expected immediate reward per decision, whose true value is known exactly from the
twin's response model (on a 400,000-customer log of the same process). Repeated over
independent logs: bias, RMSE, and how often the 95% interval covers the truth.

Twin, multi-step: 5-day trajectories; logging = journey map with 50% exploration, target = the
DP optimum with 50% exploration (importance weights multiply over steps, so the policies must
overlap); truth = discounted 5-day value by a 400,000-customer Monte Carlo run.

Hillstrom: IPS and DR of four targeting policies on one random half against the direct
estimate (arm means of matching customers) on the other half.

Run: ``python benchmarks/ope_validation.py [--repeats 200]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nba.ope import PDIS, WPDIS, FittedQEvaluation, SequentialDR, evaluate_bandit
from nba.ope.hillstrom import load_hillstrom, validate
from nba.ope.simulation import EpsilonPolicy, simulate_logs, trajectory_value
from nba.policies import make_baseline
from nba.twin import CustomerTwin

ONE_STEP = ("dm", "ips", "snips", "dr", "switch_dr", "dr_os")
MULTI_STEP = ("pdis", "wpdis", "dr_fqe")
HILLSTROM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hillstrom"


def streams(seed: int, count: int) -> list[np.random.Generator]:
    """Independent generators: a policy and the twin must never share a random stream."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


def score(errors: dict[str, list[float]], covered: dict[str, list[bool]]) -> pd.DataFrame:
    rows = []
    for name, values in errors.items():
        e = np.asarray(values)
        rows.append(
            {
                "estimator": name,
                "bias": float(e.mean()),
                "bias_se": float(e.std(ddof=1) / np.sqrt(len(e))),
                "rmse": float(np.sqrt((e**2).mean())),
                "coverage_95": float(np.mean(covered[name])),
                "logs": len(e),
            }
        )
    return pd.DataFrame(rows)


def one_step(twin: CustomerTwin, repeats: int, n_boot: int) -> tuple[pd.DataFrame, float]:
    journey, optimum = make_baseline("journey_map", twin), make_baseline("optimal", twin)
    policy_stream, twin_stream = streams(10**6, 2)
    truth = simulate_logs(
        twin, EpsilonPolicy(journey, 0.3, seed=policy_stream), optimum, 400_000, 14, twin_stream
    ).one_step_value
    errors = {name: [] for name in ONE_STEP}
    covered = {name: [] for name in ONE_STEP}
    for rep in range(repeats):
        policy_stream, twin_stream = streams(rep, 2)
        logging = EpsilonPolicy(journey, 0.3, seed=policy_stream)
        logs = simulate_logs(twin, logging, optimum, 5_000, 14, twin_stream)
        for interval in evaluate_bandit(logs.bandit, ONE_STEP, n_boot=n_boot, seed=rep):
            errors[interval.estimator].append(interval.estimate - truth)
            covered[interval.estimator].append(interval.lower <= truth <= interval.upper)
    return score(errors, covered), truth


def multi_step(twin: CustomerTwin, repeats: int, n_boot: int) -> tuple[pd.DataFrame, float]:
    journey, optimum = make_baseline("journey_map", twin), make_baseline("optimal", twin)
    policy_stream, twin_stream = streams(10**6 + 1, 2)
    target = EpsilonPolicy(optimum, 0.5, seed=policy_stream)
    truth, _ = trajectory_value(twin, target, 400_000, 5, seed=twin_stream)
    errors = {name: [] for name in MULTI_STEP}
    covered = {name: [] for name in MULTI_STEP}
    for rep in range(repeats):
        policy_stream, twin_stream = streams(10_000 + rep, 2)
        logging = EpsilonPolicy(journey, 0.5, seed=policy_stream)
        data = simulate_logs(twin, logging, target, 5_000, 5, seed=twin_stream).trajectories
        q = FittedQEvaluation(seed=rep).predict(data)
        for estimator in (PDIS(), WPDIS(), SequentialDR()):
            interval = estimator.interval(data, q, n_boot=n_boot, seed=rep)
            errors[estimator.name].append(interval.estimate - truth)
            covered[estimator.name].append(interval.lower <= truth <= interval.upper)
    return score(errors, covered), truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="independent twin logs")
    parser.add_argument("--n-boot", type=int, default=500)
    args = parser.parse_args()
    pd.set_option("display.width", 160)
    twin = CustomerTwin("retail", seed=0)
    started = time.perf_counter()
    single, single_truth = one_step(twin, args.repeats, args.n_boot)
    print(f"one step: optimum's value per decision {single_truth:.4f}, {args.repeats} logs")
    print(single.round(4).to_string(index=False))
    multi, multi_truth = multi_step(twin, max(args.repeats // 2, 2), args.n_boot)
    print(f"\nmulti-step (5 days): true value {multi_truth:.4f}")
    print(multi.round(4).to_string(index=False))
    hill: list[dict[str, object]] = []
    if (HILLSTROM / "hillstrom.csv").is_file():
        data = load_hillstrom(HILLSTROM / "hillstrom.csv")
        frames = [
            validate(data, reward, n_boot=args.n_boot, seed=0) for reward in ("visit", "spend")
        ]
        table = pd.concat(frames, ignore_index=True)
        print("\nHillstrom: OPE on one half vs direct estimate on the other")
        print(table.round(4).to_string(index=False))
        hill = table.to_dict(orient="records")
    else:
        print(f"\nHillstrom: skipped, no data at {HILLSTROM}")
    payload = {
        "one_step": {"truth": single_truth, "table": single.to_dict(orient="records")},
        "multi_step": {"truth": multi_truth, "table": multi.to_dict(orient="records")},
        "hillstrom": hill,
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
