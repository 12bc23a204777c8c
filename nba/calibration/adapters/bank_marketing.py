"""The UCI Bank Marketing phone campaigns (Moro, Cortez & Rita 2014) as an event log.

Each row is one client's last contact in a campaign; its row number (as a string) is the
customer id. The file has no year or day of month, so both are inferred:

- year: rows are in time order from May 2008 to November 2010; every step back to an earlier
  month starts a new year (the two wraps give 2008, 2009, 2010, as the description says).
- day: within a run of one month, each step back to an earlier weekday starts a new week.
  The date is that weekday in the month's first Monday-based week plus the week count (one
  week later if the first call would fall before the 1st), moved back by whole weeks if it
  passes the month's end. Weeks without calls are invisible, so dates are approximate.

Events: the last contact is a ``sent`` (channel = ``contact``: ``cellular``/``telephone``,
action ``term_deposit``); the ``campaign - 1`` earlier contacts of that campaign are ``sent``
events one day apart before it, on the same channel (the data records only the last one's).
``y == 'yes'`` adds a ``purchased`` event at the last contact's time (after it in the log),
value NaN: the data has no amount. Nothing is randomized: no ``propensity``.

The customer table holds the client attributes, the previous-campaign fields and the macro
indicators (dots in names become underscores). ``unknown`` stays a category: it is how the
source codes missing answers and it is informative (e.g. for ``default``). ``pdays`` 999
("never contacted") becomes ``<NA>``; ``previously_contacted`` is true where ``pdays`` is set
or ``previous > 0`` (4,110 rows have ``previous > 0`` but ``pdays`` 999). ``duration`` is
dropped: it is only known after the call, so it must not drive decisions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError

FIRST_YEAR = 2008
ACTION = "term_deposit"
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLIENT = ("age", "job", "marital", "education", "default", "housing", "loan")
HISTORY = ("pdays", "previous", "poutcome")
MACRO = ("emp.var.rate", "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed")
NEVER_CONTACTED = 999
_EVENT_COLUMNS = ("contact", "month", "day_of_week", "campaign", "y")


def bank_marketing(path: str | Path) -> EventLog:
    """Read ``bank-additional-full.csv`` (``;``-separated) into events and a customer table."""
    path = Path(path)
    if not path.is_file():
        raise EventLogError(f"bank_marketing: no file at {path}")
    raw = pd.read_csv(path, sep=";")
    missing = [c for c in (*CLIENT, *HISTORY, *MACRO, *_EVENT_COLUMNS) if c not in raw.columns]
    if missing:
        raise EventLogError(f"bank_marketing: missing column(s) {missing}")
    raw = raw.drop(columns="duration", errors="ignore")
    contacts = pd.to_numeric(raw["campaign"], errors="coerce")
    bad = ~(contacts >= 1) | (contacts != contacts.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise EventLogError(
            f"bank_marketing row {row}, campaign: {raw['campaign'].iloc[row]!r} is not a count >= 1"
        )
    ids = raw.index.astype(str)
    last = pd.DatetimeIndex(contact_dates(raw["month"], raw["day_of_week"]))
    counts = contacts.astype(np.int64).to_numpy()
    row = np.repeat(np.arange(len(raw)), counts)
    first_of_row = np.repeat(np.cumsum(counts) - counts, counts)
    days_before = counts[row] - 1 - (np.arange(len(row)) - first_of_row)
    sent = pd.DataFrame(
        {
            "customer_id": ids[row],
            "timestamp": last[row] - pd.to_timedelta(days_before, unit="D"),
            "event": "sent",
            "channel": raw["contact"].to_numpy()[row],
            "action": ACTION,
        }
    )
    yes = (raw["y"] == "yes").to_numpy()
    purchased = pd.DataFrame(
        {
            "customer_id": ids[yes],
            "timestamp": last[yes],
            "event": "purchased",
            "channel": raw["contact"].to_numpy()[yes],
            "action": ACTION,
            "value": np.nan,
        }
    )
    events = pd.concat([sent, purchased], ignore_index=True)
    return EventLog.from_frames(events, _customers(raw, ids))


def contact_dates(month: pd.Series, day_of_week: pd.Series) -> pd.Series:
    """Dates (UTC midnight) of time-ordered rows that give only month and weekday names."""
    number = _codes(month, MONTHS, "month") + 1
    weekday = _codes(day_of_week, WEEKDAYS, "day_of_week")
    year = FIRST_YEAR + np.cumsum(np.r_[False, number[1:] < number[:-1]])
    run = np.cumsum(np.r_[True, number[1:] != number[:-1]])
    new_week = np.r_[False, (weekday[1:] < weekday[:-1]) & (run[1:] == run[:-1])]
    week = pd.Series(new_week.astype(np.int64)).groupby(run).cumsum().to_numpy()
    month_start = pd.to_datetime(pd.DataFrame({"year": year, "month": number, "day": 1}))
    monday = month_start - pd.to_timedelta(month_start.dt.day_of_week, unit="D")
    date = monday + pd.to_timedelta(7 * week + weekday, unit="D")
    early = (date < month_start).groupby(run).transform("first")
    date = date + pd.to_timedelta(7 * early.astype(np.int64), unit="D")
    month_end = month_start + pd.offsets.MonthEnd(0)
    overshoot_weeks = np.ceil((date - month_end).dt.days.clip(lower=0) / 7).astype(np.int64)
    date = date - pd.to_timedelta(7 * overshoot_weeks, unit="D")
    return date.dt.tz_localize("UTC").rename("timestamp")


def _customers(raw: pd.DataFrame, ids: pd.Index) -> pd.DataFrame:
    table = raw[[*CLIENT, *HISTORY, *MACRO]].copy()
    pdays = pd.to_numeric(table["pdays"], errors="coerce").astype("Int64")
    table["pdays"] = pdays.mask(pdays == NEVER_CONTACTED)
    table.insert(
        table.columns.get_loc("pdays") + 1,
        "previously_contacted",
        table["pdays"].notna().to_numpy() | (table["previous"] > 0).to_numpy(),
    )
    table.columns = [c.replace(".", "_") for c in table.columns]
    table.insert(0, "customer_id", ids)
    return table


def _codes(values: pd.Series, names: tuple[str, ...], field: str) -> np.ndarray:
    """Positions of lower-cased names in ``names``; an unknown name is an error."""
    codes = (
        values.astype("string")
        .str.strip()
        .str.lower()
        .map({name: code for code, name in enumerate(names)})
    )
    unknown = codes.isna()
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise EventLogError(
            f"bank_marketing row {row}, {field}: unknown name {values.iloc[row]!r}; "
            f"expected one of {list(names)}"
        )
    return codes.to_numpy(dtype=np.int64)
