"""One ``nba cycle`` for 100,000 customers (issue 17's target: ingest, audit, retrain, OPE,
gate and decide in under 10 minutes on 2 cores).

Builds a site as a company running the loop would have it, untimed:

- a customer-state store bootstrapped from ``--history-days`` of a twin cohort's events (the
  retail twin stepped with the journey map, emitted by :func:`nba.twin_events.day_events` and
  ingested through :class:`nba.store.CustomerStore`, as ``nba ingest`` does);
- a belief-trained champion (:func:`nba.training.train` with ``observation="belief"``,
  registered, alias ``champion``);
- yesterday's decision log: the champion deciding for every stored customer with epsilon
  exploration and a holdout (:func:`nba.serving.by_id.decide_timed` with a ``DecisionLog``, the
  ``nba decide --log`` path);
- the new batch: the decided actions played in the twin on that day (and the journey map on any
  further ``--batch-days``), emitted as events.

Then it times one :func:`nba.loop.cycle.run_cycle` (holdout share 0.1, epsilon 0.05, the
decision log, ``--train-steps`` of warm-started training: default 200,000, ``nba cycle``'s own
default, about three PPO rollouts of 2,048 customers x 32 days) and reports each step's seconds
from the cycle's ledger and the total. The last line is one JSON object with
``cycle_seconds_100k`` (the total; ``null`` unless ``--customers`` is 100,000), ``steps``,
``customers``, ``events``, ``train_steps`` and ``exit_code``.

Run: ``nice python benchmarks/cycle_100k.py [--customers 100000] [--train-steps 200000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL = "nba-retail"
SCENARIO = "retail"
START = pd.Timestamp("2026-11-02T00:00:00Z")  # a Monday: the twin's day 0
TARGET_S = 600.0
HOLDOUT_SHARE, HOLDOUT_SALT, EPSILON = 0.1, "bench", 0.05


def _ids(n: int) -> np.ndarray:
    return np.char.add("c-", np.arange(n).astype(str))


def build_site(
    workdir: Path,
    customers: int,
    seed: int = 0,
    history_days: int = 14,
    batch_days: int = 1,
    champion_steps: int = 200_000,
) -> dict[str, Any]:
    """Store, registered champion, yesterday's decision log and the new batch (untimed).

    Returns the paths, the tracking URI and the set-up's own seconds per piece.
    """
    seconds: dict[str, float] = {}
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cohort = _Cohort(customers, seed)
    began = time.perf_counter()
    history = pd.concat([cohort.journey_day(day) for day in range(history_days)], ignore_index=True)
    split = START + pd.Timedelta(days=history_days)
    store_path = workdir / "customers.db"
    _bootstrap_store(store_path, cohort, history, split)
    seconds["history_and_ingest"] = time.perf_counter() - began

    began = time.perf_counter()
    _register_champion(workdir, uri, seed, champion_steps)
    seconds["champion_training"] = time.perf_counter() - began

    began = time.perf_counter()
    log_path = workdir / "decisions.db"
    decisions = _yesterday(uri, seed, store_path, log_path, split)
    seconds["yesterday_decisions"] = time.perf_counter() - began

    began = time.perf_counter()
    names = list(cohort.twin.scenario.action_names)
    chosen = pd.Series(
        pd.Index(names).get_indexer(decisions["action_name"].astype(str)),
        index=decisions["customer_id"].astype(str).to_numpy(),
    )
    if (chosen < 0).any():
        raise SystemExit("the champion decided an action the twin does not know")
    # customers the store does not hold (no event yet) got no decision: no action
    played = chosen.reindex(cohort.ids).fillna(0).to_numpy(dtype=np.int64)
    frames = [cohort.play(played, history_days)]
    frames += [cohort.journey_day(history_days + k) for k in range(1, batch_days)]
    batch = pd.concat(frames, ignore_index=True)
    events_path = workdir / "new.parquet"
    batch.to_parquet(events_path, index=False)
    seconds["batch"] = time.perf_counter() - began
    return {
        "store": store_path,
        "events": events_path,
        "decisions": log_path,
        "uri": uri,
        "history_events": len(history),
        "batch_events": len(batch),
        "stored_customers": len(decisions),
        "setup_seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


class _Cohort:
    """The retail twin's customers, stepped a day at a time and emitted as events."""

    def __init__(self, customers: int, seed: int) -> None:
        from nba.features import FeatureBuilder
        from nba.policies import JourneyMapPolicy
        from nba.twin import CustomerTwin

        self.ids = _ids(customers)
        self.twin = CustomerTwin(SCENARIO, seed=seed)
        self.twin.reset(customers)
        self.journey = JourneyMapPolicy(self.twin)
        self.features = FeatureBuilder(self.twin.arrays)

    def play(self, actions: np.ndarray, day: int) -> pd.DataFrame:
        from nba.twin_events import day_events

        result = self.twin.step(actions)
        return day_events(self.twin.arrays, result, self.ids, START + pd.Timedelta(days=day))

    def journey_day(self, day: int) -> pd.DataFrame:
        obs = self.features.build(self.twin.state, self.twin.day)
        actions, _ = self.journey.act(obs, self.twin.action_masks())
        return self.play(actions, day)


def _bootstrap_store(path: Path, cohort: _Cohort, history: pd.DataFrame, split: Any) -> None:
    from nba.calibration.events import EventLog
    from nba.store import CustomerStore

    with CustomerStore.create(path, cohort.twin.scenario, consent_required=False) as store:
        store.ingest(EventLog.from_frames(history), now=split)


