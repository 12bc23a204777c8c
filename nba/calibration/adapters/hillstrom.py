"""Hillstrom's randomized e-mail test as an event log.

The data (64,000 customers, one row each) has no timestamps. The adapter places the test on a
fixed, documented calendar: every customer is assigned at :data:`SEND_TIME`; the arm becomes a
``sent`` e-mail (action ``mens`` or ``womens``) or a ``held_out`` control, each with its known
propensity 1/3. The two-week outcomes become ``visited`` and ``purchased`` events one day after
the send (the data says only "within two weeks"). Purchase history becomes one ``purchased``
event ``recency`` months before the send carrying last year's spend (``history``): recency is
exact to the month, frequency is unknown. Attributes go to the customer table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError

SEND_TIME = pd.Timestamp("2008-03-03T09:00:00Z")
RESPONSE_WINDOW_DAYS = 14
ARMS = {"Mens E-Mail": "mens", "Womens E-Mail": "womens", "No E-Mail": None}
PROPENSITY = 1.0 / 3.0
OUTCOMES = ("visit", "conversion", "spend")
INPUT_COLUMNS = (  # attributes and the arm: everything but the outcomes
    "recency",
    "history",
    "mens",
    "womens",
    "zip_code",
    "newbie",
    "channel",
    "segment",
)


def read_hillstrom(path: str | Path) -> pd.DataFrame:
    """``hillstrom.csv`` as published, checked: every column present, every arm known.

    The one reader of the file: the event-log adapter below and the OPE validation
    (:mod:`nba.ope.hillstrom`) both start here.
    """
    file = Path(path)
    if not file.is_file():
        raise EventLogError(f"hillstrom: no such file {str(file)!r}")
    raw = pd.read_csv(file)
    missing = [c for c in (*INPUT_COLUMNS, *OUTCOMES) if c not in raw.columns]
    if missing:
        raise EventLogError(f"hillstrom: missing column(s) {missing}")
    unknown = ~raw["segment"].isin(list(ARMS))
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise EventLogError(f"hillstrom row {row}, segment: unknown arm {raw.at[row, 'segment']!r}")
    return raw


def hillstrom(path: str | Path) -> EventLog:
    """Read ``hillstrom.csv`` into events and a customer table (ids are the row numbers)."""
    raw = read_hillstrom(path)
    ids = raw.index.astype(str)
    after = SEND_TIME + pd.Timedelta(days=1)
    arm = raw["segment"].map(ARMS)
    contact = pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": SEND_TIME,
            "event": np.where(arm.notna(), "sent", "held_out"),
            "channel": "email",
            "action": arm,
            "value": np.nan,
            "propensity": PROPENSITY,
        }
    )
    history = pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": SEND_TIME - pd.to_timedelta(raw["recency"] * 30.4375, unit="D"),
            "event": "purchased",
            "value": raw["history"].astype(float),
        }
    )
    visits = raw["visit"] == 1
    bought = raw["conversion"] == 1
    outcomes = pd.concat(
        [
            pd.DataFrame({"customer_id": ids[visits], "timestamp": after, "event": "visited"}),
            pd.DataFrame(
                {
                    "customer_id": ids[bought],
                    "timestamp": after,
                    "event": "purchased",
                    "value": raw.loc[bought, "spend"].astype(float).to_numpy(),
                }
            ),
        ]
    )
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "recency_months": raw["recency"].astype(int),
            "history": raw["history"].astype(float),
            "mens": raw["mens"].astype(bool),
            "womens": raw["womens"].astype(bool),
            "newbie": raw["newbie"].astype(bool),
            "zip_code": raw["zip_code"].astype(str),
            "purchase_channel": raw["channel"].astype(str),
        }
    )
    events = pd.concat([history, contact, outcomes], ignore_index=True)
    return EventLog.from_frames(events, customers)
