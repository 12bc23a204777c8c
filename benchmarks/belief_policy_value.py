"""What deciding from beliefs earns: a belief-trained policy against the belief baselines.

On the reference scenario (``retail``) a company sees events, not persona or stage. Each policy
runs on the same evaluation cohort with common random numbers (:func:`nba.evaluation.
evaluate_policies`), the belief policies on the beliefs the training envs and the store keep:

- ``rl`` (one row per seed): PPO trained with ``--observation belief``, decided through the
  exported network and policy head, as served;
- ``qmdp``: the expected full-information action value under the belief (Littman et al. 1995);
- ``most_likely_state``: the full-information optimum at the belief's most likely state;
- the full-state yardsticks: no action, the journey map, myopic, and the DP optimum (full
  information: the upper bound no belief policy can reach).

Per policy: value with its 95% interval, the share of the gap from the journey map to the
full-information optimum it closes, and for each RL seed the paired difference to QMDP (same
customers, same draws) with its interval.

Run: ``python benchmarks/belief_policy_value.py --train-steps 30000000 --seeds 0 1 2`` (trains
into a temporary MLflow store; about 8 minutes a seed on 2 idle cores), or evaluate exported
policies with ``--models DIR_OR_URI ...``. The last line is JSON with ``rl_value`` (median over
seeds), ``qmdp_value``, ``qmdp_ci_halfwidth`` and ``full_information_share``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.belief_policies import MostLikelyStatePolicy, QMDPPolicy
from nba.belief_values import BeliefValues
from nba.evaluation import DEFAULT_CUSTOMERS, DEFAULT_SEED, ExactScorer, evaluate_policies
from nba.serving.scorer import PolicyScorer

SCENARIO = "retail"
Z = 1.96


def trained_models(steps: int, seeds: list[int], folder: Path) -> dict[str, Path]:
    """Train one belief policy per seed; their export folders by row name."""
    from nba.training import train

    models = {}
    for seed in seeds:
        started = time.perf_counter()
        result = train(
            scenario=SCENARIO,
            algo="ppo",
            timesteps=steps,
            seed=seed,
            observation="belief",
            tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            output_dir=folder / "runs",
            checkpoint_dir=str(folder / "checkpoints"),
            eval_every_steps=max(steps // 4, 1),
            eval_customers=2_000,
        )
        print(f"trained seed {seed}: {time.perf_counter() - started:.0f} s, run {result.run_id}")
        models[f"rl_seed{seed}"] = folder / "runs" / result.run_id / "policy"
    return models


def policy_table(models: dict[str, Any], n_customers: int, seed: int) -> tuple[pd.DataFrame, Any]:
    """Every policy on one cohort; the report's rollouts for paired differences."""
    exact = ExactScorer(SCENARIO)
    twin, optimum = exact.twin, exact.optimum
    policies: dict[str, Any] = {
        name: PolicyScorer.load(str(source)).as_policy(name) for name, source in models.items()
    }
    policies["qmdp"] = QMDPPolicy(twin, BeliefValues(twin, exact.kernel, optimum))
    policies["most_likely_state"] = MostLikelyStatePolicy(twin, optimum)
    for name in ("no_action", "journey_map", "myopic", "optimal"):
        policies[name] = name
    report = evaluate_policies(SCENARIO, policies, n_customers=n_customers, seed=seed)
    table = report.table.set_index("policy")
    floor, ceiling = table.loc["journey_map", "value"], table.loc["optimal", "value"]
    table["share_of_journey_map_gap"] = (table["value"] - floor) / (ceiling - floor)
    returns = report.rollouts
    paired = []
    for name in models:
        difference = returns[name].discounted_return - returns["qmdp"].discounted_return
        half = Z * difference.std(ddof=1) / np.sqrt(len(difference))
        paired.append((name, float(difference.mean()), float(half)))
    return table, paired


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[], help="exported belief policies")
    parser.add_argument("--train-steps", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--cohort-seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        models: dict[str, Any] = {f"rl_{k}": source for k, source in enumerate(args.models)}
        if args.train_steps:
            models |= trained_models(args.train_steps, args.seeds, Path(folder))
        if not models:
            parser.error("give --models or --train-steps")
        table, paired = policy_table(models, args.customers, args.cohort_seed)
    print(f"{SCENARIO}: {args.customers:,} customers, cohort seed {args.cohort_seed}")
    print(f"{'policy':<18} {'value':>8} {'95% CI':>16} {'share of JM->optimum gap':>25}")
    for name, row in table.iterrows():
        interval = f"[{row['lower']:.2f}, {row['upper']:.2f}]"
        share = row["share_of_journey_map_gap"]
        print(f"{name:<18} {row['value']:>8.2f} {interval:>16} {share:>25.3f}")
    for name, mean, half in paired:
        print(f"{name} - qmdp (paired): {mean:+.3f} +/- {half:.3f}")
    rl = table.loc[list(models)]
    qmdp = table.loc["qmdp"]
    result = {
        "benchmark": "belief_policy_value",
        "scenario": SCENARIO,
        "customers": args.customers,
        "rl_value": float(rl["value"].median()),
        "rl_values": [round(float(v), 3) for v in rl["value"]],
        "rl_worst": float(rl["value"].min()),
        "qmdp_value": float(qmdp["value"]),
        "qmdp_ci_halfwidth": float(qmdp["upper"] - qmdp["value"]),
        "most_likely_value": float(table.loc["most_likely_state", "value"]),
        "journey_map_value": float(table.loc["journey_map", "value"]),
        "full_information_value": float(table.loc["optimal", "value"]),
        "full_information_share": float(rl["share_of_journey_map_gap"].median()),
        "full_information_share_worst": float(rl["share_of_journey_map_gap"].min()),
        "qmdp_full_information_share": float(qmdp["share_of_journey_map_gap"]),
        "rl_minus_qmdp_paired": [
            {"policy": n, "mean": round(m, 3), "ci_halfwidth": round(h, 3)} for n, m, h in paired
        ],
        "rl_at_least_qmdp": all(m + h >= 0 for _, m, h in paired),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