def _register_champion(workdir: Path, uri: str, seed: int, steps: int) -> None:
    from mlflow.tracking import MlflowClient

    from nba.training import train

    trained = train(
        scenario=SCENARIO,
        observation="belief",
        timesteps=steps,
        seed=seed,
        register_model=True,
        model_name=MODEL,
        tracking_uri=uri,
        output_dir=str(workdir / "runs"),
        checkpoint_dir=str(workdir / "checkpoints"),
        eval_every_steps=steps,
        eval_customers=2_000,
    )
    MlflowClient(uri).set_registered_model_alias(MODEL, "champion", trained.model_version)


def _yesterday(uri: str, seed: int, store_path: Path, log_path: Path, split: Any) -> pd.DataFrame:
    """The champion's decisions for every stored customer, logged (the ``nba decide`` path)."""
    import mlflow

    from nba.holdout import Holdout
    from nba.serving.by_id import decide_timed
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration, PolicyScorer
    from nba.store import CustomerStore

    mlflow.set_tracking_uri(uri)
    exploration = Exploration(kind="epsilon", epsilon=EPSILON, seed=seed + 1)
    scorer = PolicyScorer.load(f"models:/{MODEL}@champion", exploration=exploration)
    scorer.holdout = Holdout(HOLDOUT_SHARE, HOLDOUT_SALT, "no_action")
    log = DecisionLog(log_path)
    try:
        with CustomerStore.open(store_path) as store:
            decisions, _ = decide_timed(scorer, store, None, split, log=log, batch_id="yesterday")
    finally:
        log.close()
    return decisions


def measure_cycle(
    customers: int = 100_000,
    train_steps: int = 200_000,
    seed: int = 0,
    workdir: Path | None = None,
    tracking_uri: str | None = None,
    history_days: int = 14,
    batch_days: int = 1,
    champion_steps: int = 200_000,
) -> dict[str, Any]:
    """Build the site (untimed), then time one cycle; the figures as a dict."""
    from nba.loop.cycle import CycleSettings, run_cycle

    folder = Path(workdir or tempfile.mkdtemp(prefix="nba_cycle_100k_")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / "customers.db").exists():
        raise SystemExit(f"--workdir: {str(folder)!r} already holds a site; give an empty folder")
    here = Path.cwd()
    os.chdir(folder)  # MLflow's default artifact root follows the working directory
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unsigned exports: the benchmark's own choice
            site = build_site(folder, customers, seed, history_days, batch_days, champion_steps)
            settings = CycleSettings(
                store=site["store"],
                events=site["events"],
                model=MODEL,
                holdout_share=HOLDOUT_SHARE,
                holdout_salt=HOLDOUT_SALT,
                epsilon=EPSILON,
                decisions=site["decisions"],
                out=folder / "next_day.parquet",
                train_steps=train_steps,
                train_seed=seed,
                tracking_uri=tracking_uri or site["uri"],
            )
            load_before = os.getloadavg()
            began = time.perf_counter()
            result = run_cycle(settings)
            total = time.perf_counter() - began
    finally:
        os.chdir(here)
    steps = {name: float(record["seconds"]) for name, record in result.steps.items()}
    gate = result.steps.get("gate", {}).get("values", {})
    evaluate = result.steps.get("evaluate", {}).get("values", {})
    return {
        # the target's figure, measured only at its size (training does not scale with it)
        "cycle_seconds_100k": round(total, 1) if customers == 100_000 else None,
        "cycle_seconds": round(total, 1),
        "target_s": TARGET_S,
        "steps": {k: round(v, 1) for k, v in steps.items()},
        "overhead_seconds": round(total - sum(steps.values()), 1),
        "customers": customers,
        "stored_customers": site["stored_customers"],
        "events": site["batch_events"],
        "history_events": site["history_events"],
        "logged_decisions": evaluate.get("ope_decisions"),
        "train_steps": train_steps,
        "exit_code": result.exit_code,
        "outcome": result.outcome,
        "gate_reasons": gate.get("reasons"),
        "setup_seconds": site["setup_seconds"],
        "workdir": str(folder),
        "load_average": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--train-steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="an empty folder (a temp one)")
    parser.add_argument(
        "--tracking-uri", default=None, help="MLflow URI (default: SQLite in the workdir)"
    )
    parser.add_argument("--history-days", type=int, default=14)
    parser.add_argument("--batch-days", type=int, default=1)
    parser.add_argument("--champion-steps", type=int, default=200_000)
    args = parser.parse_args()
    result = measure_cycle(
        args.customers,
        args.train_steps,
        args.seed,
        args.workdir,
        args.tracking_uri,
        args.history_days,
        args.batch_days,
        args.champion_steps,
    )
    print(
        f"one nba cycle: {result['customers']:,} customers ({result['stored_customers']:,} "
        f"stored), {result['events']:,} new events, {result['train_steps']:,} training steps"
    )
    print(f"{'step':<12}{'seconds':>10}")
    for name, seconds in result["steps"].items():
        print(f"{name:<12}{seconds:>10.1f}")
    print(f"{'total':<12}{result['cycle_seconds']:>10.1f}  (target {TARGET_S:.0f} s)")
    print(f"exit code {result['exit_code']}: {result['outcome']}")
    result |= {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps({"benchmark": "cycle_100k", **result}, default=str))


if __name__ == "__main__":
    main()
