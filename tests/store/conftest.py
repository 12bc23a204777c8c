"""Shared store fixtures: the reference scenario and small synthetic event batches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nba.calibration.events import EventLog
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.store import CustomerStore
from nba.store.synthetic import START, synthetic_events

NOW = START + pd.Timedelta(days=61)


@pytest.fixture(scope="session")
def retail() -> Scenario:
    return load_scenario("retail")


@pytest.fixture(scope="session")
def log(retail: Scenario) -> EventLog:
    """3,000 events of 200 customers over 60 days."""
    return synthetic_events(retail, 3_000, 200, days=60, seed=3)


def halves(log: EventLog) -> tuple[EventLog, EventLog]:
    """The log's earlier and later halves (by time)."""
    middle = log.events["timestamp"].iloc[len(log.events) // 2]
    return log.between(None, middle), log.between(middle, None)


def new_store(folder: Path, scenario: Scenario, name: str = "customers.db") -> CustomerStore:
    return CustomerStore.create(folder / name, scenario)


def consent_of(log: EventLog, scenario: Scenario) -> pd.DataFrame:
    """The log's ``consented`` channels per customer, as ``filter_states(consent=)`` takes them
    (read by pandas here, independently of the store's reading)."""
    granted = log.events[log.events["event"] == "consented"]
    table = pd.crosstab(granted["customer_id"], granted["channel"].astype(str)) > 0
    return table.reindex(columns=list(scenario.channel_names), fill_value=False).astype(bool)
