"""The single-customer path: every request form decides as ``score_batch`` does, row for row.

``PolicyScorer.score`` reads timestamps in plain Python and re-decides a decision-table row
through the policy head's one-row functions; these tests hold each of those pieces to the
batch path and to the array functions they mirror.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3 import DQN

from nba import policy_head
from nba.envs import TwinVecEnv
from nba.policy_head import Exploration
from nba.scenarios import load_scenario
from nba.serving.export import export_policy
from nba.serving.scorer import Decision, PolicyScorer, ScoringInputError
from tests.serving.conftest import population
from tests.serving.test_fuzz import valid_row

SCENARIO = load_scenario("retail")
AS_OF = pd.Timestamp("2026-11-25T10:00:00Z")  # a Wednesday
CAPPED = ("email", "sms", "direct_mail", "call_centre")  # the channels under a cap rule


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    return PolicyScorer.load(export_dir)


@pytest.fixture(scope="module")
def dqn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Q-value export: without a value network the value depends on the customer's mask."""
    model = DQN("MlpPolicy", TwinVecEnv(SCENARIO, n_envs=2, seed=0), buffer_size=100, seed=0)
    folder = tmp_path_factory.mktemp("dqn")
    export_policy(model, SCENARIO, folder, algo="dqn")
    return folder


def assert_same(one: Decision, batch: pd.Series) -> None:
    """A single decision equals the batch row (float32 networks: compare to their precision)."""
    assert one.action == batch["action"]
    assert one.explored == batch["explored"]
    assert one.propensity == pytest.approx(batch["propensity"], rel=1e-5)
    assert one.value_estimate == pytest.approx(batch["value_estimate"], rel=1e-5, abs=1e-6)
    # alternatives list the actions the policy gives a chance; the batch ranks every allowed one
    ranked = [
        batch[f"rank_{k}_action"]
        for k in (1, 2, 3)
        if pd.notna(batch[f"rank_{k}_action"]) and batch[f"rank_{k}_probability"] > 0
    ]
    assert [a["action"] for a in one.alternatives[: len(ranked)]] == ranked
    for k, alternative in enumerate(one.alternatives[: len(ranked)], start=1):
        assert alternative["probability"] == pytest.approx(
            batch[f"rank_{k}_probability"], rel=1e-5, abs=1e-6
        )
    reason = None if pd.isna(batch["suppressed_reason"]) else batch["suppressed_reason"]
    assert (one.suppressed or {}).get("reason") == reason


def with_timestamps(row: dict[str, object], stamps: list[object]) -> dict[str, object]:
    out = {k: v for k, v in row.items() if not k.startswith("days_since_")}
    out.update({f"last_contact_{c}": s for c, s in zip(CAPPED, stamps, strict=True)})
    return out


# ------------------------------------------------------------------ one-row policy head
@pytest.mark.parametrize("kind", ["logits", "q_values"])
def test_row_functions_equal_the_array_functions(kind: str) -> None:
    rng = np.random.default_rng(0)
    preferences = rng.normal(0, 3, (400, 13))
    preferences[:50, 3] = preferences[:50, 5]  # ties: both take the first maximum
    allowed = rng.random((400, 13)) < 0.5
    allowed[:, 0] = True
    head = policy_head.decide(preferences, allowed, kind)
    order, _ = head.ranking(13)
    for i in range(400):
        row = policy_head.decide_row(preferences[i].tolist(), allowed[i].tolist(), kind)
        assert row.greedy == head.greedy[i] and row.top == head.top[i]
        assert row.top_allowed == head.top_allowed[i]
        assert row.masked == head.masked[i].tolist()
        np.testing.assert_allclose(row.probabilities, head.probabilities[i], rtol=1e-13, atol=0)
        assert policy_head.ranking_row(row.masked) == [a for a in order[i].tolist() if a >= 0]


