from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration.adapters import bank_marketing
from nba.calibration.adapters.bank_marketing import ACTION, contact_dates
from nba.calibration.events import EventLog, EventLogError


@pytest.fixture(scope="module")
def path(shared_data):
    return shared_data / "bank_marketing" / "bank-additional-full.csv"


@pytest.fixture(scope="module")
def raw(path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";")


@pytest.fixture(scope="module")
def log(path) -> EventLog:
    return bank_marketing(path)


def _last_contacts(log: EventLog) -> pd.DataFrame:
    sent = log.events[log.events["event"] == "sent"]
    last = sent.groupby("customer_id")["timestamp"].max()
    last.index = last.index.astype(int)
    return last.sort_index()


def test_duration_never_appears(log, raw):
    assert "duration" in raw.columns
    assert log.customers is not None
    for frame in (log.events, log.customers):
        assert not [c for c in frame.columns if "duration" in c.lower()]
    # nor under another name: no output column carries the call durations
    durations = raw["duration"].to_numpy()
    for column in log.customers.columns:
        values = log.customers[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            assert not np.array_equal(values.to_numpy(dtype=float, na_value=np.nan), durations)


def test_every_contact_is_a_sent_event_and_yes_is_a_purchase(log, raw):
    events = log.events
    sent = events[events["event"] == "sent"]
    assert set(events["event"].astype(str)) == {"sent", "purchased"}
    assert len(sent) == raw["campaign"].sum()
    per_customer = sent.groupby("customer_id").size()
    per_customer.index = per_customer.index.astype(int)
    assert (per_customer.sort_index().to_numpy() == raw["campaign"].to_numpy()).all()
    assert (sent["action"] == ACTION).all()
    assert set(sent["channel"]) == {"cellular", "telephone"}
    assert sent["propensity"].isna().all()
    purchased = events[events["event"] == "purchased"]
    assert len(purchased) == (raw["y"] == "yes").sum() == 4640
    assert len(purchased) / len(raw) == pytest.approx(0.113, abs=0.001)
    assert purchased["value"].isna().all()
    buyers = purchased.set_index(purchased["customer_id"].astype(int))["timestamp"]
    assert (buyers == _last_contacts(log).loc[buyers.index]).all()
    # same time as the call, but after it in the log's order
    sent_at = sent.reset_index().groupby("customer_id")["index"].max()
    assert (purchased.index.to_numpy() > sent_at.loc[purchased["customer_id"]].to_numpy()).all()


def test_last_contact_dates_follow_month_and_weekday_from_may_2008_to_nov_2010(log, raw):
    last = _last_contacts(log)
    assert len(last) == len(raw) == 41188
    assert last.iloc[0].strftime("%Y-%m") == "2008-05"
    assert last.iloc[-1].strftime("%Y-%m") == "2010-11"
    assert last.is_monotonic_increasing  # the rows are in time order
    assert (last.dt.strftime("%b").str.lower().to_numpy() == raw["month"].to_numpy()).all()
    assert (last.dt.strftime("%a").str.lower().to_numpy() == raw["day_of_week"].to_numpy()).all()
    assert set(last.dt.year) == {2008, 2009, 2010}


def test_earlier_contacts_are_one_day_apart_before_the_last(log):
    sent = log.events[log.events["event"] == "sent"].sort_values(["customer_id", "timestamp"])
    gaps = sent.groupby("customer_id")["timestamp"].diff().dropna()
    assert len(gaps) > 0
    assert (gaps == pd.Timedelta(days=1)).all()
    assert sent["timestamp"].min() >= pd.Timestamp("2008-03-01", tz="UTC")


def test_customer_table_has_attributes_history_and_macro(log, raw):
    customers = log.customers.set_index("customer_id")
    assert len(customers) == len(raw)
    assert list(customers.index[:3]) == ["0", "1", "2"]
    for column in ("age", "job", "marital", "education", "default", "housing", "loan"):
        assert (customers[column].to_numpy() == raw[column].to_numpy()).all()
    assert (customers["default"] == "unknown").sum() == (raw["default"] == "unknown").sum()
    never = (raw["pdays"] == 999).to_numpy()
    assert customers["pdays"].isna().to_numpy().tolist() == never.tolist()
    assert (customers["pdays"].to_numpy()[~never] == raw["pdays"].to_numpy()[~never]).all()
    expected = ~never | (raw["previous"] > 0).to_numpy()
    assert (customers["previously_contacted"].to_numpy() == expected).all()
    for column in ("emp.var.rate", "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed"):
        name = column.replace(".", "_")
        assert np.allclose(customers[name].to_numpy(), raw[column].to_numpy())
    assert not {"contact", "month", "day_of_week", "campaign", "y"} & set(customers.columns)


def test_contact_dates_infer_years_and_weeks():
    month = pd.Series(["nov", "nov", "nov", "dec", "mar", "mar"])
    weekday = pd.Series(["mon", "fri", "tue", "wed", "mon", "mon"])
    dates = contact_dates(month, weekday)
    assert [d.strftime("%Y-%m-%d") for d in dates] == [
        "2008-11-03",  # Nov 2008 starts on a Saturday: the first Monday is the 3rd
        "2008-11-07",
        "2008-11-11",  # back to an earlier weekday: the next week
        "2008-12-03",
        "2009-03-02",  # an earlier month: a new year
        "2009-03-02",
    ]
    with pytest.raises(EventLogError, match="month"):
        contact_dates(pd.Series(["may", "mai"]), pd.Series(["mon", "mon"]))


def test_missing_column_and_bad_count_are_named(tmp_path, raw):
    small = raw.head(20)
    small.drop(columns="contact").to_csv(tmp_path / "a.csv", sep=";", index=False)
    with pytest.raises(EventLogError, match="contact"):
        bank_marketing(tmp_path / "a.csv")
    small.assign(campaign=0).to_csv(tmp_path / "b.csv", sep=";", index=False)
    with pytest.raises(EventLogError, match="campaign"):
        bank_marketing(tmp_path / "b.csv")
    with pytest.raises(EventLogError, match="no file"):
        bank_marketing(tmp_path / "absent.csv")
