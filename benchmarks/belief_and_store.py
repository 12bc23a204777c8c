"""Belief updates per second (customer-days), and the customer-state store (issue 16).

One function per section, each returning a dict of results for the last line; a section prints
its own table. Sections:

- ``belief``: :class:`nba.belief.BeliefTracker` on N customers x D days of a purchase-only day
  mix (the twin's own customers, left alone, so about 1% buy on a day): (a) ``step`` day by day,
  (b) the event-driven ``run`` over the same histories, on ``retail`` and ``retail_levels``.
  Only the tracker's calls are timed (the twin simulates the histories beforehand).
  (c) ``step_context``: ``step`` with each customer's own observed context (pressure, habit) on
  N customers x ``--context-days`` days of a contact-heavy random policy (a send requested on
  60% of days, any action; the rules block some), each day's context the twin's own morning
  state.

- ``ingest``: 1,000,000 synthetic events (plus their customers' consent events) into a fresh
  store, ``benchmarks/store_ingest.py``'s measurement: ``ingest_1m_events_s``.
- ``decide``: ``nba decide`` for 1,000,000 customers of a synthetic store with a belief-trained
  export (``--model``; ``benchmarks/decide_scale.py``): ``decide_1m_s``.
- ``value``: the belief-trained policy against QMDP, most likely state and the full-information
  optimum, read from the last line of ``benchmarks/belief_policy_value.py`` (``--value-json``;
  training its seeds takes about half an hour, so it runs on its own): ``rl_value``,
  ``qmdp_value``, ``qmdp_ci_halfwidth``, ``full_information_share``.

Run: ``python benchmarks/belief_and_store.py [--sections belief ingest value] [--customers
100000] [--value-json value.json]``. The last line is one JSON object;
``belief_customer_days_per_s`` is the best documented path (which one is in
``belief_best_path``). Measure on a quiet machine: the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nba.belief import BeliefTracker
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin

BELIEF_SCENARIOS = ("retail", "retail_levels")
TARGET_CUSTOMER_DAYS_PER_S = 10_000_000


def _purchase_only_days(scenario: str, n: int, days: int, seed: int) -> np.ndarray:
    """(n, days) purchases of the twin's customers left alone (no sends): a purchase-only log."""
    twin = CustomerTwin(scenario, seed=seed)
    twin.reset(n)
    nothing = np.zeros(n, dtype=np.int64)
    bought = np.empty((n, days), dtype=bool)
    for day in range(days):
        bought[:, day] = twin.step(nothing).bought
    return bought


def _contacted_days(scenario: str, n: int, days: int, seed: int) -> dict[str, np.ndarray]:
    """(days, n) purchases, executed actions and each morning's pressure and habit of the
    twin's customers under a contact-heavy random policy (day-major: a day is contiguous)."""
    twin = CustomerTwin(scenario, seed=seed)
    twin.reset(n)
    rng = np.random.default_rng(seed)
    shape = (days, n)
    log = {"bought": np.empty(shape, bool), "action": np.empty(shape, np.int8)}
    log |= {"pressure": np.empty(shape, np.int8), "habit": np.empty(shape, bool)}
    for day in range(days):
        log["pressure"][day], log["habit"][day] = twin.state.pressure, twin.state.habit
        wanted = np.where(rng.random(n) < 0.6, rng.integers(1, twin.n_actions, n), 0)
        result = twin.step(wanted)
        log["bought"][day], log["action"][day] = result.bought, result.executed
    return log


def _context_steps(tracker: BeliefTracker, log: dict[str, np.ndarray]) -> float:
    """Seconds for ``step`` with contexts over the whole log (after one warm-up day)."""
    days, n = log["bought"].shape
    belief = tracker.prior(n)

    def day_step(day: int) -> None:
        context = {"pressure": log["pressure"][day], "habit": log["habit"][day]}
        tracker.step(belief, log["bought"][day], log["action"][day], context=context)

    day_step(0)  # warm-up: the context kernels, scratch, BLAS
    belief = tracker.prior(n)
    started = time.perf_counter()
    for day in range(days):
        day_step(day)
    return time.perf_counter() - started