@pytest.mark.parametrize(
    "exploration",
    [
        Exploration(kind="greedy"),
        Exploration(kind="epsilon", epsilon=0.3, seed=5),
        Exploration(kind="softmax", temperature=0.7, seed=5),
    ],
)
def test_row_exploration_draws_what_a_batch_draws(exploration: Exploration) -> None:
    """One row with its uniform chooses what the batch chooses: same actions, propensities."""
    rng = np.random.default_rng(1)
    preferences = rng.normal(0, 1, (2_000, 13))
    allowed = rng.random((2_000, 13)) < 0.6
    allowed[:, 0] = True
    uniforms = rng.random(2_000)
    head = policy_head.decide(preferences, allowed, "logits")
    chosen, propensity, explored = policy_head.explore_with(head, allowed, exploration, uniforms)
    for i in range(2_000):
        row = policy_head.decide_row(preferences[i].tolist(), allowed[i].tolist(), "logits")
        action, p, was_explored = policy_head.explore_row_with(row, exploration, uniforms[i])
        assert action == chosen[i] and was_explored == explored[i]
        assert p == pytest.approx(propensity[i], rel=1e-13)
        expected = policy_head.exploration_probabilities(
            head.take(np.array([i])), allowed[i : i + 1], exploration
        )
        np.testing.assert_allclose(
            policy_head.exploration_probabilities_row(row, exploration), expected[0], rtol=1e-13
        )
    if exploration.kind != "greedy":
        assert explored.any()


# ------------------------------------------------------------------ timestamps
def test_timestamps_give_the_days_since_the_batch_parser_gives(scorer: PolicyScorer) -> None:
    spellings = [
        None,
        float("nan"),
        pd.NaT,
        "2026-11-25T10:00:00Z",  # the decision time itself: 1 day (the floor of the clip)
        "2026-11-24T10:00:00.000000001Z",  # a nanosecond short of a day
        "2026-11-24T10:00:00Z",
        "2026-11-20T09:00:00+01:00",
        "2026-11-18T10:00:00.123456789-05:30",
        "2026-11-22 23:59",
        "2026-11-19",
        "2025-01-01T00:00:00Z",
        datetime(2026, 11, 23, 8, 30),  # naive: UTC
        datetime(2026, 11, 21, 8, 30, tzinfo=timezone(timedelta(hours=-8))),
        pd.Timestamp("2026-11-24T09:59:59.999999999Z"),
        pd.Timestamp("2026-11-17T00:00:00"),
    ]
    rng = np.random.default_rng(3)
    base = population(1)[0:1].to_dict(orient="records")[0]
    for _ in range(300):
        picks = [spellings[i] for i in rng.integers(0, len(spellings), len(CAPPED))]
        row = with_timestamps(base, picks)
        one = scorer.schema.parse_one(row, as_of=AS_OF)
        assert one is not None  # read without pandas
        batch = scorer.schema.parse(pd.DataFrame([row]), as_of=AS_OF)
        assert list(one.days_since) == batch.state.days_since[0].tolist(), picks


def test_a_row_as_of_sets_the_decision_time_and_weekday(scorer: PolicyScorer) -> None:
    row = with_timestamps(
        population(1).iloc[0].to_dict(), ["2026-11-27T10:00:00Z", None, None, None]
    )
    row["as_of"] = "2026-11-29T12:00:00+02:00"  # Sunday, 10:00 UTC
    one = scorer.schema.parse_one(row, as_of=AS_OF)  # the call's as_of is earlier: ignored
    assert one is not None and one.weekday == 6 and one.days_since == (7, 2)
    batch = scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF).iloc[0]
    assert_same(scorer.score(row, as_of=AS_OF), batch)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("last_contact_email", "2026-11-26T00:00:00Z"),  # in the future
        ("last_contact_email", "2026-02-30"),  # no such day
        ("last_contact_sms", "yesterday"),
        ("last_contact_sms", 17),
        ("last_contact_call_centre", True),
        ("as_of", None),
        ("as_of", "not a time"),
    ],
)
def test_bad_timestamps_raise_the_batch_error(
    scorer: PolicyScorer, field: str, value: object
) -> None:
    row = with_timestamps(population(1).iloc[0].to_dict(), [None, None, None, None])
    row[field] = value
    with pytest.raises(ScoringInputError) as batch:
        scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF)
    with pytest.raises(ScoringInputError) as single:
        scorer.score(row, as_of=AS_OF)
    assert str(single.value) == str(batch.value)


