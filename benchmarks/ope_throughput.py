"""One-step OPE on 1,000,000 logged decisions: end to end, per estimator, bootstrap apart.

The log is synthetic (13 actions, 44 features like the reference scenario's, softmax logging
with exact propensities). End to end is what ``nba ope`` pays before the bootstrap: validate the
arrays (:class:`nba.ope.LoggedBandit`), cross-fit the reward model (2 folds, ridge per action,
as :func:`nba.ope.evaluate_bandit` does) and compute every one-step estimator's point estimate
from the shared predictions; best of 3 cold runs. Target: under 2 s on 2 cores. Per-estimator
times and the 100-resample bootstrap are measured apart. Run:
``python benchmarks/ope_throughput.py``; the last line is JSON.
"""

from __future__ import annotations

import json
import time

import numpy as np

from nba.ope import ESTIMATORS, LoggedBandit, make_estimator, reward_predictions

N, ACTIONS, FEATURES = 1_000_000, 13, 44


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


def end_to_end(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """One cold run: validate, cross-fit the reward model, every one-step point estimate."""
    started = time.perf_counter()
    data = LoggedBandit(**arrays)  # every input check of the container, on 1M rows
    validated = time.perf_counter()
    predictions = reward_predictions(data, seed=0)
    fitted = time.perf_counter()
    for name in ESTIMATORS:
        make_estimator(name).estimate(data, predictions)
    done = time.perf_counter()
    return {
        "validate_s": validated - started,
        "reward_model_s": fitted - validated,
        "estimates_s": done - fitted,
        "total_s": done - started,
    }


def main() -> None:
    arrays = synthetic_arrays()
    runs = [end_to_end(arrays) for _ in range(3)]
    best = min(runs, key=lambda run: run["total_s"])
    median = sorted(run["total_s"] for run in runs)[1]
    data = LoggedBandit(**arrays)
    predictions = reward_predictions(data, seed=0)
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
        f"{N:,} decisions, {ACTIONS} actions, {FEATURES} features; end to end (best of 3): "
        f"validate {best['validate_s']:.2f} s + reward model (2-fold ridge per action) "
        f"{best['reward_model_s']:.2f} s + {len(ESTIMATORS)} estimates {best['estimates_s']:.2f} s "
        f"= {best['total_s']:.2f} s (median {median:.2f} s; target 2 s)"
    )
    print(f"{'estimator':<10} {'estimate s':>11} {'+100 bootstrap s':>17}")
    for row in rows:
        print(
            f"{row['estimator']:<10} {row['estimate_s']:>11.3f} {row['interval_100_boot_s']:>17.2f}"
        )
    print(json.dumps({
        "decisions": N, "end_to_end": best, "end_to_end_median_s": median,
        "target_s": 2.0, "met": best["total_s"] < 2.0,
        "slowest_estimate_s": max(row["estimate_s"] for row in rows), "estimators": rows,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
