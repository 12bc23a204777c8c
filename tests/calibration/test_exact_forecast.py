"""Exact expected forecasts: forward equations of the twin's kernel from filtered beliefs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nba.calibration import EventLog, EventLogError
from nba.calibration.events import save_events
from nba.calibration.exact_forecast import (
    COLUMNS,
    expected_outcomes,
    forecast_customers,
    parse_horizon,
)
from nba.calibration.filtering import StateBelief
from nba.calibration.synthetic import reference_scenario
from nba.cli import main
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin
from tests.scenario_variants import retail_with_levels

START = pd.Timestamp("2021-03-01", tz="UTC")  # a Monday


def _belief(probs: np.ndarray, churn_stage: int) -> StateBelief:
    n = probs.shape[0]
    ids = pd.Index([f"c{i}" for i in range(n)])
    return StateBelief(ids, probs, np.zeros(n), START, 1, churn_stage)


def _random_belief(scenario: Scenario, n: int, seed: int) -> StateBelief:
    arrays = ScenarioArrays.from_scenario(scenario)
    cells = arrays.n_personas * arrays.n_stages
    probs = np.random.default_rng(seed).dirichlet(np.full(cells, 0.5), size=n)
    return _belief(probs.reshape(n, arrays.n_personas, arrays.n_stages), arrays.churn_stage)


@pytest.mark.parametrize(
    ("text", "days"), [("39w", 273), ("273d", 273), ("273", 273), (5, 5), (" 2W ", 14)]
)
def test_horizon_accepts_days_and_weeks(text: str | int, days: int) -> None:
    assert parse_horizon(text) == days


@pytest.mark.parametrize("text", ["0d", "3m", "", "-1", "w", "1.5w", True])
def test_horizon_refuses_other_text(text: str | bool) -> None:
    with pytest.raises(EventLogError, match="horizon"):
        parse_horizon(text)


@pytest.mark.parametrize("scenario_name", ["reference", "retail"])
def test_exact_forecast_is_the_mean_of_the_twin_from_the_same_belief(scenario_name: str) -> None:
    scenario = reference_scenario() if scenario_name == "reference" else load_scenario("retail")
    n, days, copies = 4, 21, 6000
    belief = _random_belief(scenario, n, seed=3)
    plan = np.zeros((days, n), dtype=np.int64)
    plan[::3, 1] = 1  # every third day
    plan[::2, 3] = len(scenario.action_names) - 1  # every other day (caps will block some)
    exact = expected_outcomes(scenario, belief, days, plan)

    twin = CustomerTwin(scenario, seed=7, tabulate=True)
    persona, stage = belief.sample(copies, np.random.default_rng(5))
    twin.set_state(twin.space.rested_state(persona, stage))
    _assert_within_monte_carlo(twin, exact, plan, n, copies)
    np.testing.assert_allclose(exact.p_alive_start, 1.0 - belief.churned)


def test_one_customer_two_days_by_hand() -> None:
    scenario = reference_scenario()
    arrays = ScenarioArrays.from_scenario(scenario)
    persona, stage = 1, 0
    assert arrays.stage_can_buy[stage] and stage != arrays.churn_stage
    probs = np.zeros((1, arrays.n_personas, arrays.n_stages))
    probs[0, persona, stage] = 1.0
    exact = expected_outcomes(scenario, _belief(probs, arrays.churn_stage), 2)

    rate = arrays.persona_base_rate[persona] * arrays.stage_purchase_multiplier  # (K,)
    basket = arrays.persona_basket[persona] * arrays.stage_spend_multiplier  # (K,)
    q = rate[stage]
    tomorrow = q * arrays.purchase_transition[stage] + (1 - q) * arrays.daily_transition[stage]
    assert exact.purchases[0] == pytest.approx(q + tomorrow @ rate, rel=1e-12)
    assert exact.spend[0] == pytest.approx(q * basket[stage] + tomorrow @ (rate * basket))
    assert exact.p_alive_end[0] == pytest.approx(
        1.0 - (tomorrow @ _stage_moves(arrays, rate))[arrays.churn_stage]
    )


def _stage_moves(arrays: ScenarioArrays, rate: np.ndarray) -> np.ndarray:
    """(K, K) one quiet-or-purchase day of stage moves without contact."""
    moves = rate[:, None] * arrays.purchase_transition + (1 - rate[:, None]) * (
        arrays.daily_transition
    )
    absorbed = ~arrays.stage_can_buy
    moves[absorbed] = np.eye(arrays.n_stages)[absorbed]
    return moves


def test_a_churned_customer_buys_nothing_and_stays_churned() -> None:
    scenario = reference_scenario()
    arrays = ScenarioArrays.from_scenario(scenario)
    probs = np.zeros((1, arrays.n_personas, arrays.n_stages))
    probs[0, 0, arrays.churn_stage] = 1.0
    exact = expected_outcomes(scenario, _belief(probs, arrays.churn_stage), 30)
    assert exact.purchases[0] == 0.0 and exact.spend[0] == 0.0
    assert exact.p_alive_start[0] == 0.0 and exact.p_alive_end[0] == 0.0


def test_a_promotion_plan_raises_only_its_customers_purchases() -> None:
    scenario = reference_scenario()
    belief = _random_belief(scenario, 6, seed=1)
    days = 28
    none = expected_outcomes(scenario, belief, days)
    plan = np.zeros((days, 6), dtype=np.int64)
    promo = scenario.action_names.index("email_promo")
    plan[::7, :3] = promo  # one promotion a week to the first three
    promoted = expected_outcomes(scenario, belief, days, plan)
    assert np.all(promoted.purchases[:3] > none.purchases[:3])
    np.testing.assert_allclose(promoted.purchases[3:], none.purchases[3:], rtol=1e-12)
    np.testing.assert_allclose(promoted.p_alive_end[3:], none.p_alive_end[3:], rtol=1e-12)


def test_shared_plans_and_chunks_give_each_customer_their_own_forecast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = reference_scenario()
    n, days = 6, 20
    belief = _random_belief(scenario, n, seed=4)
    plan = np.zeros((days, n), dtype=np.int64)
    plan[::4, [0, 2, 4]] = 1
    plan[1::5, [1, 3]] = 2
    together = expected_outcomes(scenario, belief, days, plan)
    monkeypatch.setattr("nba.calibration.exact_forecast.VALUE_CELLS", 1)  # one plan a chunk
    chunked = expected_outcomes(scenario, belief, days, plan)
    for i in range(n):
        alone = _belief(belief.probs[i : i + 1], belief.churn_stage)
        one = expected_outcomes(scenario, alone, days, plan[:, i : i + 1])
        for a, b, c in (
            (together.purchases, chunked.purchases, one.purchases),
            (together.spend, chunked.spend, one.spend),
            (together.p_alive_end, chunked.p_alive_end, one.p_alive_end),
        ):
            assert a[i] == pytest.approx(c[0], rel=1e-12) and b[i] == pytest.approx(c[0], rel=1e-12)


def _random_level_belief(scenario: Scenario, n: int, seed: int) -> StateBelief:
    """A random joint belief over persona, both levels and stage."""
    arrays = ScenarioArrays.from_scenario(scenario)
    shape = (
        arrays.n_personas,
        arrays.n_rate_levels,
        arrays.n_dropout_levels,
        arrays.n_stages,
    )
    joint = np.random.default_rng(seed).dirichlet(np.full(int(np.prod(shape)), 0.3), size=n)
    joint = joint.reshape(n, *shape)
    ids = pd.Index([f"c{i}" for i in range(n)])
    return StateBelief(
        ids,
        joint.sum(axis=(2, 3)),
        np.zeros(n),
        START,
        1,
        arrays.churn_stage,
        levels=joint,
        rate_multipliers=arrays.rate_level_multiplier,
    )


def test_exact_forecast_with_levels_is_the_mean_of_the_twin_from_the_same_belief() -> None:
    scenario = retail_with_levels()
    n, days, copies = 4, 21, 6000
    belief = _random_level_belief(scenario, n, seed=8)
    plan = np.zeros((days, n), dtype=np.int64)
    plan[::3, 1] = scenario.action_names.index("email_discount_10")
    plan[::2, 3] = len(scenario.action_names) - 1
    exact = expected_outcomes(scenario, belief, days, plan)

    twin = CustomerTwin(scenario, seed=9, tabulate=True)
    drawn = belief.draw(copies, np.random.default_rng(10))
    persona, stage = drawn.pop("persona"), drawn.pop("stage")
    twin.set_state(twin.space.rested_state(persona, stage, **drawn))
    _assert_within_monte_carlo(twin, exact, plan, n, copies)


def test_the_heavy_level_forecasts_more_than_the_light_and_summed_levels_are_refused() -> None:
    scenario = retail_with_levels()
    arrays = ScenarioArrays.from_scenario(scenario)
    joint = np.zeros((2, arrays.n_personas, 3, 2, arrays.n_stages))
    active = scenario.stage_names.index("active")
    joint[0, 0, 0, 0, active] = joint[1, 0, 2, 0, active] = 1.0  # light and heavy, else alike
    belief = StateBelief(
        pd.Index(["light", "heavy"]),
        joint.sum(axis=(2, 3)),
        np.zeros(2),
        START,
        1,
        arrays.churn_stage,
        levels=joint,
        rate_multipliers=arrays.rate_level_multiplier,
    )
    exact = expected_outcomes(scenario, belief, 30)
    assert exact.purchases[1] > 5 * exact.purchases[0] > 0
    # a (persona, stage) belief over a scenario with levels would place everyone at level 0
    summed = _belief(belief.probs, arrays.churn_stage)
    with pytest.raises(EventLogError, match="belief: has 1 rate_level value"):
        expected_outcomes(scenario, summed, 5)


def test_forecast_customers_uses_the_levels_the_filter_infers() -> None:
    log, scenario = _purchase_log(), retail_with_levels()
    cutoff = START + pd.Timedelta(days=60)
    table = forecast_customers(scenario, log, "4w", cutoff=cutoff).set_index("customer_id")
    flat = forecast_customers(load_scenario("retail"), log, "4w", cutoff=cutoff)
    flat = flat.set_index("customer_id")
    # the heavy buyer's own level lifts their forecast above the segment-only twin's
    heavy = table.loc["heavy", "expected_purchases"]
    assert heavy > 1.2 * flat.loc["heavy", "expected_purchases"]
    assert table.loc["light", "expected_purchases"] < heavy


def test_plan_of_the_wrong_shape_is_refused() -> None:
    scenario = reference_scenario()
    belief = _random_belief(scenario, 2, seed=0)
    with pytest.raises(EventLogError, match="plan: expected"):
        expected_outcomes(scenario, belief, 5, np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(EventLogError, match="plan: action indices"):
        expected_outcomes(scenario, belief, 5, np.full((5, 2), 99, dtype=np.int64))


# ------------------------------------------------------------------------------ from a log
def _purchase_log() -> EventLog:
    """A heavy, a light and a lapsed buyer over 60 days (purchases only)."""
    days = {"heavy": range(0, 60, 3), "light": [5, 40], "lapsed": [0, 2, 4, 6]}
    rows = [
        {
            "customer_id": c,
            "timestamp": START + pd.Timedelta(days=d, hours=11),
            "event": "purchased",
        }
        for c, ds in days.items()
        for d in ds
    ]
    return EventLog.from_frames(pd.DataFrame(rows))


def _scenario() -> Scenario:
    base = reference_scenario()
    personas = [
        p.model_copy(update={"base_purchase_rate": r})
        for p, r in zip(base.personas, (0.03, 0.30, 0.10), strict=True)
    ]
    return base.model_copy(update={"personas": personas})


def test_forecast_customers_orders_customers_by_their_own_history() -> None:
    log, scenario = _purchase_log(), _scenario()
    table = forecast_customers(scenario, log, "2w", cutoff=START + pd.Timedelta(days=60))
    assert list(table.columns) == list(COLUMNS)
    assert sorted(table["customer_id"]) == ["heavy", "lapsed", "light"]
    f = table.set_index("customer_id")
    assert f.loc["heavy", "expected_purchases"] > f.loc["light", "expected_purchases"]
    assert f.loc["lapsed", "p_alive_end"] < f.loc["heavy", "p_alive_end"]
    assert (table["window_end"] - table["window_start"] == pd.Timedelta(days=14)).all()
    assert (table["p_alive_end"] <= table["p_alive_start"] + 1e-12).all()
    # default cutoff: midnight after the last event (day 57 + 1 = day 58)
    default = forecast_customers(scenario, log, 14)
    assert (default["window_start"] == START + pd.Timedelta(days=58)).all()


def test_a_plan_table_drives_the_forecast_and_bad_plans_are_refused() -> None:
    log, scenario = _purchase_log(), _scenario()
    cutoff = START + pd.Timedelta(days=60)
    plan = pd.DataFrame(
        {
            "customer_id": ["light", "light"],
            "timestamp": [cutoff + pd.Timedelta(hours=9), cutoff + pd.Timedelta(days=7, hours=9)],
            "channel": "email",
            "action": "promo",
        }
    )
    none = forecast_customers(scenario, log, 14, cutoff=cutoff).set_index("customer_id")
    planned = forecast_customers(scenario, log, 14, plan, cutoff=cutoff).set_index("customer_id")
    assert planned.loc["light", "expected_purchases"] > none.loc["light", "expected_purchases"]
    assert planned.loc["heavy", "expected_purchases"] == none.loc["heavy", "expected_purchases"]
    bad = {
        "not one of the scenario": plan.assign(action="nonsense"),
        "is not forecast": plan.assign(customer_id="stranger"),
        "outside the window": plan.assign(timestamp=cutoff - pd.Timedelta(days=1)),
        "missing column": plan.drop(columns="channel"),
        "not a date": plan.assign(timestamp="soon"),
    }
    for message, frame in bad.items():
        with pytest.raises(EventLogError, match=message):
            forecast_customers(scenario, log, 14, frame, cutoff=cutoff)


# ------------------------------------------------------------------------------ CLI
def test_cli_forecast_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, scenario = _purchase_log(), _scenario()
    events, yaml = tmp_path / "events.parquet", tmp_path / "twin.yaml"
    save_events(log, events)
    scenario.to_yaml(yaml)
    out = tmp_path / "forecast.parquet"
    cutoff = (START + pd.Timedelta(days=60)).isoformat()
    args = ["forecast", "-s", str(yaml), "-e", str(events), "--horizon", "3w", "--out", str(out)]
    with pytest.raises(SystemExit) as done:
        main([*args, "--cutoff", cutoff, "--json"])
    assert done.value.code in (0, None)
    written = pd.read_parquet(out)
    expected = forecast_customers(scenario, log, 21, cutoff=cutoff)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    assert '"customers": 3' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--horizon", "3 months"], "--horizon: expected days"),
        (["--horizon", "2w", "--history-start", "sometime"], "--history-start"),
        (["--horizon", "2w", "--cutoff", "yesterday-ish"], "cutoff"),
    ],
)
def test_cli_forecast_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    events, yaml = tmp_path / "events.parquet", tmp_path / "twin.yaml"
    save_events(_purchase_log(), events)
    _scenario().to_yaml(yaml)
    out = tmp_path / "forecast.csv"
    with pytest.raises(SystemExit) as done:
        main(["forecast", "-s", str(yaml), "-e", str(events), "--out", str(out), *extra])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def _assert_within_monte_carlo(
    twin: CustomerTwin, exact: Any, plan: np.ndarray, n: int, copies: int
) -> None:
    """Exact expectations within 4 standard errors of ``copies`` twin runs of each customer
    (the twin already holds the copies' start states, copy-major)."""
    days = plan.shape[0]
    bought, revenue = np.zeros(n * copies), np.zeros(n * copies)
    for d in range(days):
        step = twin.step(np.tile(plan[d], copies))
        bought += step.bought
        revenue += step.revenue
    alive = twin.state.stage != twin.arrays.churn_stage
    for exact_mean, draws in (
        (exact.purchases, bought),
        (exact.spend, revenue),
        (exact.p_alive_end, alive.astype(float)),
    ):
        draws = draws.reshape(copies, n)
        error = draws.std(axis=0, ddof=1) / np.sqrt(copies)
        assert np.all(np.abs(draws.mean(axis=0) - exact_mean) < 4 * error + 1e-12)


def test_cli_forecast_reads_customers_as_the_twin_recorded(tmp_path: Path) -> None:
    """A twin whose calibration recorded ``history_start: first_purchase`` is read that way by
    default, through Python and the CLI alike; ``--history-start`` overrides it."""
    log = _purchase_log()
    calibration = {
        "data": "test",
        "reference_time": START.isoformat(),
        "response_window_days": 7,
        "persona_model": {},
        "stage_rules": {},
        "observables": {"history_start": "first_purchase"},
    }
    recorded = _scenario().updated({"calibration": calibration})
    events, yaml = tmp_path / "events.parquet", tmp_path / "twin.yaml"
    save_events(log, events)
    recorded.to_yaml(yaml)
    cutoff = (START + pd.Timedelta(days=60)).isoformat()
    start = forecast_customers(recorded, log, 21, cutoff=cutoff, history_start="first_purchase")
    panel = forecast_customers(recorded, log, 21, cutoff=cutoff, history_start="log")
    assert not np.allclose(start["expected_purchases"], panel["expected_purchases"])
    pd.testing.assert_frame_equal(forecast_customers(recorded, log, 21, cutoff=cutoff), start)
    for extra, expected in (([], start), (["--history-start", "log"], panel)):
        out = tmp_path / "forecast.parquet"
        args = ["forecast", "-s", str(yaml), "-e", str(events), "--horizon", "3w"]
        with pytest.raises(SystemExit) as done:
            main([*args, "--out", str(out), "--cutoff", cutoff, *extra])
        assert done.value.code in (0, None)
        pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_dtype=False)
