from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from nba.errors import NBAValidationError
from nba.serving.scorer import Exploration, PolicyScorer
from nba.serving.spec import PolicyFormatError
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
    # logged propensities against the empirical frequency: 20,000 customers in one state
    one = pd.concat([population.iloc[[0]]] * 20_000, ignore_index=True)
    one["customer_id"] = [f"twin-{i}" for i in range(len(one))]
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


def test_score_csv_output_quotes_formula_like_ids(export_dir: Path, tmp_path: Path) -> None:
    """A spreadsheet opening the decisions shows hostile ids as text; numbers stay numbers."""
    from typer.testing import CliRunner

    from nba.cli import app

    hostile = ['=HYPERLINK("http://evil.example","click")', "+1", "@SUM(1)", "-2", "c-5"]
    customers = random_customers(len(hostile), seed=4)
    customers["customer_id"] = hostile
    source, out = tmp_path / "customers.parquet", tmp_path / "decisions.csv"
    customers.to_parquet(source)
    command = ["score", "--model", str(export_dir), "--input", str(source), "--output", str(out)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    decisions = pd.read_csv(out, dtype={"customer_id": str})
    assert decisions["customer_id"].tolist() == ["'" + v for v in hostile[:4]] + ["c-5"]
    assert pd.api.types.is_float_dtype(decisions["propensity"])
    assert pd.api.types.is_float_dtype(decisions["value_estimate"])


def test_score_reads_csv_ids_as_written(export_dir: Path, tmp_path: Path) -> None:
    """ "007" and "7" are two customers, "+1" is not the number 1: ids are text in a CSV."""
    from typer.testing import CliRunner

    from nba.cli import app

    ids = ["007", "7", "+1", "1e3"]
    customers = random_customers(len(ids), seed=5)
    customers["customer_id"] = ids
    source, out = tmp_path / "customers.csv", tmp_path / "decisions.parquet"
    customers.to_csv(source, index=False)
    command = ["score", "--model", str(export_dir), "--input", str(source), "--output", str(out)]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["customer_id"].tolist() == ids


def test_score_refuses_a_model_not_trained_on_the_trusted_scenario(
    export_dir: Path, tmp_path: Path
) -> None:
    """--trusted-scenario: the export must carry exactly that scenario's rules."""
    from typer.testing import CliRunner

    from nba.cli import app
    from nba.scenarios import load_scenario

    source, out = tmp_path / "customers.parquet", tmp_path / "decisions.parquet"
    random_customers(20, seed=6).to_parquet(source)
    command = ["score", "--model", str(export_dir), "--input", str(source), "--output", str(out)]
    trusted = CliRunner().invoke(app, [*command, "--trusted-scenario", "retail"])
    assert trusted.exit_code == 0, trusted.output
    stricter = load_scenario("retail").to_dict()
    stricter["contact_rules"]["pressure_capacity"] -= 1
    path = tmp_path / "stricter.yaml"
    path.write_text(yaml.safe_dump(stricter))
    out.unlink()
    refused = CliRunner().invoke(app, [*command, "--trusted-scenario", str(path)])
    assert isinstance(refused.exception, PolicyFormatError)  # main() prints it, exits 2
    assert "pressure_capacity: export 6, trusted 5" in str(refused.exception)
    assert not out.exists()


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


# ------------------------------------------------------------------ exploration draws
@pytest.mark.parametrize("kind", ["epsilon", "softmax"])
def test_a_customers_draw_does_not_depend_on_the_batch(export_dir: Path, kind: str) -> None:
    """4 x 5,000, 1 x 20,000, shuffled, or one by one: the same decisions and propensities.

    The call centre's daily capacity is lifted: it is shared within a batch, by definition.
    """
    population = random_customers(20_000, seed=12)
    exploration = Exploration(kind=kind, epsilon=0.3, temperature=2.0, seed=21)
    scorer = PolicyScorer.load(export_dir, exploration=exploration)
    unlimited = {"call_centre": None}
    whole = scorer.score_batch(population, as_of=MONDAY, capacity=unlimited)
    parts = pd.concat(
        [
            scorer.score_batch(population.iloc[i : i + 5_000], as_of=MONDAY, capacity=unlimited)
            for i in range(0, 20_000, 5_000)
        ]
    )
    pd.testing.assert_frame_equal(parts, whole)
    order = np.random.default_rng(0).permutation(20_000)
    shuffled = scorer.score_batch(population.iloc[order], as_of=MONDAY, capacity=unlimited)
    pd.testing.assert_frame_equal(shuffled.loc[whole.index], whole)
    for i in range(0, 20_000, 1_000):
        single = scorer.score(population.iloc[i].to_dict(), as_of=MONDAY)
        assert single.action == whole["action"].iloc[i]
        assert single.propensity == pytest.approx(whole["propensity"].iloc[i], rel=1e-12)
    assert whole["explored"].mean() > 0.05


def test_draws_vary_with_the_decision_time_and_seed(export_dir: Path) -> None:
    population = random_customers(5_000, seed=13)

    def explored(seed: int | None, when: pd.Timestamp) -> np.ndarray:
        exploration = Exploration(kind="epsilon", epsilon=0.5, seed=seed)
        scorer = PolicyScorer.load(export_dir, exploration=exploration)
        return scorer.score_batch(population, as_of=when)["explored"].to_numpy()

    monday = explored(3, MONDAY)
    assert (monday == explored(3, MONDAY)).all()
    # another nanosecond, another seed: independent draws (about half the explored agree)
    for other in (explored(3, MONDAY + pd.Timedelta(1, "ns")), explored(4, MONDAY)):
        both = (monday & other).sum() / monday.sum()
        assert 0.3 < both < 0.7


def test_a_seedless_scorer_draws_its_own_seed_and_reports_it(export_dir: Path) -> None:
    exploration = Exploration(kind="epsilon", epsilon=0.5)
    first = PolicyScorer.load(export_dir, exploration=exploration)
    second = PolicyScorer.load(export_dir, exploration=exploration)
    assert first.exploration_seed != second.exploration_seed
    population = random_customers(2_000, seed=14)
    decisions = first.score_batch(population, as_of=MONDAY)
    assert not decisions.equals(second.score_batch(population, as_of=MONDAY))
    # the reported seed reproduces the decisions
    again = PolicyScorer.load(
        export_dir,
        exploration=Exploration(kind="epsilon", epsilon=0.5, seed=first.exploration_seed),
    )
    pd.testing.assert_frame_equal(again.score_batch(population, as_of=MONDAY), decisions)
    assert PolicyScorer.load(export_dir, exploration=Exploration(seed=5)).exploration_seed == 5


def test_integer_and_text_ids_are_one_customer(export_dir: Path) -> None:
    scorer = PolicyScorer.load(
        export_dir, exploration=Exploration(kind="epsilon", epsilon=0.5, seed=2)
    )
    population = random_customers(3_000, seed=15)
    population["customer_id"] = np.arange(3_000)
    numbers = scorer.score_batch(population, as_of=MONDAY)
    population["customer_id"] = population["customer_id"].astype(str)
    texts = scorer.score_batch(population, as_of=MONDAY)
    assert (numbers["action"] == texts["action"]).all()
    assert numbers["explored"].any()


# ------------------------------------------------------------------ day-table cache
def test_threads_share_the_day_tables_and_decide_as_the_batch(export_dir: Path) -> None:
    """8 threads over 10 planning days: the batch's decisions, each table built once."""
    exploration = Exploration(kind="epsilon", epsilon=0.3, seed=1)
    scorer = PolicyScorer.load(export_dir, exploration=exploration, day_cache_size=10)
    population = random_customers(400, seed=16, consent=True)
    population["day"] = np.arange(400) % 10
    expected = scorer.score_batch(population, as_of=MONDAY)
    records = population.to_dict(orient="records")
    start = threading.Barrier(8)

    def work(offset: int) -> list[tuple[int, int, float, float]]:
        start.wait()
        rows = []
        for k in range(len(records)):
            i = (k * 7 + offset * 50) % len(records)  # every thread, every day, in its own order
            decision = scorer.score(records[i], as_of=MONDAY)
            rows.append((i, decision.action, decision.propensity, decision.value_estimate))
        return rows

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    assert scorer._day_tables.builds == 10  # each day once, however many threads asked
    for rows in results:
        for i, action, propensity, value in rows:
            assert action == expected["action"].iloc[i]
            assert propensity == pytest.approx(expected["propensity"].iloc[i], rel=1e-12)
            assert value == pytest.approx(expected["value_estimate"].iloc[i], rel=1e-5)
    with ThreadPoolExecutor(8) as pool:  # warm: no rebuild, the same decisions
        again = list(pool.map(work, range(8)))
    assert scorer._day_tables.builds == 10 and again == results


def test_the_day_cache_is_a_bounded_lru(export_dir: Path) -> None:
    scorer = PolicyScorer.load(export_dir, day_cache_size=2)
    row = customer()
    for day in (0, 1, 0, 2):  # 0 was used after 1, so 1 goes when 2 arrives
        scorer.score({**row, "day": day}, as_of=MONDAY)
    assert scorer._day_tables.builds == 3 and len(scorer._day_tables) == 2
    scorer.score({**row, "day": 0}, as_of=MONDAY)
    assert scorer._day_tables.builds == 3
    scorer.score({**row, "day": 1}, as_of=MONDAY)
    assert scorer._day_tables.builds == 4
    for bad in (0, -1, 2.5, True):
        with pytest.raises(NBAValidationError, match="day_cache_size"):
            PolicyScorer.load(export_dir, day_cache_size=bad)  # type: ignore[arg-type]


def test_the_default_day_cache_covers_the_horizon_within_the_memory_cap(
    export_dir: Path,
) -> None:
    from nba.serving.decision_table import DayTable as _DayTable
    from nba.serving.scorer import DAY_CACHE_BYTES

    scorer = PolicyScorer.load(export_dir)
    table = scorer._day_table(0)
    states, actions = scorer.space.size, len(scorer.action_names)
    estimate = _DayTable.estimate_bytes(states, actions)
    assert table.nbytes() == pytest.approx(estimate, rel=0.1)
    expected = min(scorer.policy.scenario.horizon_days, DAY_CACHE_BYTES // estimate)
    assert scorer.day_cache_size == expected >= 5
    assert scorer.day_cache_size * estimate <= DAY_CACHE_BYTES


def test_a_day_is_built_once_under_contention_and_failures_reach_every_waiter() -> None:
    from nba.serving.decision_table import BuildOnceLRU as _BuildOnceLRU

    cache: _BuildOnceLRU[int, list[int]] = _BuildOnceLRU(4)
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(key: int) -> list[int]:
        calls.append(key)
        started.set()
        release.wait(5)
        return [key] * 3

    with ThreadPoolExecutor(9) as pool:  # one worker free for the other key
        futures = [pool.submit(cache.get, 7, slow) for _ in range(8)]
        started.wait(5)
        other = pool.submit(cache.get, 8, lambda key: [key])  # another day goes on meanwhile
        assert other.result(timeout=4) == [8] and not release.is_set()
        release.set()
        values = [f.result(timeout=5) for f in futures]
    assert calls == [7] and all(v is values[0] for v in values) and cache.builds == 2

    def broken(key: int) -> list[int]:
        raise NBAValidationError("no table")

    with pytest.raises(NBAValidationError, match="no table"):
        cache.get(9, broken)
    assert cache.get(9, lambda key: [key]) == [9]  # a failed build is not cached


def test_decision_times_past_2262_draw_alike_in_both_paths(export_dir: Path) -> None:
    """pandas keeps such times in microseconds: the draw still reads them exactly."""
    scorer = PolicyScorer.load(export_dir, exploration=Exploration("epsilon", 0.5, seed=3))
    rows = [customer(customer_id=f"c{i}", as_of="2500-01-04T10:00:00Z") for i in range(40)]
    batch = scorer.score_batch(pd.DataFrame(rows))
    singles = [scorer.score(row) for row in rows]
    assert [d.action for d in singles] == batch["action"].tolist()
    assert [d.explored for d in singles] == batch["explored"].tolist()
    assert batch["explored"].any()
