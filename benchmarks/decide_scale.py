"""``nba decide`` at scale: decisions for a whole customer-state store (issue 16's target:
1,000,000 customers in under 10 s on 2 cores, for a belief-trained policy, with explanations).

Builds (once, then reuses) a store of about ``--customers`` synthetic customers
(:func:`nba.store.synthetic.synthetic_events`, ~2 events per customer plus consent, ingested at
``NOW``), then times, on the same machine in the same run:

- ``decide_s``: :func:`nba.serving.by_id.decide_timed` end to end, as ``nba decide`` calls it:
  the store read (state and belief), scoring and the explanations;
- its split: ``read_s`` (the store's state frame and joint belief of every customer from one
  read, :func:`~nba.serving.by_id.read_store`), ``parse_s`` (request parse and contact rules),
  ``score_s`` (features, network, head, capacity, decision frame) and ``explain_s``
  (:func:`~nba.serving.by_id.explanations`);
- ``cli_wall_s``: ``nba decide --store ... --model ... --out ... --json`` in a subprocess (start-up,
  model and twin loading and the parquet write included).

Run: ``python benchmarks/decide_scale.py --model DIR [--customers 1000000] [--store PATH]``
(``DIR``: a belief-trained export, e.g. what ``make run`` trains). The last line is one JSON
object; ``decide_1m_s`` is ``decide_s`` scaled to 1,000,000 customers. Measure on a quiet
machine: the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from nba.scenarios import load_scenario
from nba.serving import by_id
from nba.serving.scorer import PolicyScorer
from nba.store import CustomerStore
from nba.store.synthetic import synthetic_events

NOW = pd.Timestamp("2025-07-01T00:00:00Z")
TARGET_S = 10.0


def build_store(path: Path, customers: int, scenario: str) -> float:
    """A store of about ``customers`` customers at ``path``; seconds to build it.

    Events pick customers at random: with 2 events per drawn id, ``1 - e**-2`` of the ids get
    one, so ``customers / (1 - e**-2)`` ids are drawn.
    """
    began = time.perf_counter()
    drawn = math.ceil(customers / (1 - math.exp(-2)))
    log = synthetic_events(load_scenario(scenario), 2 * drawn, drawn, seed=0)
    with CustomerStore.create(path, load_scenario(scenario)) as store:
        store.ingest(log, now=NOW)
    return time.perf_counter() - began


def split(scorer: PolicyScorer, store: CustomerStore) -> dict[str, float]:
    """The seconds of each piece of a decision from the store (module docstring)."""
    times: dict[str, float] = {}
    began = time.perf_counter()
    read = by_id.read_store(scorer, store, None, NOW)  # state and belief from one read
    times["read_s"] = time.perf_counter() - began
    began = time.perf_counter()
    request, _ = by_id.split_state(scorer, read.state)
    parsed = scorer.schema.parse(request)
    masks = scorer.rule_masks(parsed)
    times["parse_s"] = time.perf_counter() - began
    began = time.perf_counter()
    decisions = scorer._decide(request, None, None, 3, belief=read.belief, parsed=(parsed, masks))
    times["score_s"] = time.perf_counter() - began
    began = time.perf_counter()
    chosen = decisions["action"].to_numpy()
    by_id.explanations(scorer, request, read.belief, chosen, (parsed, masks))
    times["explain_s"] = time.perf_counter() - began
    return times


def cli_wall(store: Path, model: str, out: Path) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``nba decide`` in a subprocess, and its ``--json`` summary."""
    command = [sys.executable, "-m", "nba.cli", "decide", "--store", str(store), "-m", model]
    command += ["--as-of", NOW.isoformat(), "--out", str(out), "--json"]
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"nba decide failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def measure(
    model: str,
    customers: int = 1_000_000,
    scenario: str = "retail",
    store: Path | None = None,
    skip_cli: bool = False,
    out: Path | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the store, time the decisions and their split; the result's dict."""
    store_path = (
        store or Path(tempfile.gettempdir()) / f"nba_decide_scale_{scenario}_{customers}.db"
    )
    built = None if store_path.exists() else build_store(store_path, customers, scenario)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unsigned export: the benchmark's own choice
        scorer = PolicyScorer.load(model)
    if scorer.features.observation != "belief":
        raise SystemExit(f"--model: {model!r} is not a belief-trained export")
    load_before = os.getloadavg()
    with CustomerStore.open(store_path) as held:
        n = len(held)
        by_id.belief_values(scorer)  # the twin's kernel and optimum: built once per scorer
        began = time.perf_counter()
        decisions, timed = by_id.decide_timed(scorer, held, as_of=NOW)
        decide_s = time.perf_counter() - began
        if out is not None:
            decisions.to_parquet(out)
        del decisions
        pieces = split(scorer, held)
    cli_s, summary = (
        (None, {})
        if skip_cli
        else cli_wall(store_path, model, Path(tempfile.gettempdir()) / "nba_decide_scale.parquet")
    )
    rows = [("decide_timed (end to end)", decide_s), *pieces.items()]
    if cli_s is not None:
        rows.append(("nba decide (CLI wall)", cli_s))
    print(f"{n:,} customers, scenario {scenario}, store {store_path}")
    print(f"{'piece':<28}{'seconds':>10}")
    for name, seconds in rows:
        print(f"{name:<28}{seconds:>10.2f}")
    return {
        "customers": n,
        "decide_s": round(decide_s, 3),
        "decide_1m_s": round(decide_s * 1_000_000 / n, 3),
        "target_s": TARGET_S,
        "decide_timed_split": {k: round(v, 3) for k, v in timed.items()},
        **{k: round(v, 3) for k, v in pieces.items()},
        "cli_wall_s": None if cli_s is None else round(cli_s, 3),
        "cli_summary_s": {k: v for k, v in summary.items() if k.endswith("_s")},
        "store_build_s": None if built is None else round(built, 1),
        "load_average": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a belief-trained export directory")
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--scenario", default="retail")
    parser.add_argument("--store", type=Path, default=None, help="reused when it exists")
    parser.add_argument("--skip-cli", action="store_true", help="no nba decide subprocess")
    parser.add_argument("--out", type=Path, default=None, help="write the decisions (parquet)")
    args = parser.parse_args()
    result = measure(args.model, args.customers, args.scenario, args.store, args.skip_cli, args.out)
    result |= {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps({"benchmark": "decide_scale", **result}))


if __name__ == "__main__":
    main()
