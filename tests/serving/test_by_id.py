"""Deciding from the customer-state store: by id equals explicit-state scoring of the same state."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba.calibration.events import EventLog
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.serving.by_id import TwinMismatchError, decide_from_store, request_row, split_state
from nba.serving.scorer import PolicyScorer
from nba.store import CustomerStore, UnknownCustomerError
from nba.store.synthetic import START, synthetic_events

NOW = START + pd.Timedelta(days=40)
AS_OF = NOW + pd.Timedelta(hours=5)
KINDS = ("sent", "purchased", "opened", "redeemed", "unsubscribed")


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsigned test export
        return PolicyScorer.load(export_dir)


@pytest.fixture(scope="module")
def retail() -> Scenario:
    return load_scenario("retail")


def _log(scenario: Scenario, rows: list[tuple[int, int, int, int]]) -> EventLog:
    """Events from (customer, day, kind, action) tuples."""
    actions = scenario.actions
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{c}" for c, _, _, _ in rows],
            "timestamp": [START + pd.Timedelta(days=d, hours=7 + a) for _, d, _, a in rows],
            "event": [KINDS[k] for _, _, k, _ in rows],
            "channel": [actions[a].channel if k == 0 else None for _, _, k, a in rows],
            "action": [actions[a].offer if k == 0 else None for _, _, k, a in rows],
            "value": [25.0 + a if k in (1, 3) else None for _, _, k, a in rows],
        }
    )
    return EventLog.from_frames(frame, duplicates="drop")


EVENT = st.tuples(st.integers(0, 3), st.integers(0, 39), st.integers(0, 4), st.integers(0, 6))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(EVENT, min_size=1, max_size=25))
def test_score_id_is_explicit_scoring_and_batch_row(
    scorer: PolicyScorer, retail: Scenario, rows: list[tuple[int, int, int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with CustomerStore.create(Path(folder) / "c.db", retail) as store:
            store.ingest(_log(retail, rows), now=NOW)
            batch = decide_from_store(scorer, store, as_of=AS_OF)
            assert list(batch["customer_id"]) == list(store.customer_ids())
            for i, cid in enumerate(store.customer_ids()):
                state = store.state([cid], as_of=AS_OF)
                explicit = scorer.score(request_row(split_state(scorer, state)[0]))
                by_id = scorer.score_id(cid, store, as_of=AS_OF)
                assert by_id == explicit
                row = batch.iloc[i]
                assert row["action_name"] == by_id.action_name
                assert row["value_estimate"] == pytest.approx(
                    by_id.value_estimate, rel=1e-5, abs=1e-6
                )
                assert row["persona"] == state["persona"].iloc[0]
                assert row["stage_probability"] == state["stage_probability"].iloc[0]


def test_unsubscribed_customer_is_not_contacted(
    scorer: PolicyScorer, retail: Scenario, tmp_path: Path
) -> None:
    rows = [(0, 2, 0, 1), (0, 5, 4, 0), (1, 2, 0, 1)]
    with CustomerStore.create(tmp_path / "c.db", retail) as store:
        store.ingest(_log(retail, rows), now=NOW)
        decisions = decide_from_store(scorer, store, as_of=AS_OF).set_index("customer_id")
        assert decisions.loc["c0", "channel"] is None or pd.isna(decisions.loc["c0", "channel"])
        assert decisions.loc["c0", "action_name"] == "no_action"
        assert scorer.score_id("c0", store, as_of=AS_OF).action_name == "no_action"
        assert decisions.loc["c1", "action_name"] != "no_action"  # the untrained policy contacts


def test_capacity_and_subset_follow_the_batch_path(
    scorer: PolicyScorer, retail: Scenario, tmp_path: Path
) -> None:
    with CustomerStore.create(tmp_path / "c.db", retail) as store:
        store.ingest(synthetic_events(retail, 600, 60, days=30, seed=2), now=NOW)
        ids = list(store.customer_ids()[::-3])
        some = decide_from_store(scorer, store, ids, as_of=AS_OF, capacity={"push": 2})
        assert list(some["customer_id"]) == ids
        assert (some["channel"] == "push").sum() <= 2
        request = split_state(scorer, store.state(ids, as_of=AS_OF))[0]
        expected = scorer.score_batch(request, capacity={"push": 2})
        pd.testing.assert_frame_equal(some[expected.columns], expected)
        with pytest.raises(UnknownCustomerError, match="nobody"):
            decide_from_store(scorer, store, ["c1", "nobody"], as_of=AS_OF)


def test_model_of_another_twin_is_refused(scorer: PolicyScorer, tmp_path: Path) -> None:
    other = load_scenario("retail_levels")
    with CustomerStore.create(tmp_path / "c.db", other) as store:
        store.ingest(synthetic_events(other, 50, 5, days=30, seed=1), now=NOW)
        with pytest.raises(TwinMismatchError, match="retail_levels"):
            decide_from_store(scorer, store, as_of=AS_OF)
        with pytest.raises(TwinMismatchError, match="fingerprint"):
            scorer.score_id("c1", store, as_of=AS_OF)