@pytest.mark.parametrize("spelling", ["20261120", "2026-11-20T09", "2026-11-20T09:00:00+0100"])
def test_other_spellings_pandas_reads_still_score(scorer: PolicyScorer, spelling: str) -> None:
    row = with_timestamps(population(1).iloc[0].to_dict(), [spelling, None, spelling, None])
    batch = scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF).iloc[0]
    assert_same(scorer.score(row, as_of=AS_OF), batch)


@st.composite
def timestamped_row(draw: st.DrawFn) -> dict[str, object]:
    # the fuzz test's valid customer, with timestamps in place of the day counts
    row = {k: v for k, v in valid_row(draw).items() if not k.startswith("days_since_")}
    row["day"] = draw(st.sampled_from([0, 1, SCENARIO.horizon_days - 1]))
    for channel in CAPPED:
        ago = draw(st.none() | st.integers(0, 14 * 86_400 * 10**6))  # microseconds back
        if ago is None:
            row[f"last_contact_{channel}"] = None
        else:
            moment = AS_OF.to_pydatetime() - timedelta(microseconds=ago)
            row[f"last_contact_{channel}"] = draw(
                st.sampled_from(
                    [
                        moment,
                        moment.isoformat(),
                        moment.isoformat().replace("+00:00", "Z"),
                        moment.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
                    ]
                )
            )
    for channel in SCENARIO.channel_names:
        if draw(st.booleans()):
            row[f"consent_{channel}"] = draw(st.booleans())
    return row


@settings(max_examples=150, deadline=None)
@given(row=timestamped_row())
def test_timestamp_rows_decide_as_the_batch(scorer: PolicyScorer, row: dict) -> None:
    assert scorer.schema.parse_one(row, as_of=AS_OF) is not None  # no pandas on this path
    batch = scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF).iloc[0]
    assert_same(scorer.score(row, as_of=AS_OF), batch)


# ------------------------------------------------------------------ consent and exploration
@pytest.mark.parametrize(
    "exploration",
    [
        Exploration(kind="greedy"),
        Exploration(kind="epsilon", epsilon=0.3, seed=11),
        Exploration(kind="softmax", temperature=1.5, seed=11),
    ],
)
def test_customers_one_by_one_equal_one_batch(export_dir: Path, exploration: Exploration) -> None:
    """Same seed: scoring rows one at a time draws, decides and logs what one batch does."""
    rows = population(400, seed=5, consent=True).to_dict(orient="records")
    granted = {p.name: p.consent for p in SCENARIO.personas}
    for row in rows[::3]:  # these restate their persona's consent: the table's own rows
        for channel in SCENARIO.channel_names:
            row[f"consent_{channel}"] = channel in granted[row["persona"]]
    single = PolicyScorer.load(export_dir, exploration=exploration)
    batch = PolicyScorer.load(export_dir, exploration=exploration)
    decisions = batch.score_batch(pd.DataFrame(rows), as_of=AS_OF)
    for i, row in enumerate(rows):
        assert_same(single.score(row, as_of=AS_OF), decisions.iloc[i])
    assert decisions["suppressed_reason"].notna().any()
    if exploration.kind != "greedy":
        assert decisions["explored"].any()


def test_q_value_exports_value_the_customers_own_mask(dqn_dir: Path) -> None:
    scorer = PolicyScorer.load(dqn_dir)
    frame = population(300, seed=6, consent=True)
    decisions = scorer.score_batch(frame, as_of=AS_OF)
    for i, row in enumerate(frame.to_dict(orient="records")):
        one = scorer.score(row, as_of=AS_OF)
        assert_same(one, decisions.iloc[i])
        assert one.alternatives == [{"action": one.action_name, "probability": 1.0}]