def belief_section(args: argparse.Namespace) -> dict[str, Any]:
    """Customer-days per second of ``step`` (day by day) and ``run`` (event-driven)."""
    n, days = args.customers, args.days
    rows, per_path = [], {}
    for name in BELIEF_SCENARIOS:
        tracker = BeliefTracker(load_scenario(name))
        purchase = _purchase_only_days(name, n, days, seed=args.seed)
        action = np.zeros((n, days), dtype=np.int8)
        quiet = np.zeros(n, dtype=np.int64)
        belief = tracker.prior(n)
        tracker.step(belief, purchase[:, 0], quiet)  # warm-up: scratch, BLAS
        belief = tracker.prior(n)
        started = time.perf_counter()
        for day in range(days):
            tracker.step(belief, purchase[:, day], quiet)
        step_s = time.perf_counter() - started
        started = time.perf_counter()
        history, _ = tracker.run(purchase, action)
        run_s = time.perf_counter() - started
        gap = float(np.abs(history - belief).max())
        for path, seconds in (("step", step_s), ("run", run_s)):
            rate = n * days / seconds
            per_path[f"{name}_{path}"] = round(rate)
            rows.append((name, tracker.n_types * tracker.n_stages, path, seconds, rate))
        per_path[f"{name}_step_vs_run_max_gap"] = gap
        per_path[f"{name}_buy_share"] = round(float(purchase.mean()), 4)
        log = _contacted_days(name, n, args.context_days, seed=args.seed)
        seconds = _context_steps(tracker, log)
        per_path[f"{name}_step_context"] = round(n * args.context_days / seconds)
        per_path[f"{name}_context_send_share"] = round(float((log["action"] != 0).mean()), 4)
        per_path[f"{name}_context_buy_share"] = round(float(log["bought"].mean()), 4)
        cells = tracker.n_types * tracker.n_stages
        rows.append((name, cells, "step_context", seconds, n * args.context_days / seconds))
    print(
        f"belief: {n:,} customers x {days} days, purchase-only (step_context: "
        f"{args.context_days} days, contact-heavy)"
    )
    print(f"{'scenario':<15} {'T x K':>6} {'path':<12} {'seconds':>8} {'customer-days/s':>16}")
    for name, cells, path, seconds, rate in rows:
        print(f"{name:<15} {cells:>6} {path:<12} {seconds:>8.2f} {rate:>16,.0f}")
    reference = {path: per_path[f"retail_{path}"] for path in ("step", "run")}
    best = max(reference, key=lambda path: reference[path])
    return {
        "belief_customer_days_per_s": reference[best],
        "belief_best_path": f"retail {best} ({'day by day' if best == 'step' else 'event-driven'})",
        "belief_paths": per_path,
        "belief_target_met": reference[best] >= TARGET_CUSTOMER_DAYS_PER_S,
    }


def ingest_section(args: argparse.Namespace) -> dict[str, Any]:
    """``benchmarks/store_ingest.py``'s measurement at 1,000,000 events (its docstring)."""
    from store_ingest import measure

    with tempfile.TemporaryDirectory() as folder:
        row = measure(1_000_000, Path(folder))
    print("ingest: " + " ".join(f"{k}={v}" for k, v in row.items()))
    return {"ingest_1m_events_s": row["bootstrap_s"], "ingest": row}


def decide_section(args: argparse.Namespace) -> dict[str, Any]:
    """``nba decide`` for 1,000,000 customers from a store (``benchmarks/decide_scale.py``):
    the store read, scoring and explanations with a belief-trained export (``--model``)."""
    from decide_scale import measure

    if args.model is None:
        raise SystemExit("--sections decide needs --model (a belief-trained export)")
    result = measure(args.model, skip_cli=False)
    return {"decide_1m_s": result["decide_1m_s"], "decide": result}


def value_section(args: argparse.Namespace) -> dict[str, Any]:
    """The belief policy's value (``benchmarks/belief_policy_value.py``): read from the JSON
    line a run of it printed (``--value-json``), since training its seeds takes half an hour."""
    if args.value_json is None:
        raise SystemExit("--sections value needs --value-json (belief_policy_value.py's output)")
    lines = Path(args.value_json).read_text("utf-8").strip().splitlines()
    value = json.loads(lines[-1])
    keys = ("rl_value", "rl_values", "rl_worst", "qmdp_value", "qmdp_ci_halfwidth")
    keys += ("most_likely_value", "full_information_value", "full_information_share")
    keys += ("full_information_share_worst", "rl_minus_qmdp_paired", "rl_at_least_qmdp")
    print("value: " + " ".join(f"{k}={value[k]}" for k in keys[:5]))
    return {key: value[key] for key in keys}


SECTIONS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "belief": belief_section,
    "ingest": ingest_section,
    "decide": decide_section,
    "value": value_section,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", nargs="+", choices=list(SECTIONS), default=["belief", "ingest"]
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--context-days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--value-json", help="output of benchmarks/belief_policy_value.py")
    parser.add_argument("--model", help="a belief-trained export (the decide section)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {"benchmark": "belief_and_store"}
    for section in args.sections:
        result.update(SECTIONS[section](args))
    result.update(
        {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_before": round(load_before, 2),
            "load_average_after": round(os.getloadavg()[0], 2),
        }
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
