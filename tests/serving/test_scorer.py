from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.errors import NBAValidationError
from nba.serving.scorer import Exploration, PolicyScorer
from tests.serving.conftest import customer, frame
from tests.serving.conftest import population as random_customers

MONDAY = pd.Timestamp("2026-11-23T10:00:00Z")
SUNDAY = pd.Timestamp("2026-11-29T10:00:00Z")


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    return PolicyScorer.load(export_dir, model_version="v-test")


def test_single_and_batch_agree_and_report_everything(scorer: PolicyScorer) -> None:
    decision = scorer.score(customer(), as_of=MONDAY)
    row = scorer.score_batch(frame(customer()), as_of=MONDAY).iloc[0]
    assert decision.action == row["action"] and decision.action_name == row["action_name"]
    assert decision.model_version == "v-test" and decision.propensity == 1.0
    assert decision.alternatives[0]["action"] == decision.action_name
    total = sum(a["probability"] for a in decision.alternatives)
    assert total == pytest.approx(1.0)
    probabilities = [a["probability"] for a in decision.alternatives]
    assert probabilities == sorted(probabilities, reverse=True)
    assert np.isfinite(decision.value_estimate)


def test_chosen_actions_are_always_allowed(scorer: PolicyScorer) -> None:
    population = random_customers(5_000)
    decisions = scorer.score_batch(population, as_of=SUNDAY)
    parsed = scorer.schema.parse(population, as_of=SUNDAY.to_pydatetime())
    from nba.contact_rules import action_mask

    mask = action_mask(
        scorer.arrays.rules,
        parsed.consent,
        parsed.state.pressure,
        parsed.state.days_since,
        parsed.weekday,
    )
    assert mask[np.arange(len(population)), decisions["action"].to_numpy()].all()
    # sundays are quiet for sms and calls
    assert not decisions["channel"].isin(["sms", "call_centre"]).any()
    opted = population["opted_out"].to_numpy()
    assert set(decisions.loc[opted, "channel"].dropna()) <= {"paid_social"}


def test_rule_suppression_gives_a_reason(scorer: PolicyScorer) -> None:
    population = random_customers(3_000, seed=1)
    decisions = scorer.score_batch(population, as_of=SUNDAY)
    suppressed = decisions["suppressed_action"].notna()
    assert suppressed.any()
    assert (
        decisions.loc[suppressed, "suppressed_action"] != decisions.loc[suppressed, "action_name"]
    ).all()
    reasons = decisions.loc[suppressed, "suppressed_reason"].str.split(":").str[0]
    assert set(reasons) <= {"consent", "cap", "global_cap", "quiet_day"}
    assert decisions.loc[~suppressed, "suppressed_reason"].isna().all()


def test_nothing_allowed_means_no_action(scorer: PolicyScorer) -> None:
    row = customer(pressure=6, opted_out=True, days_since_direct=1, days_since_messaging=1)
    consent = {f"consent_{c}": False for c in scorer.policy.scenario.channel_names}
    decision = scorer.score({**row, **consent}, as_of=SUNDAY)
    assert decision.action_name == "no_action" and decision.channel is None


@pytest.mark.parametrize("kind", ["epsilon", "softmax"])
def test_exploration_is_seeded_and_propensities_are_right(export_dir: Path, kind: str) -> None:
    population = random_customers(20_000, seed=2)
    exploration = Exploration(kind=kind, epsilon=0.3, temperature=2.0, seed=7)
    first = PolicyScorer.load(export_dir, exploration=exploration).score_batch(
        population, as_of=MONDAY
    )
    second = PolicyScorer.load(export_dir, exploration=exploration).score_batch(
        population, as_of=MONDAY
    )
    pd.testing.assert_frame_equal(first, second)
    assert first["explored"].any() and (first["propensity"] > 0).all()
    # check logged propensities against the empirical frequency for one repeated customer
    one = pd.concat([population.iloc[[0]]] * 20_000, ignore_index=True)
    draws = PolicyScorer.load(export_dir, exploration=exploration).score_batch(one, as_of=MONDAY)
    frequency = draws["action"].value_counts(normalize=True)
    expected = draws.groupby("action")["propensity"].first()
    np.testing.assert_allclose(frequency.sort_index(), expected.sort_index(), atol=0.015)


def test_capacity_is_never_exceeded_and_displaced_get_alternatives(scorer: PolicyScorer) -> None:
    population = random_customers(4_000, seed=3)
    free = scorer.score_batch(population, as_of=MONDAY)
    scarce = free["channel"].value_counts().index[0]  # the channel this policy uses most
    wanted = int((free["channel"] == scarce).sum())
    assert wanted > 20
    limited = scorer.score_batch(population, as_of=MONDAY, capacity={scarce: 10})
    assert (limited["channel"] == scarce).sum() == 10
    displaced = (free["channel"] == scarce) & (limited["channel"] != scarce)
    assert displaced.sum() == wanted - 10
    assert limited.loc[displaced, "suppressed_reason"].str.startswith("capacity").all()
    with pytest.raises(NBAValidationError, match="capacity: unknown channel 'fax'"):
        scorer.score_batch(population, capacity={"fax": 3})


def test_bad_exploration_settings() -> None:
    with pytest.raises(NBAValidationError, match="epsilon"):
        Exploration(kind="epsilon", epsilon=1.5)
    with pytest.raises(NBAValidationError, match="kind"):
        Exploration(kind="thompson")  # type: ignore[arg-type]


def test_score_command_writes_decisions_and_log(export_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nba.cli import app
    from nba.serving.decision_log import DecisionLog

    source = tmp_path / "customers.csv"
    random_customers(300, seed=4).to_csv(source, index=False)
    out, log = tmp_path / "decisions.parquet", tmp_path / "decisions.db"
    command = ["score", "--model", str(export_dir), "--input", str(source), "--output", str(out)]
    result = CliRunner().invoke(app, [*command, "--capacity", "email=5", "--log", str(log)])
    assert result.exit_code == 0, result.output
    decisions = pd.read_parquet(out)
    assert len(decisions) == 300 and (decisions["channel"] == "email").sum() <= 5
    with DecisionLog(log) as opened:
        assert len(opened) == 300
    bad = CliRunner().invoke(app, [*command, "--capacity", "email"])
    assert bad.exit_code != 0


def test_distinct_combinations_never_merge_for_large_catalogues(
    export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = PolicyScorer.load(export_dir)
    customers = random_customers(3_000, seed=9)
    fast = scorer.score_batch(customers)
    # pretend the state space is so large that key and mask bits no longer fit in one int64
    monkeypatch.setattr(scorer.space, "size", 2**55)
    rows = scorer.score_batch(customers)
    pd.testing.assert_frame_equal(rows, fast)
