"""Seconds to refuse each hostile input: how far below the tests' no-hang bounds the refusals are.

The tests assert the refusals (each one our error, naming the problem) and bound them with
``pytest.mark.timeout`` (20 s); they assert no timing. This measures the times: the hostile
scenario YAML texts of tests/test_scenario.py, catalogues past the limits, state spaces past
int64 indexing and tables past the cell cap (tests/test_state.py), and the audit segment
queries of tests/calibration/test_segments.py. Each case is refused ``--repeat`` times; the
table shows the median and the slowest.

Run: ``python benchmarks/hostile_inputs.py``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' hostile cases

from nba import CustomerTwin
from nba.calibration.segments import Segment
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.state import StateSpace
from tests.calibration.test_segments import HOSTILE
from tests.test_scenario import HOSTILE_TEXT

Case = Callable[[], object]


def _retail_with(change: Callable[[dict[str, Any]], None]) -> str:
    data = copy.deepcopy(load_scenario("retail").to_dict())
    change(data)
    return json.dumps(data, separators=(",", ":"))


def _caps(count: int) -> Scenario:
    data = copy.deepcopy(load_scenario("retail").to_dict())
    cap = data["contact_rules"]["caps"][0]
    data["contact_rules"]["caps"] = [
        dict(cap, name=f"cap{g}", window_days=60) for g in range(count)
    ]
    data["contact_rules"]["pressure_capacity"] = 30
    return Scenario.from_dict(data)


def _segment_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 5_000
    return pd.DataFrame(
        {
            "history": np.round(rng.gamma(2.0, 120.0, n), 2),
            "mens": rng.random(n) < 0.5,
            "newbie": rng.random(n) < 0.4,
            "zip_code": rng.choice(["Urban", "Surburban", "Rural"], n),
        }
    )


def cases() -> dict[str, Case]:
    """Each hostile input as a call that must raise one of our errors."""
    found: dict[str, Case] = {}
    for name, (text, _) in HOSTILE_TEXT.items():
        found[f"yaml: {name}"] = lambda text=text: Scenario.from_yaml(text)
    stages = _retail_with(
        lambda d: d.update(
            stages=[{"name": f"s{i}", "purchase_multiplier": 0} for i in range(20_000)]
        )
    )
    personas = _retail_with(lambda d: d.update(personas=[{"name": f"p{i}"} for i in range(8_000)]))
    found["catalogue: 20,000 stages"] = lambda: Scenario.from_yaml(stages)
    found["catalogue: 8,000 personas"] = lambda: Scenario.from_yaml(personas)
    sixteen, three = _caps(16), _caps(3)
    found["state: 16 caps past int64"] = lambda: CustomerTwin(sixteen)
    space = StateSpace(ScenarioArrays.from_scenario(three))
    found["state: all states past the cell cap"] = space.all_states
    table = _segment_table()
    for query in HOSTILE:
        found[f"segment: {query[:40]!r}"] = lambda q=query: Segment.parse("bad", q).select(table)
    return found


def refusal_seconds(case: Case, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        try:
            case()
        except NBAValidationError:
            times.append(time.perf_counter() - started)
        else:
            raise SystemExit("a hostile input was accepted: the tests should have caught it")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="refusals per case")
    args = parser.parse_args()

    measured = {name: refusal_seconds(case, args.repeat) for name, case in cases().items()}
    width = max(len(name) for name in measured)
    print(f"{'case':<{width}} {'median s':>10} {'slowest s':>10}")
    for name, times in measured.items():
        print(f"{name:<{width}} {statistics.median(times):>10.4f} {max(times):>10.4f}")
    slowest = max(measured, key=lambda name: max(measured[name]))
    print(f"slowest: {slowest} at {max(measured[slowest]):.3f} s (the tests allow 20 s)")
    result = {
        "benchmark": "hostile_inputs",
        "python": platform.python_version(),
        "repeat": args.repeat,
        "cases": len(measured),
        "median_s": {name: round(statistics.median(t), 5) for name, t in measured.items()},
        "slowest_s": round(max(measured[slowest]), 5),
        "slowest_case": slowest,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
