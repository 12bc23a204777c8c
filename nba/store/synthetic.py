"""Synthetic event batches in the calibration schema, for the store's tests and benchmark.

Not a model of anyone: each event picks a customer, a time and a type at random (sends of the
scenario's own actions, purchases with a value, discount redemptions, opens, unsubscribes), so
every rule of the observed state and every branch of ingest has something to read.

With ``consent=True`` (default) each customer also gets ``consented`` events at their first
event: one per channel needing consent that a persona drawn by the scenario's shares has, so
stored beliefs and decisions see consent as a company's would (the persona drawn is not
otherwise used: the other events are random).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog
from nba.scenario import Scenario

START = pd.Timestamp("2025-01-01T00:00:00Z")
#: event type -> share of the events drawn
MIX = {
    "sent": 0.45,
    "purchased": 0.3,
    "redeemed": 0.08,
    "opened": 0.15,
    "unsubscribed": 0.02,
}


def synthetic_events(
    scenario: Scenario,
    n_events: int,
    n_customers: int,
    *,
    days: int = 180,
    start: pd.Timestamp = START,
    seed: int = 0,
    consent: bool = True,
) -> EventLog:
    """``n_events`` random events of ``n_customers`` over ``days`` days from ``start``, plus
    consent at each customer's first event (module docstring)."""
    rng = np.random.default_rng(seed)
    kinds = np.array(list(MIX), dtype=object)
    share = np.array(list(MIX.values()))
    kind = kinds[rng.choice(len(kinds), size=n_events, p=share / share.sum())]
    who = rng.integers(0, n_customers, size=n_events)
    seconds = rng.integers(0, days * 86_400, size=n_events)
    actions = scenario.actions
    pick = rng.integers(0, len(actions), size=n_events)
    sent = kind == "sent"
    channel = np.array([a.channel for a in actions], dtype=object)[pick]
    offer = np.array([a.offer for a in actions], dtype=object)[pick]
    channel[~sent] = None
    offer[~sent] = None
    bought = np.isin(kind, ["purchased", "redeemed"])
    value = np.where(bought, np.round(rng.gamma(2.0, 20.0, size=n_events), 2), np.nan)
    events = pd.DataFrame(
        {
            "customer_id": np.char.add("c", who.astype(str)),
            "timestamp": start + pd.to_timedelta(seconds, unit="s"),
            "event": kind,
            "channel": channel,
            "action": offer,
            "value": value,
        }
    )
    if consent:
        events = pd.concat([events, _consent_events(scenario, events, rng)], ignore_index=True)
    return EventLog.from_frames(events, duplicates="drop")


def _consent_events(
    scenario: Scenario, events: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """One ``consented`` event per consent-needing channel of each customer's drawn persona,
    stamped with that customer's first event (drawn after the events, so they are unchanged)."""
    first = events.groupby("customer_id", sort=True)["timestamp"].min()
    share = np.array([p.share for p in scenario.personas])
    persona = rng.choice(len(share), size=len(first), p=share / share.sum())
    needs = {c.name for c in scenario.channels if c.requires_consent}
    granted = [[c for c in p.consent if c in needs] for p in scenario.personas]
    count = np.array([len(granted[k]) for k in persona])
    return pd.DataFrame(
        {
            "customer_id": np.repeat(first.index.to_numpy(dtype=object), count),
            "timestamp": np.repeat(first.to_numpy(), count),
            "event": "consented",
            "channel": [c for k in persona for c in granted[k]],
            "action": None,
            "value": np.nan,
        }
    )
