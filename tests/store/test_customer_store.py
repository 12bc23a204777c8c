"""CustomerStore: idempotent, order-free, transactional ingest and state as of any time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog, EventLogError
from nba.calibration.filtering import filter_states
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.serving.request_history import LAST_CONTACT
from nba.serving.schema import RequestSchema
from nba.store import CustomerStore, StoreError, UnknownCustomerError, customer_store
from nba.store.state_frame import LAST_CONTACT as STORE_LAST_CONTACT
from nba.store.synthetic import synthetic_events
from tests.store.conftest import NOW, consent_of, halves, new_store

SUMMARY = [
    "belief_consent",
    "persona_probability",
    "stage_probability",
    "discount_habit_probability",
]


def _snapshot(store: CustomerStore, as_of: pd.Timestamp = NOW) -> tuple[pd.DataFrame, np.ndarray]:
    ids = store.customer_ids()
    return store.state(ids, as_of), store.belief(ids, as_of)[1]


def _assert_same(a: CustomerStore, b: CustomerStore, as_of: pd.Timestamp = NOW) -> None:
    frame_a, belief_a = _snapshot(a, as_of)
    frame_b, belief_b = _snapshot(b, as_of)
    pd.testing.assert_frame_equal(frame_a, frame_b)
    np.testing.assert_allclose(belief_a, belief_b, atol=2e-6)


def test_the_same_batch_twice_changes_nothing(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    with new_store(tmp_path, retail) as store:
        first = store.ingest(log, now=NOW)
        before = _snapshot(store)
        again = store.ingest(log, now=NOW + pd.Timedelta(days=1))
        after = _snapshot(store)
        assert first.events_added == len(log.events) == store.n_events
        assert first.new_customers == first.customers_updated == len(store) == 200
        assert (again.events_added, again.duplicates_skipped) == (0, len(log.events))
        assert again.customers_updated == 0 and store.n_events == len(log.events)
    pd.testing.assert_frame_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_order_of_arrival_does_not_matter_and_late_events_are_counted(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    early, late = halves(log)
    with new_store(tmp_path, retail, "a.db") as whole, new_store(tmp_path, retail, "b.db") as parts:
        whole.ingest(log, now=NOW)
        parts.ingest(late, now=NOW)
        report = parts.ingest(early, now=NOW)
        assert report.late_events > 0
        assert report.events_added == len(early.events)
        _assert_same(whole, parts)


def test_shuffled_batch_equals_sorted_batch(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    shuffled = log.events.sample(frac=1.0, random_state=0).reset_index(drop=True)
    with new_store(tmp_path, retail, "a.db") as a, new_store(tmp_path, retail, "b.db") as b:
        a.ingest(log, now=NOW)
        b.ingest(EventLog(shuffled), now=NOW)
        _assert_same(a, b)


def test_overlapping_batches_skip_stored_events(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    early, _ = halves(log)
    with new_store(tmp_path, retail) as store:
        store.ingest(early, now=NOW)
        report = store.ingest(log, now=NOW)
        assert report.duplicates_skipped == len(early.events)
        assert report.events_added == len(log.events) - len(early.events)
        assert store.n_events == len(log.events)


def test_duplicates_within_a_batch_are_dropped_and_counted(
    tmp_path: Path, retail: Scenario
) -> None:
    events = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "timestamp": ["2025-01-02T10:00Z", "2025-01-02T10:00Z", "2025-01-03"],
            "event": ["purchased", "purchased", "sent"],
            "channel": [None, None, "email"],
            "action": [None, None, "content"],
            "value": [10.0, 10.0, None],
        }
    )
    with pytest.raises(EventLogError, match="duplicate"):
        EventLog.from_frames(events)
    with new_store(tmp_path, retail) as store:
        report = store.ingest(EventLog.from_frames(events, duplicates="drop"), now="2025-02-01")
        assert (report.events_added, report.duplicates_in_batch) == (2, 1)


def test_future_events_are_refused_by_name_and_nothing_is_ingested(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    early, _ = halves(log)
    cut = early.events["timestamp"].max()
    with new_store(tmp_path, retail) as store:
        store.ingest(early, now=NOW)
        with pytest.raises(
            StoreError, match=r"in the future, e\.g\. customer 'c\d+' at .*after now"
        ):
            store.ingest(log, now=cut)
        assert store.n_events == len(early.events)


def test_malformed_input_keeps_the_event_logs_errors(tmp_path: Path, retail: Scenario) -> None:
    bad = pd.DataFrame({"customer_id": ["a"], "timestamp": ["2025-01-01"], "event": ["bought"]})
    with pytest.raises(EventLogError, match="unknown type 'bought'"):
        EventLog.from_frames(bad)
    with new_store(tmp_path, retail) as store:
        with pytest.raises(EventLogError, match="expected an EventLog"):
            store.ingest(bad, now="2025-02-01")  # type: ignore[arg-type]


def test_unknown_customers_are_named(tmp_path: Path, retail: Scenario, log: EventLog) -> None:
    with new_store(tmp_path, retail) as store:
        store.ingest(log, now=NOW)
        with pytest.raises(UnknownCustomerError, match=r"2 unknown .*\['nobody', 'ghost'\]"):
            store.state(["c1", "nobody", "ghost"], NOW)


def test_scenario_is_stored_and_another_is_refused_by_name(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    path = tmp_path / "customers.db"
    with CustomerStore.create(path, retail) as store:
        store.ingest(log, now=NOW)
    with CustomerStore.open(path) as store:
        assert store.scenario.fingerprint() == retail.fingerprint()
    with CustomerStore.open(path, retail) as store:
        assert len(store) == 200
    other = load_scenario("subscription")
    with pytest.raises(StoreError, match=r"built for scenario 'retail'.*not 'subscription'"):
        CustomerStore.open(path, other)
    with pytest.raises(StoreError, match="already exists"):
        CustomerStore.create(path, retail)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a customer store"):
        CustomerStore.open(junk)


@pytest.mark.parametrize("name", ["retail", "retail_levels"])
def test_belief_is_the_filter_on_the_whole_log(tmp_path: Path, name: str) -> None:
    """Batches of different customers read from the same record start: each belief equals the
    filter run once on the whole log (with the scenario's own levels where it has them)."""
    retail = load_scenario(name)
    log = synthetic_events(retail, 3_000, 200, days=60, seed=3)
    ids = pd.Index(sorted(log.events["customer_id"].unique()))
    first, second = log.for_customers(ids[::2]), log.for_customers(ids[1::2])
    with new_store(tmp_path, retail) as store:
        store.ingest(second, now=NOW)
        store.ingest(first, now=NOW)
        got_ids, joint = store.belief(ids, NOW)
    truth = filter_states(retail, log, NOW, customer_ids=ids, consent=consent_of(log, retail))
    assert list(got_ids) == list(ids)
    np.testing.assert_allclose(joint, truth.joint, atol=1e-6)
    assert joint.dtype == np.float32


def test_state_as_of_an_earlier_time_is_recomputed_from_history(
    tmp_path: Path, retail: Scenario, log: EventLog
) -> None:
    early, _ = halves(log)
    middle = log.events["timestamp"].iloc[len(log.events) // 2]
    with new_store(tmp_path, retail, "a.db") as full, new_store(tmp_path, retail, "b.db") as part:
        full.ingest(log, now=NOW)
        part.ingest(early, now=middle)
        ids = part.customer_ids()
        later = middle + pd.Timedelta(hours=30)
        pd.testing.assert_frame_equal(full.state(ids, middle), part.state(ids, middle))
        before_last = full.state(ids, later)
        assert not before_last.equals(part.state(ids, later))  # events after middle count


def test_state_is_a_valid_scoring_request(tmp_path: Path, retail: Scenario, log: EventLog) -> None:
    with new_store(tmp_path, retail) as store:
        store.ingest(log, now=NOW)
        frame = store.state(store.customer_ids(), NOW)
    assert STORE_LAST_CONTACT == LAST_CONTACT
    parsed = RequestSchema(ScenarioArrays.from_scenario(retail)).parse(frame.drop(columns=SUMMARY))
    np.testing.assert_array_equal(parsed.state.pressure, frame["pressure"])
    days = frame[[f"days_since_{cap.name}" for cap in retail.contact_rules.caps]].to_numpy()
    np.testing.assert_array_equal(parsed.state.days_since, days)
    assert frame["opted_out"].any() and (frame["pressure"] > 0).any()
    assert frame["persona_probability"].between(1 / len(retail.personas), 1 + 1e-6).all()
    consented = frame["belief_consent"] == "conditioned"  # retail: consent names the persona
    assert consented.all()
    np.testing.assert_allclose(frame["persona_probability"], 1.0, atol=1e-6)
    email = frame["consent_email"] & ~frame["opted_out"]
    np.testing.assert_array_equal(parsed.consent[:, 0], email)


def test_levels_appear_as_request_fields(tmp_path: Path) -> None:
    levels = load_scenario("retail_levels")
    log = synthetic_events(levels, 1_000, 50, days=60, seed=4)
    with new_store(tmp_path, levels) as store:
        store.ingest(log, now=NOW)
        frame = store.state(store.customer_ids(), NOW)
    assert {"rate_level", "dropout_level"} <= set(frame.columns)
    RequestSchema(ScenarioArrays.from_scenario(levels)).parse(frame.drop(columns=SUMMARY))


@pytest.mark.parametrize("name", ["retail", "retail_levels"])
def test_whole_quiet_days_move_the_stored_belief_as_a_recompute_would(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deciding 3 days after the last ingest: the stored beliefs are moved on by 3 quiet days
    (no recompute from history) and equal the filter run on the whole log at that time; a gap
    of part of a day recomputes instead."""
    scenario = load_scenario(name)
    log = synthetic_events(scenario, 3_000, 200, days=60, seed=5)
    ids = pd.Index(sorted(log.events["customer_id"].unique()))
    later = NOW + pd.Timedelta(days=3)
    with new_store(tmp_path, scenario) as store:
        store.ingest(log, now=NOW)
        recomputed: list[int] = []
        real = customer_store.beliefs

        def counting(*args: object) -> object:
            recomputed.append(len(args[2]))  # type: ignore[arg-type]
            return real(*args)  # type: ignore[arg-type]

        monkeypatch.setattr(customer_store, "beliefs", counting)
        _, joint = store.belief(ids, later)
        assert recomputed == []
        consent = consent_of(log, scenario)
        truth = filter_states(scenario, log, later, customer_ids=ids, consent=consent)
        np.testing.assert_allclose(joint, truth.joint, atol=1e-5)
        store.belief(ids, later + pd.Timedelta(hours=5))
        assert recomputed == [len(ids)]


@pytest.mark.parametrize("days", [0, 3, -10])
def test_whole_base_read_equals_the_per_id_read(
    tmp_path: Path, retail: Scenario, log: EventLog, monkeypatch: pytest.MonkeyPatch, days: int
) -> None:
    """Late events, consent, and reads at the ingest time, 3 quiet days later (beliefs moved on)
    and 10 days earlier (recomputed): the whole-base scan (``None``, or enough ids that the
    store scans) answers bit for bit what the per-id read answers, in the order asked."""
    early, late = halves(log)
    as_of = NOW + pd.Timedelta(days=days)
    with new_store(tmp_path, retail) as store:
        store.ingest(late, now=NOW)
        assert store.ingest(early, now=NOW).late_events > 0
        ids = store.customer_ids()
        state, joint = store.read(None, as_of)
        assert list(state["customer_id"]) == list(ids)
        assert (state["belief_consent"] == "conditioned").any()
        shuffled = ids[np.random.default_rng(days + 20).permutation(len(ids))][: len(ids) - 7]
        monkeypatch.setattr(customer_store, "WHOLE_SCAN_MIN", 0)  # scan, then pick in memory
        scanned = store.read(shuffled, as_of)
        assert store.read(list(ids), as_of)[0].equals(state)
        monkeypatch.setattr(customer_store, "WHOLE_SCAN_MIN", 10**9)  # the ``wanted`` table
        for asked, (frame, belief) in [(ids, (state, joint)), (shuffled, scanned)]:
            one_by_one = [store.read([i], as_of) for i in asked[:25]]
            per_id = store.read(asked, as_of)
            pd.testing.assert_frame_equal(frame, per_id[0], check_exact=True)
            np.testing.assert_array_equal(belief, per_id[1])
            expected = pd.concat([f for f, _ in one_by_one], ignore_index=True)
            pd.testing.assert_frame_equal(frame.iloc[:25], expected, check_exact=True)
            np.testing.assert_array_equal(belief[:25], np.concatenate([b for _, b in one_by_one]))
        np.testing.assert_array_equal(store.belief(None, as_of)[1], joint)
        pd.testing.assert_frame_equal(store.state(None, as_of), state, check_exact=True)
