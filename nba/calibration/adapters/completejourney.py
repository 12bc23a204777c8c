"""The Complete Journey (84.51°/dunnhumby, 2017) grocery households as an event log.

- ``sent``: one per row of ``campaigns.csv`` (campaign, household) at the campaign's start date,
  channel ``direct_mail`` (the campaigns deliver coupons to chosen households; the data names no
  channel, so this label is ours) and action ``campaign_<id>``. Targeting was not randomized:
  no ``propensity``. Campaigns 24-26 started in late 2016, so their sends predate the 2017 data.
- ``redeemed``: one per distinct (household, campaign, redemption date) of
  ``coupon_redemptions.csv``; a household redeeming several coupons of one campaign on one day
  is one event, because the schema has no coupon column and identical rows are an error. No
  ``value``: the data has no redemption amount.
- ``purchased``: one per ``basket_id`` of ``transactions_sample.csv`` at the basket's earliest
  line time, ``value`` = its summed ``sales_value``. That file is a random sample of purchase
  *lines*, so baskets are missed and basket values are partial: per-household counts and spend
  are thinned. Its times are UTC (purchases peak at 21-22h, late afternoon in the US), so a
  few late New Year's Eve baskets fall on 2018-01-01.

The customer table holds every household seen in any file, with the ``demographics.csv`` columns
as strings (``<NA>`` for the 1,578 households without demographics and for blanks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError

CHANNEL = "direct_mail"
DEMOGRAPHICS = (
    "age",
    "income",
    "home_ownership",
    "marital_status",
    "household_size",
    "household_comp",
    "kids_count",
)
_FILES = {
    "campaign_descriptions.csv": ("campaign_id", "campaign_type", "start_date"),
    "campaigns.csv": ("campaign_id", "household_id"),
    "coupon_redemptions.csv": ("household_id", "campaign_id", "redemption_date"),
    "transactions_sample.csv": (
        "household_id",
        "basket_id",
        "sales_value",
        "transaction_timestamp",
    ),
    "demographics.csv": ("household_id", *DEMOGRAPHICS),
}


def complete_journey(folder: str | Path) -> EventLog:
    """Read the Complete Journey folder into a validated event log and customer table."""
    raw = {name: _read(Path(folder), name, columns) for name, columns in _FILES.items()}
    starts = raw["campaign_descriptions.csv"].set_index("campaign_id")["start_date"]
    received = raw["campaigns.csv"]
    unknown = ~received["campaign_id"].isin(starts.index)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise EventLogError(
            f"campaigns.csv row {row}, campaign_id: {received['campaign_id'].iloc[row]} is not "
            "in campaign_descriptions.csv"
        )
    sent = pd.DataFrame(
        {
            "customer_id": received["household_id"].astype(str),
            "timestamp": pd.to_datetime(received["campaign_id"].map(starts)),
            "event": "sent",
            "channel": CHANNEL,
            "action": _action(received["campaign_id"]),
        }
    )
    redemptions = raw["coupon_redemptions.csv"].drop_duplicates(
        ["household_id", "campaign_id", "redemption_date"]
    )
    redeemed = pd.DataFrame(
        {
            "customer_id": redemptions["household_id"].astype(str),
            "timestamp": pd.to_datetime(redemptions["redemption_date"]),
            "event": "redeemed",
            "action": _action(redemptions["campaign_id"]),
        }
    )
    lines = raw["transactions_sample.csv"].assign(
        time=lambda f: pd.to_datetime(f["transaction_timestamp"])
    )
    baskets = lines.groupby("basket_id", sort=False).agg(
        household_id=("household_id", "first"),
        households=("household_id", "nunique"),
        timestamp=("time", "min"),
        value=("sales_value", "sum"),
    )
    shared = baskets["households"] > 1
    if shared.any():
        raise EventLogError(
            f"transactions_sample.csv, basket_id: basket {baskets.index[shared][0]!r} belongs "
            "to more than one household"
        )
    purchased = pd.DataFrame(
        {
            "customer_id": baskets["household_id"].astype(str).to_numpy(),
            "timestamp": baskets["timestamp"].to_numpy(),
            "event": "purchased",
            "value": baskets["value"].to_numpy(),
        }
    )
    events = pd.concat([sent, redeemed, purchased], ignore_index=True)
    return EventLog.from_frames(events, _customers(raw))


def campaign_types(folder: str | Path) -> pd.Series:
    """Campaign type (``Type A``/``B``/``C``) by action name, e.g. ``campaign_8 -> Type A``."""
    columns = _FILES["campaign_descriptions.csv"]
    table = _read(Path(folder), "campaign_descriptions.csv", columns)
    actions = pd.Index(_action(table["campaign_id"]), name="action")
    return pd.Series(table["campaign_type"].to_numpy(), index=actions, name="campaign_type")


def _customers(raw: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every household in any file; demographics where known, as strings with ``<NA>``."""
    seen = pd.concat([frame["household_id"] for frame in raw.values() if "household_id" in frame])
    ids = pd.Index(seen.unique()).sort_values()
    demographics = raw["demographics.csv"].set_index("household_id")[list(DEMOGRAPHICS)]
    table = demographics.reindex(ids).astype("string")
    table.index = ids.astype(str)
    return table.rename_axis("customer_id").reset_index()


def _action(campaign_ids: pd.Series) -> pd.Series:
    return "campaign_" + campaign_ids.astype(str)


def _read(folder: Path, name: str, columns: tuple[str, ...]) -> pd.DataFrame:
    path = folder / name
    if not path.is_file():
        raise EventLogError(f"complete_journey: no file {name} in {folder}")
    frame = pd.read_csv(path, dtype={"basket_id": "int64"} if "basket_id" in columns else None)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise EventLogError(f"{name}: missing column(s) {missing}")
    if "household_id" in frame and frame["household_id"].isna().any():
        row = int(np.flatnonzero(frame["household_id"].isna().to_numpy())[0])
        raise EventLogError(f"{name} row {row}, household_id: missing")
    return frame
