"""One-step OPE on 1,000,000 logged decisions: estimate time per estimator, bootstrap apart.

The log is synthetic (13 actions, 37 features like the reference scenario's, softmax logging
with exact propensities); reward-model predictions are fitted once (timed separately) and
shared, as :func:`nba.ope.evaluate_bandit` does. Target: every one-step estimate under 2 s on
2 cores. Run: ``python benchmarks/ope_throughput.py``; the last line is JSON.
"""

from __future__ import annotations

import json
import time

import numpy as np

from nba.ope import ESTIMATORS, LoggedBandit, make_estimator, reward_predictions

N, ACTIONS, FEATURES = 1_000_000, 13, 37


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    context = (rng.random((N, FEATURES)) < 0.2).astype(np.float64)
    logits = context @ rng.normal(scale=0.5, size=(FEATURES, ACTIONS))
    logging = np.exp(logits - logits.max(axis=1, keepdims=True))
    logging /= logging.sum(axis=1, keepdims=True)
    action = np.minimum((rng.random(N)[:, None] >= np.cumsum(logging, axis=1)).sum(1), ACTIONS - 1)
    rows = np.arange(N)
    reward = context @ rng.normal(scale=0.1, size=FEATURES) + rng.normal(size=N) + 0.1 * action
    target = np.zeros((N, ACTIONS))
    target[rows, np.argmax(logits + rng.normal(size=(N, ACTIONS)), axis=1)] = 1.0
    return {
        "context": context,
        "action": action,
        "reward": reward,
        "propensity": logging[rows, action],
        "target": target,
    }


def timed(function, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    arrays = synthetic_arrays()
    started = time.perf_counter()
    data = LoggedBandit(**arrays)  # every input check of the container, on 1M rows
    build = time.perf_counter() - started
    started = time.perf_counter()
    predictions = reward_predictions(data, seed=0)
    fit = time.perf_counter() - started
    rows = []
    for name in ESTIMATORS:
        estimator = make_estimator(name)
        estimate = timed(lambda estimator=estimator: estimator.estimate(data, predictions))
        boot = timed(
            lambda estimator=estimator: estimator.interval(data, predictions, n_boot=100, seed=0),
            repeats=1,
        )
        rows.append({"estimator": name, "estimate_s": estimate, "interval_100_boot_s": boot})
    print(
        f"{N:,} decisions, {ACTIONS} actions: log validated in {build:.2f} s, "
        f"reward model cross-fitted (2 folds, ridge per action) in {fit:.2f} s"
    )
    print(f"{'estimator':<10} {'estimate s':>11} {'+100 bootstrap s':>17}")
    for row in rows:
        print(
            f"{row['estimator']:<10} {row['estimate_s']:>11.3f} {row['interval_100_boot_s']:>17.2f}"
        )
    slowest = max(row["estimate_s"] for row in rows)
    total = build + fit + sum(row["estimate_s"] for row in rows)
    print(f"end to end (validate, fit, all {len(rows)} estimates): {total:.2f} s")
    print(json.dumps({
        "decisions": N, "validate_s": build, "reward_model_fit_s": fit,
        "slowest_estimate_s": slowest, "end_to_end_s": total, "target_s": 2.0,
        "met": slowest < 2.0, "estimators": rows,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
