"""How fast the customer-state store ingests events (issue 16, deliverable 3).

Target: 1,000,000 events ingested in under 10 s on 2 cores.

For each size a synthetic batch in the event schema is drawn on the reference scenario
(:func:`nba.store.synthetic.synthetic_events`: sends of the scenario's actions, purchases,
redemptions, opens, unsubscribes; 10 events per customer over 180 days, plus each customer's
consent at their first event, so beliefs are conditioned on it; drawing and validating the log
is not timed). Timed, each on a fresh store file:

- ``bootstrap``: the whole batch into an empty store (insert, each customer's observed state
  and belief by the twin's filter, one transaction);
- ``increment``: a further 10% of new events for the same customers (each touched customer's
  stored history is read back and recomputed: the daily case);
- ``again``: the increment a second time (every event a duplicate: nothing changes);
- ``state``: the state frame of every customer as of the ingest time (stored beliefs).

Last line: JSON with ``ingest_1m_events_s`` (the bootstrap of 1,000,000 events, when run).

Run: ``python benchmarks/store_ingest.py [--sizes 100000 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nba.scenarios import load_scenario
from nba.store import CustomerStore
from nba.store.synthetic import START, synthetic_events

DAYS = 180
NOW = START + pd.Timedelta(days=DAYS + 1)


def measure(size: int, folder: Path) -> dict[str, Any]:
    """Timings of one size (see the module docstring)."""
    scenario = load_scenario("retail")
    customers = size // 10
    batch = synthetic_events(scenario, size, customers, days=DAYS, seed=1)
    # the daily increment: the same customers, whose consent is already stored
    extra = synthetic_events(scenario, size // 10, customers, days=DAYS, seed=2, consent=False)
    with CustomerStore.create(folder / f"store_{size}.db", scenario) as store:
        began = time.perf_counter()
        first = store.ingest(batch, now=NOW)
        bootstrap = time.perf_counter() - began
        began = time.perf_counter()
        second = store.ingest(extra, now=NOW)
        increment = time.perf_counter() - began
        began = time.perf_counter()
        third = store.ingest(extra, now=NOW)
        again = time.perf_counter() - began
        ids = store.customer_ids()
        began = time.perf_counter()
        store.state(ids, NOW)
        state = time.perf_counter() - began
    assert third.events_added == 0
    return {
        "events": first.events_added,
        "customers": first.customers_updated,
        "bootstrap_s": round(bootstrap, 2),
        "events_per_s": round(first.events_added / bootstrap),
        "increment_events": second.events_added,
        "increment_late": second.late_events,
        "increment_s": round(increment, 2),
        "again_s": round(again, 2),
        "state_s": round(state, 2),
        "db_mb": round((folder / f"store_{size}.db").stat().st_size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for size in args.sizes:
            rows.append(measure(size, Path(folder)))
            print(" ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    million = next((r["bootstrap_s"] for r in rows if r["events"] >= 1_000_000), None)
    print(
        json.dumps(
            {
                "benchmark": "store_ingest",
                "ingest_1m_events_s": million,
                "sizes": rows,
                "targets": {"ingest_1m_events_s": 10.0},
                "targets_met": {"ingest_1m_events_s": million is not None and million < 10.0},
            }
        )
    )


if __name__ == "__main__":
    main()
