"""Deciding from the customer-state store: by id equals explicit-state scoring of the same state."""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba.calibration.events import EventLog
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.serving.by_id import (
    TwinMismatchError,
    decide_from_store,
    decide_state,
    decision_of_row,
    explainable,
    request_row,
    score_id,
    split_state,
)
from nba.serving.decision import Decision
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
    with CustomerStore.create(tmp_path / "c.db", retail, consent_required=False) as store:
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


# ------------------------------------------------------------------ belief-trained policies
@pytest.fixture(scope="module")
def belief_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained, seeded PPO on belief observations, exported."""
    folder = tmp_path_factory.mktemp("belief_policy")
    _belief_scorer("retail", folder)
    return folder


@pytest.fixture(scope="module")
def belief_scorer(belief_folder: Path) -> PolicyScorer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsigned test export
        return PolicyScorer.load(belief_folder)


def _belief_scorer(name: str, folder: Path) -> PolicyScorer:
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.serving.export import export_policy

    scenario = load_scenario(name)
    env = TwinVecEnv(scenario, n_envs=2, seed=0, observation="belief")
    export_policy(PPO("MlpPolicy", env, seed=0, device="cpu"), scenario, folder, algo="ppo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unsigned test export
        return PolicyScorer.load(folder)


def _joint(store: CustomerStore, ids: list[str]) -> np.ndarray:
    """The store's belief as (N, T, K) float64, renormalised, as an independent reading."""
    _, joint = store.belief(ids, as_of=AS_OF)
    flat = joint.astype(np.float64).reshape(len(ids), -1)
    return (flat / flat.sum(axis=1, keepdims=True)).reshape(len(ids), 4, 7)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(EVENT, min_size=1, max_size=25))
