from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog, EventLogError, load_events, save_events


def frame(**overrides: object) -> pd.DataFrame:
    data = {
        "customer_id": ["a", "a", "b", "c"],
        "timestamp": ["2024-01-01T10:00", "2024-01-03", "2024-01-02 08:00:00+01:00", "2024-01-05"],
        "event": ["sent", "purchased", "held_out", "Visited"],
        "channel": ["email", None, "email", None],
        "action": ["promo", None, None, None],
        "value": [None, 12.5, None, None],
        "propensity": [0.5, None, 0.5, None],
    }
    data.update(overrides)  # type: ignore[arg-type]
    return pd.DataFrame(data)


def test_events_are_typed_sorted_and_in_utc() -> None:
    log = EventLog.from_frames(frame())
    events = log.events
    assert str(events["timestamp"].dt.tz) == "UTC"
    assert events["timestamp"].is_monotonic_increasing
    # +01:00 is converted, naive times are read as UTC
    assert events.loc[events["customer_id"] == "b", "timestamp"].iloc[0] == pd.Timestamp(
        "2024-01-02T07:00Z"
    )
    assert list(events["event"].astype(str)) == ["sent", "held_out", "purchased", "visited"]
    assert log.dropped_duplicates == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"timestamp": ["2024-01-01", "not a date", "2024-01-02", "2024-01-05"]},
            "row 1, timestamp",
        ),
        (
            {"event": ["sent", "bought", "held_out", "visited"]},
            "row 1, event: unknown type 'bought'",
        ),
        ({"value": [None, -3.0, None, None]}, "row 1, value: -3.0 is negative"),
        ({"value": [None, "lots", None, None]}, "row 1, value: not a number"),
        ({"propensity": [0.0, None, 0.5, None]}, "row 0, propensity"),
        ({"customer_id": ["a", "", "b", "c"]}, "row 1, customer_id"),
        ({"channel": [None, None, "email", None]}, "row 0, channel"),
    ],
)
def test_bad_rows_are_named(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(EventLogError, match=message):
        EventLog.from_frames(frame(**overrides))


def test_missing_columns_are_listed() -> None:
    with pytest.raises(EventLogError, match=r"missing column\(s\) \['event'\]"):
        EventLog.from_frames(frame().drop(columns="event"))


def test_duplicates_are_reported_not_silently_dropped() -> None:
    doubled = pd.concat([frame(), frame().iloc[[1]]], ignore_index=True)
    with pytest.raises(EventLogError, match="1 duplicate row"):
        EventLog.from_frames(doubled)
    log = EventLog.from_frames(doubled, duplicates="drop")
    assert log.dropped_duplicates == 1
    assert len(log.events) == 4


def test_customer_table_ids_must_be_unique() -> None:
    customers = pd.DataFrame({"customer_id": [1, 2, 2], "age": [30, 40, 50]})
    with pytest.raises(EventLogError, match="customer_id: '2' appears twice"):
        EventLog.from_frames(frame(), customers)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_round_trip_through_files(tmp_path: Path, suffix: str) -> None:
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"], "age": [30, 40, 50]})
    log = EventLog.from_frames(frame(), customers)
    save_events(log, tmp_path / f"events{suffix}", tmp_path / f"customers{suffix}")
    again = load_events(tmp_path / f"events{suffix}", tmp_path / f"customers{suffix}")
    pd.testing.assert_frame_equal(
        again.events.astype({"event": str}), log.events.astype({"event": str}), check_dtype=False
    )
    assert list(again.customers["customer_id"]) == ["a", "b", "c"]


def test_unknown_file_type_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="no file"):
        load_events(tmp_path / "absent.csv")
    (tmp_path / "events.json").write_text("{}")
    with pytest.raises(EventLogError, match=r"neither \.csv nor \.parquet"):
        load_events(tmp_path / "events.json")


def test_between_and_for_customers_select() -> None:
    log = EventLog.from_frames(frame())
    later = log.between(pd.Timestamp("2024-01-03", tz="UTC"), None)
    assert set(later.events["customer_id"]) == {"a", "c"}
    only_b = log.for_customers(np.array(["b"]))
    assert list(only_b.events["customer_id"]) == ["b"]
