"""Consent in the store: decisions keep to what each customer granted, beliefs are conditioned
on it as the training envs' are, and it is idempotent, order-free and read as of a time."""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.belief import BeliefTracker
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.filtering import filter_states
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.serving.by_id import decide_from_store, split_state
from nba.serving.schema import CONSENT
from nba.serving.scorer import PolicyScorer
from nba.store import CustomerStore
from nba.store.consent import CONSENT as STORE_CONSENT
from nba.store.database import SCHEMA_VERSION
from nba.store.synthetic import START, synthetic_events
from tests.store.conftest import NOW, consent_of, new_store, to_legacy

CHANNELS = ["email", "sms", "push", "in_app", "direct_mail", "paid_social", "call_centre"]


def _consents(rows: list[tuple[str, pd.Timestamp, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [c for c, _, _ in rows],
            "timestamp": [t for _, t, _ in rows],
            "event": "consented",
            "channel": [ch for _, _, ch in rows],
        }
    )


def _with(log: EventLog, extra: pd.DataFrame) -> EventLog:
    return EventLog.from_frames(pd.concat([log.events, extra], ignore_index=True))


@pytest.fixture(scope="module")
def plain(retail: Scenario) -> EventLog:
    """Random events of 60 customers without any consent record."""
    return synthetic_events(retail, 900, 60, days=60, seed=11, consent=False)


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsigned test export
        return PolicyScorer.load(export_dir)


def test_email_only_customers_are_only_decided_email_or_channels_needing_no_consent(
    tmp_path: Path, retail: Scenario, plain: EventLog, scorer: PolicyScorer
) -> None:
    ids = sorted(plain.events["customer_id"].unique())
    log = _with(plain, _consents([(c, START, "email") for c in ids]))
    with new_store(tmp_path, retail) as store:
        store.ingest(log, now=NOW)
        decided = decide_from_store(scorer, store, as_of=NOW)
        state = store.state(store.customer_ids(), NOW)
    assert set(decided["channel"].dropna()) <= {"email", "paid_social"}
    assert (state["belief_consent"] == "fits_no_persona").all()  # no retail persona is email-only
    # the check can fail: on the persona's default consent the same policy contacts elsewhere
    request = split_state(scorer, state)[0]
    default = scorer.score_batch(request.drop(columns=[f"{CONSENT}{c}" for c in CHANNELS]))
    assert not set(default["channel"].dropna()) <= {"email", "paid_social"}


def test_no_record_means_no_consent_by_default_and_the_persona_default_when_asked(
    tmp_path: Path, retail: Scenario, plain: EventLog, scorer: PolicyScorer
) -> None:
    arrays = ScenarioArrays.from_scenario(retail)
    with new_store(tmp_path, retail, "strict.db") as strict:
        strict.ingest(plain, now=NOW)
        decided = decide_from_store(scorer, strict, as_of=NOW)
        state = strict.state(strict.customer_ids(), NOW)
    assert set(decided["channel"].dropna()) <= {"paid_social"}
    assert (state["belief_consent"] == "no_record").all()
    granted = state[[f"{STORE_CONSENT}{c}" for c in CHANNELS]].to_numpy()
    assert (granted == np.array([c == "paid_social" for c in CHANNELS])).all()

    path = tmp_path / "lenient.db"
    with CustomerStore.create(path, retail, consent_required=False) as lenient:
        lenient.ingest(plain, now=NOW)
    with CustomerStore.open(path) as lenient:  # the setting is the store's, kept in the file
        assert lenient.consent_required is False
        state = lenient.state(lenient.customer_ids(), NOW)
    persona = pd.Index(retail.persona_names).get_indexer(state["persona"])
    granted = state[[f"{STORE_CONSENT}{c}" for c in CHANNELS]].to_numpy()
    np.testing.assert_array_equal(granted, arrays.persona_consent[persona])
    with pytest.raises(Exception, match="consent_required"):
        CustomerStore.create(tmp_path / "x.db", retail, consent_required="yes")  # type: ignore[arg-type]


def test_stored_beliefs_are_the_trackers_prior_conditioned_filter(
    tmp_path: Path, retail: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = synthetic_events(retail, 3_000, 200, days=60, seed=3)
    ids = pd.Index(sorted(log.events["customer_id"].unique()))
    with new_store(tmp_path, retail) as store:
        store.ingest(log, now=NOW)
        _, joint = store.belief(ids, NOW)
        state = store.state(ids, NOW)
    persona = joint.astype(np.float64).sum(axis=(2, 3, 4))
    np.testing.assert_allclose(persona.max(axis=1), 1.0, atol=1e-6)  # retail: consent = persona
    consent = consent_of(log, retail).reindex(ids)
    arrays = ScenarioArrays.from_scenario(retail)
    open_ = ~np.array([c.requires_consent for c in retail.channels])
    pattern = consent.to_numpy() | open_
    conditioned = BeliefTracker(retail).prior(len(ids), consent=pattern)
    expected = (arrays.persona_consent[None] == pattern[:, None]).all(axis=2).argmax(axis=1)
    assert (state["persona"].to_numpy() == np.array(retail.persona_names)[expected]).all()
    # the truth: the tracker's own recursion started from its consent-conditioned prior
    monkeypatch.setattr(BeliefTracker, "prior", lambda self, n, **_: conditioned[:n].copy())
    truth = filter_states(retail, log, NOW, customer_ids=ids)
    monkeypatch.undo()
    np.testing.assert_allclose(joint, truth.joint, atol=1e-6)
    mine = filter_states(retail, log, NOW, customer_ids=ids, consent=consent)
    np.testing.assert_allclose(mine.log_likelihood, truth.log_likelihood, rtol=1e-9, atol=1e-9)


def test_without_consent_events_beliefs_are_unchanged(
    tmp_path: Path, retail: Scenario, plain: EventLog
) -> None:
    ids = pd.Index(sorted(plain.events["customer_id"].unique()))
    with new_store(tmp_path, retail) as store:
        store.ingest(plain, now=NOW)
        _, joint = store.belief(ids, NOW)
    today = filter_states(retail, plain, NOW, customer_ids=ids)
    np.testing.assert_allclose(joint, today.joint, atol=1e-6)
    assert joint.astype(np.float64).sum(axis=(2, 3, 4)).max() < 0.99  # persona stays uncertain


def test_consent_no_persona_has_keeps_the_prior_and_says_so(
    tmp_path: Path, retail: Scenario, plain: EventLog
) -> None:
    odd = _consents([("c1", START, "sms"), ("c2", START, "email"), ("c2", START, "direct_mail")])
    log = _with(plain, odd)
    ids = pd.Index(["c1", "c2", "c3"])
    with new_store(tmp_path, retail) as store:
        report = store.ingest(log, now=NOW)  # the batch is not refused
        state = store.state(ids, NOW).set_index("customer_id")
        _, joint = store.belief(ids, NOW)
    assert report.events_added == len(log.events)
    assert list(state["belief_consent"]) == ["fits_no_persona", "conditioned", "no_record"]
    assert state.loc["c1", "consent_sms"] and not state.loc["c1", "consent_email"]
    unconditioned = filter_states(retail, log, NOW, customer_ids=ids)
    np.testing.assert_allclose(joint[[0, 2]], unconditioned.joint[[0, 2]], atol=1e-6)
    assert state.loc["c2", "persona"] == "passive_browser"
    assert state.loc["c2", "persona_probability"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(EventLogError, match=r"'c1'.*fits no persona"):
        consent = pd.DataFrame({"sms": [True]}, index=["c1"])
        filter_states(retail, log, NOW, customer_ids=ids, consent=consent)
    with pytest.raises(EventLogError, match=r"unknown channel\(s\) \['fax'\]"):
        filter_states(retail, log, NOW, consent=pd.DataFrame({"fax": [True]}, index=["c1"]))


def test_idempotent_order_free_and_read_as_of_a_time(
    tmp_path: Path, retail: Scenario, plain: EventLog
) -> None:
    later = START + pd.Timedelta(days=30)
    grants = _consents([("c1", later, c) for c in ("email", "sms", "push", "in_app")])
    whole = _with(plain, grants)
    with new_store(tmp_path, retail, "a.db") as a, new_store(tmp_path, retail, "b.db") as b:
        a.ingest(whole, now=NOW)
        a.ingest(whole, now=NOW)  # again: nothing changes
        b.ingest(EventLog.from_frames(grants), now=NOW)  # consent first, history late
        report = b.ingest(plain, now=NOW)
        assert report.late_events > 0
        ids = a.customer_ids()
        pd.testing.assert_frame_equal(a.state(ids, NOW), b.state(ids, NOW))
        np.testing.assert_allclose(a.belief(ids, NOW)[1], b.belief(ids, NOW)[1], atol=2e-6)
        before = a.state(["c1"], later).iloc[0]  # the grant is at `later`: not yet
        after = a.state(["c1"], later + pd.Timedelta(seconds=1)).iloc[0]
        _, prior_belief = a.belief(["c1"], later)
    assert before["belief_consent"] == "no_record" and not before["consent_sms"]
    assert after["belief_consent"] == "conditioned" and after["consent_sms"]
    assert after["persona"] == "busy_professional"
    expected = filter_states(retail, plain, later, customer_ids=pd.Index(["c1"]))
    np.testing.assert_allclose(prior_belief, expected.joint, atol=1e-6)


def test_consent_events_are_checked_by_row_and_field(tmp_path: Path, retail: Scenario) -> None:
    with pytest.raises(EventLogError, match=r"row 0, channel: a 'consented' event needs"):
        EventLog.from_frames(_consents([("c1", START, None)]))  # type: ignore[list-item]
    bad = EventLog.from_frames(_consents([("c1", START, "email"), ("c1", START, "fax")]))
    with new_store(tmp_path, retail) as store:
        with pytest.raises(EventLogError, match=r"row 1, channel: 'fax' on a 'consented' event"):
            store.ingest(bad, now=NOW)
        assert len(store) == 0


def test_a_version_1_store_is_migrated_and_has_no_consent(
    tmp_path: Path, retail: Scenario, plain: EventLog
) -> None:
    path = tmp_path / "old.db"
    with CustomerStore.create(path, retail) as store:
        store.ingest(plain, now=NOW)
        expected = store.state(store.customer_ids(), NOW)
    to_legacy(path, 1)  # what a store written before consent looked like
    with CustomerStore.open(path, retail) as store:
        pd.testing.assert_frame_equal(store.state(store.customer_ids(), NOW), expected)
        assert store.consent_required
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (SCHEMA_VERSION,)


def test_the_store_names_consent_as_the_request_does() -> None:
    assert STORE_CONSENT == CONSENT