def test_belief_model_decides_on_the_stored_belief(
    belief_scorer: PolicyScorer, retail: Scenario, rows: list[tuple[int, int, int, int]]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        with CustomerStore.create(Path(folder) / "c.db", retail) as store:
            store.ingest(_log(retail, rows), now=NOW)
            ids = list(store.customer_ids())
            batch = decide_from_store(belief_scorer, store, as_of=AS_OF)
            request = split_state(belief_scorer, store.state(ids, as_of=AS_OF))[0]
            belief = _joint(store, ids)
            lifted = {c: None for c in retail.channel_names}
            explicit = belief_scorer.score_batch(request, belief=belief, capacity=lifted, top_k=13)
            for i, cid in enumerate(ids):
                by_id = belief_scorer.score_id(cid, store, as_of=AS_OF)
                _assert_same(by_id, decision_of_row(explicit.iloc[i]))
                assert by_id.action_name == batch["action_name"].iloc[i]
                assert by_id.propensity == batch["propensity"].iloc[i]
                assert by_id.value_estimate == pytest.approx(
                    batch["value_estimate"].iloc[i], rel=1e-5, abs=1e-6
                )


def _assert_same(got: Decision, expected: Decision) -> None:
    """Equal decisions, up to float32 rounding of network outputs between batch sizes."""
    assert replace(got, value_estimate=0.0, alternatives=[]) == replace(
        expected, value_estimate=0.0, alternatives=[]
    )
    assert got.value_estimate == pytest.approx(expected.value_estimate, rel=1e-5, abs=1e-6)
    assert [a["action"] for a in got.alternatives] == [a["action"] for a in expected.alternatives]
    assert [a["probability"] for a in got.alternatives] == pytest.approx(
        [a["probability"] for a in expected.alternatives], rel=1e-5
    )


def test_belief_model_is_not_the_most_likely_state(
    belief_scorer: PolicyScorer, retail: Scenario, tmp_path: Path
) -> None:
    with CustomerStore.create(tmp_path / "c.db", retail) as store:
        store.ingest(synthetic_events(retail, 300, 60, days=30, seed=3), now=NOW)
        ids = list(store.customer_ids())
        decided = decide_from_store(belief_scorer, store, as_of=AS_OF)
        request = split_state(belief_scorer, store.state(ids, as_of=AS_OF))[0]
        likely = belief_scorer.score_batch(request)  # the request's state taken as certain
        assert not np.allclose(decided["value_estimate"], likely["value_estimate"])
        with_belief = belief_scorer.score_batch(request, belief=_joint(store, ids))
        pd.testing.assert_frame_equal(decided[with_belief.columns], with_belief)


def test_certain_stored_belief_is_explicit_scoring(belief_scorer: PolicyScorer) -> None:
    """A store answering a certain belief: score_id equals ``score`` of the explicit state."""
    scenario = load_scenario("retail")
    state = pd.DataFrame(
        {
            "customer_id": ["a"],
            "as_of": [pd.Timestamp(AS_OF)],
            "persona": [scenario.persona_names[0]],
            "stage": [scenario.stage_names[2]],
            "pressure": [1],
            "discount_habit": [False],
            "opted_out": [False],
            "days_since_direct": [9],
            "days_since_messaging": [2],
        }
    )
    for p in range(4):
        for k in (0, 3, 6):
            joint = np.zeros((1, 4, 1, 1, 7), dtype=np.float32)
            joint[0, p, 0, 0, k] = 1.0
            frame = state.assign(persona=scenario.persona_names[p], stage=scenario.stage_names[k])
            decision = score_id(belief_scorer, "a", _FakeStore(frame, joint), as_of=AS_OF)
            explicit = belief_scorer.score(request_row(frame))
            assert decision.action == explicit.action
            assert decision.propensity == explicit.propensity
            assert decision.value_estimate == pytest.approx(explicit.value_estimate, rel=1e-5)
            assert [a["action"] for a in decision.alternatives] == [
                a["action"] for a in explicit.alternatives
            ]


class _FakeStore:
    """A store answering one given state frame and joint belief (no scenario: not checked)."""

    def __init__(self, state: pd.DataFrame, joint: np.ndarray) -> None:
        self._state, self._joint = state, joint

    def state(self, customer_ids: object, as_of: object = None) -> pd.DataFrame:
        return self._state

    def belief(self, customer_ids: object, as_of: object = None) -> tuple[pd.Index, np.ndarray]:
        return pd.Index(self._state["customer_id"]), self._joint

    def read(self, customer_ids: object, as_of: object = None) -> tuple[pd.DataFrame, np.ndarray]:
        return self._state, self._joint

    def customer_ids(self) -> pd.Index:
        return pd.Index(self._state["customer_id"])


def test_levels_belief_is_read_in_the_trackers_order(tmp_path: Path) -> None:
    """retail_levels: a joint with all mass on (persona, rate, dropout, stage) decides as the
    explicit request of that state (the (P, Lr, Ld, K) -> (T, K) reshape keeps the order)."""
    scorer = _belief_scorer("retail_levels", tmp_path)
    scenario = scorer.policy.scenario
    assert not explainable(scorer)  # S x A over the tabulation limit: no explanation columns
    base = {
        "customer_id": "a",
        "as_of": pd.Timestamp(AS_OF),
        "pressure": 0,
        "discount_habit": True,
        "opted_out": False,
        "days_since_direct": 4,
        "days_since_messaging": 1,
    }
    rng = np.random.default_rng(0)
    for _ in range(8):
        p, r, d, k = (int(rng.integers(0, n)) for n in (4, 3, 2, 7))
        cell = {
            "persona": scenario.persona_names[p],
            "stage": scenario.stage_names[k],
            "rate_level": r,
            "dropout_level": d,
        }
        frame = pd.DataFrame([{**base, **cell}])
        frame = frame[[c for c in frame.columns if c in scorer.schema.fields]]
        joint = np.zeros((1, 4, 3, 2, 7), dtype=np.float32)
        joint[0, p, r, d, k] = 1.0
        decided = decide_state(scorer, frame, belief=_reshaped(scorer, joint))
        assert "expected_value" not in decided
        explicit = scorer.score_batch(frame)
        assert decided["action"].iloc[0] == explicit["action"].iloc[0]
        assert decided["value_estimate"].iloc[0] == pytest.approx(
            explicit["value_estimate"].iloc[0], rel=1e-5, abs=1e-6
        )
        other = frame.assign(rate_level=(r + 1) % 3, dropout_level=1 - d)
        decision = score_id(scorer, "a", _FakeStore(other, joint), as_of=AS_OF)
        assert decision.value_estimate == pytest.approx(
            explicit["value_estimate"].iloc[0], rel=1e-5, abs=1e-6
        )


def _reshaped(scorer: PolicyScorer, joint: np.ndarray) -> np.ndarray:
    return joint.astype(np.float64).reshape(len(joint), *scorer.features.latent_shape)


def test_decisions_carry_expected_values(
    belief_scorer: PolicyScorer, retail: Scenario, tmp_path: Path
) -> None:
    from nba.belief_values import BeliefValues

    with CustomerStore.create(tmp_path / "c.db", retail) as store:
        store.ingest(synthetic_events(retail, 300, 50, days=30, seed=8), now=NOW)
        ids = list(store.customer_ids())
        decided = decide_from_store(belief_scorer, store, as_of=AS_OF)
        request = split_state(belief_scorer, store.state(ids, as_of=AS_OF))[0]
        belief = _joint(store, ids)
    parsed = belief_scorer.schema.parse(request)
    allowed = belief_scorer.rule_masks(parsed).allowed
    q = BeliefValues(retail).q(belief, parsed.state, parsed.day)
    rows = np.arange(len(ids))
    np.testing.assert_allclose(decided["expected_value"], q[rows, decided["action"]], rtol=1e-9)
    names = list(belief_scorer.action_names)
    actions = decided[[f"best_{k}_action" for k in (1, 2, 3)]].to_numpy()
    values = decided[[f"best_{k}_expected_value" for k in (1, 2, 3)]].to_numpy(dtype=float)
    for n in range(len(ids)):
        shown = ~pd.isna(actions[n])
        assert 1 <= shown.sum() == min(3, allowed[n].sum()) and shown[: shown.sum()].all()
        codes = [names.index(str(a)) for a in actions[n][shown]]
        assert all(allowed[n, codes]) and list(values[n][shown]) == list(q[n, codes])
        assert list(values[n][shown]) == sorted(values[n][shown], reverse=True)
        assert values[n][0] == q[n][allowed[n]].max()
    assert decided["expected_value"].std() > 0  # values differ between customers


def test_cli_decides_for_a_belief_model(
    belief_scorer: PolicyScorer,
    belief_folder: Path,
    retail: Scenario,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nba.cli import main

    db, out = tmp_path / "c.db", tmp_path / "d.parquet"
    with CustomerStore.create(db, retail) as store:
        store.ingest(synthetic_events(retail, 200, 30, days=30, seed=6), now=NOW)
        expected = decide_from_store(belief_scorer, store, as_of=AS_OF)
    args = ["decide", "--store", str(db), "-m", str(belief_folder)]
    args += ["--as-of", AS_OF.isoformat(), "--out", str(out), "--json"]
    code = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unsigned test export
            main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert summary["observation"] == "belief"
    decisions = pd.read_parquet(out)
    assert {"expected_value", "best_1_action", "best_1_expected_value"} <= set(decisions)
    pd.testing.assert_frame_equal(decisions, expected, check_dtype=False)
    assert summary["expected_value_mean"] == pytest.approx(expected["expected_value"].mean())
