"""Per-customer views of an event log: history at a reference time, outcomes in a window after.

Calibration looks at customers the way the twin does on its day 0: who they are (attributes,
recency, frequency, monetary value), what was done to them at the start of a response window
(an action, a deliberate hold-out, or nothing) and what they did in the window (bought, spent,
visited, opened, unsubscribed). Everything is one grouped pass over the events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError

HISTORY_DAYS = 366  # frequency and monetary value look back one year (leap-safe)


@dataclass(frozen=True)
class Snapshot:
    """One row per customer (index ``customer_id``): history at ``reference`` and the window."""

    reference: pd.Timestamp
    window_days: int
    customers: pd.DataFrame

    @property
    def n(self) -> int:
        return len(self.customers)


def take_snapshot(log: EventLog, reference: pd.Timestamp, window_days: int) -> Snapshot:
    """History before ``reference`` and outcomes in ``[reference, reference + window_days)``."""
    if window_days < 1:
        raise EventLogError(f"window_days: {window_days} must be at least 1")
    reference = pd.Timestamp(reference)
    reference = (
        reference.tz_localize("UTC") if reference.tzinfo is None else reference.tz_convert("UTC")
    )
    events = log.events
    ids = log.customer_ids
    end = reference + pd.Timedelta(days=window_days)
    before = events[events["timestamp"] < reference]
    inside = events[(events["timestamp"] >= reference) & (events["timestamp"] < end)]

    table = pd.DataFrame(index=pd.Index(ids, name="customer_id"))
    bought = before[before["event"] == "purchased"]
    last = bought.groupby("customer_id")["timestamp"].max()
    table["recency_days"] = ((reference - last).dt.total_seconds() / 86_400.0).reindex(ids)
    recent = bought[bought["timestamp"] >= reference - pd.Timedelta(days=HISTORY_DAYS)]
    grouped = recent.groupby("customer_id")["value"]
    table["frequency"] = grouped.size().reindex(ids, fill_value=0).astype(float)
    table["monetary"] = grouped.sum().reindex(ids, fill_value=0.0)
    first = bought.groupby("customer_id")["timestamp"].min()
    table["tenure_days"] = ((reference - first).dt.total_seconds() / 86_400.0).reindex(ids)

    # what was done at the start of the window: the first contact decision inside it
    contacts = inside[inside["event"].isin(["sent", "held_out"])]
    first_contact = contacts.drop_duplicates("customer_id", keep="first").set_index("customer_id")
    table["contact"] = first_contact["event"].reindex(ids).astype("string")
    table["channel"] = first_contact["channel"].reindex(ids)
    table["action"] = first_contact["action"].reindex(ids)
    table["propensity"] = first_contact["propensity"].reindex(ids)
    sends = contacts[contacts["event"] == "sent"].groupby("customer_id").size()
    table["sends_in_window"] = sends.reindex(ids, fill_value=0)

    purchases = inside[inside["event"] == "purchased"]
    per_customer = purchases.groupby("customer_id")["value"]
    table["purchases"] = per_customer.size().reindex(ids, fill_value=0).astype(float)
    table["spend"] = per_customer.sum().reindex(ids, fill_value=0.0)
    for event in ("visited", "opened", "clicked", "redeemed", "unsubscribed"):
        happened = inside.loc[inside["event"] == event, "customer_id"].unique()
        table[event] = table.index.isin(happened)
    if log.customers is not None:
        attributes = log.customers.set_index("customer_id")
        clash = [c for c in attributes.columns if c in table.columns]
        attributes = attributes.rename(columns={c: f"attr_{c}" for c in clash})
        table = table.join(attributes, how="left")
    return Snapshot(reference, window_days, table)


def contact_counts(log: EventLog, days: int) -> pd.DataFrame:
    """For each ``sent`` event: contacts the same customer had in the ``days`` before it."""
    sent = log.events[log.events["event"] == "sent"][["customer_id", "timestamp"]]
    if sent.empty:
        return pd.DataFrame({"customer_id": [], "timestamp": [], "prior_sends": []})
    sent = sent.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)
    epoch = pd.Timestamp(0, tz="UTC")
    seconds = (sent["timestamp"] - epoch).dt.total_seconds().to_numpy().astype(np.int64)
    codes = pd.factorize(sent["customer_id"])[0]
    # sort key keeps customers apart: each customer's times sit in their own numeric band
    key = codes.astype(np.int64) * 10**10 + seconds
    start = np.searchsorted(key, key - days * 86_400, side="left")
    sent["prior_sends"] = np.arange(len(key)) - start
    return sent
