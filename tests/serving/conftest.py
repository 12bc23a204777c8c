"""An exported (untrained, seeded) PPO policy shared by the serving tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.scenarios import load_scenario

# ``export_dir`` (the exported PPO policy) lives in tests/conftest.py, shared with the CLI tests.


def population(n: int, seed: int = 0, consent: bool = False) -> pd.DataFrame:
    """``n`` random valid customers (with random per-channel consent when asked)."""
    scenario = load_scenario("retail")
    rng = np.random.default_rng(seed)
    columns = {
        "customer_id": [f"c{i}" for i in range(n)],
        "persona": rng.choice(scenario.persona_names, n),
        "stage": rng.choice(scenario.stage_names, n),
        "pressure": rng.integers(0, scenario.contact_rules.pressure_capacity + 1, n),
        "discount_habit": rng.random(n) < 0.3,
        "opted_out": rng.random(n) < 0.2,
        "days_since_direct": rng.integers(1, 12, n),
        "days_since_messaging": rng.integers(1, 4, n),
    }
    if consent:
        columns.update({f"consent_{c}": rng.random(n) < 0.7 for c in scenario.channel_names})
    return pd.DataFrame(columns)


def customer(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "customer_id": "c-1",
        "persona": "deal_seeker",
        "stage": "active",
        "pressure": 0,
        "discount_habit": False,
        "opted_out": False,
        "days_since_direct": 7,
        "days_since_messaging": 2,
    }
    row.update(overrides)
    return row


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))
