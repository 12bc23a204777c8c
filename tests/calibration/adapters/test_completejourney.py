from __future__ import annotations

import pandas as pd
import pytest

from nba.calibration.adapters import complete_journey
from nba.calibration.adapters.completejourney import CHANNEL, DEMOGRAPHICS, campaign_types
from nba.calibration.events import EventLog, EventLogError


@pytest.fixture(scope="module")
def folder(shared_data):
    return shared_data / "completejourney"


@pytest.fixture(scope="module")
def raw(folder) -> dict[str, pd.DataFrame]:
    names = ("campaigns", "campaign_descriptions", "coupon_redemptions", "demographics")
    tables = {name: pd.read_csv(folder / f"{name}.csv") for name in names}
    tables["transactions"] = pd.read_csv(
        folder / "transactions_sample.csv", dtype={"basket_id": "int64"}
    )
    return tables


@pytest.fixture(scope="module")
def log(folder) -> EventLog:
    return complete_journey(folder)


def _of(log: EventLog, event: str) -> pd.DataFrame:
    return log.events[log.events["event"] == event]


def test_one_sent_event_per_campaign_row_at_the_campaign_start(log, raw):
    sent = _of(log, "sent")
    assert len(sent) == len(raw["campaigns"]) == 6589
    assert (sent["channel"] == CHANNEL).all()
    assert sent["propensity"].isna().all()  # targeting was not randomized
    starts = raw["campaign_descriptions"].set_index("campaign_id")["start_date"]
    expected = pd.to_datetime(starts).dt.tz_localize("UTC")
    expected.index = "campaign_" + expected.index.astype(str)
    assert (sent["timestamp"].to_numpy() == expected.loc[sent["action"]].to_numpy()).all()
    pairs = set(
        zip(
            raw["campaigns"]["household_id"].astype(str),
            raw["campaigns"]["campaign_id"],
            strict=True,
        )
    )
    got = set(
        zip(
            sent["customer_id"],
            sent["action"].str.removeprefix("campaign_").astype(int),
            strict=True,
        )
    )
    assert got == pairs


def test_redemptions_are_one_event_per_household_campaign_and_day(log, raw):
    redemptions = raw["coupon_redemptions"]
    assert len(redemptions) == 2102
    keys = ["household_id", "campaign_id", "redemption_date"]
    redeemed = _of(log, "redeemed")
    assert len(redeemed) == len(redemptions.drop_duplicates(keys)) == 1148
    assert redeemed["timestamp"].min() >= pd.Timestamp("2017-01-01", tz="UTC")
    assert redeemed["timestamp"].max() < pd.Timestamp("2018-01-01", tz="UTC")
    # every redemption belongs to a campaign the household received
    sent = _of(log, "sent")
    received = set(zip(sent["customer_id"], sent["action"], strict=True))
    assert set(zip(redeemed["customer_id"], redeemed["action"], strict=True)) <= received


def test_purchases_are_baskets_with_their_summed_value(log, raw):
    lines = raw["transactions"]
    purchased = _of(log, "purchased")
    assert len(purchased) == lines["basket_id"].nunique() == 47243
    assert purchased["value"].sum() == pytest.approx(lines["sales_value"].sum())
    per_household = purchased.groupby("customer_id").size()
    expected = lines.groupby("household_id")["basket_id"].nunique()
    expected.index = expected.index.astype(str)
    pd.testing.assert_series_equal(
        per_household.sort_index(), expected.sort_index(), check_names=False
    )
    # timestamps are UTC: 2017, plus a few late New Year's Eve baskets (US time)
    stamps = purchased["timestamp"]
    assert stamps.min() >= pd.Timestamp("2017-01-01", tz="UTC")
    assert stamps.max() < pd.Timestamp("2018-01-01 06:00", tz="UTC")
    assert (stamps.dt.year == 2017).mean() > 0.999


def test_customer_table_covers_every_household_with_string_demographics(log, raw):
    households = pd.concat(
        [raw[name]["household_id"] for name in ("campaigns", "coupon_redemptions", "demographics")]
        + [raw["transactions"]["household_id"]]
    )
    customers = log.customers
    assert customers is not None
    assert set(customers["customer_id"]) == set(households.astype(str))
    assert customers["customer_id"].is_unique
    assert set(log.events["customer_id"]) <= set(customers["customer_id"])
    assert list(customers.columns) == ["customer_id", *DEMOGRAPHICS]
    known = customers["age"].notna()
    assert known.sum() == len(raw["demographics"]) == 801
    assert all(pd.api.types.is_string_dtype(customers[c]) for c in DEMOGRAPHICS)
    one = customers.set_index("customer_id").loc["1"]
    assert (one["age"], one["income"], one["kids_count"]) == ("65+", "35-49K", "0")
    demographics = raw["demographics"]
    assert customers["home_ownership"].isna().sum() == (
        demographics["home_ownership"].isna().sum() + (~known).sum()
    )


def test_log_revalidates_and_reloads_identically(folder, log):
    again = EventLog.from_frames(log.events, log.customers)
    pd.testing.assert_frame_equal(again.events, log.events)
    assert log.dropped_duplicates == 0
    pd.testing.assert_frame_equal(complete_journey(folder).events, log.events)


def test_campaign_types_name_the_actions(folder, log):
    types = campaign_types(folder)
    assert set(_of(log, "sent")["action"]) <= set(types.index)
    assert types["campaign_8"] == "Type A"
    assert set(types) == {"Type A", "Type B", "Type C"}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(EventLogError, match=r"campaign_descriptions\.csv"):
        complete_journey(tmp_path)
