"""Filtering and exact forecasts over customer partitions on a real two-node Ray cluster: the
same numbers, to the bit, as the single-process calls, with tasks on both nodes."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest

from nba.calibration.events import EventLog, EventLogError
from nba.calibration.exact_forecast import forecast_customers
from nba.calibration.filtering import filter_states
from nba.features import FeatureBuilder
from nba.policies import JourneyMapPolicy
from nba.scale import RayNotInstalledError, ScaleError, import_ray
from nba.scale.cluster import connect
from nba.scale.ray_forecast import (
    filter_states_on_ray,
    forecast_customers_on_ray,
    split_blocks,
)
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin
from nba.twin_events import day_events
from tests.scenario_variants import retail_with_levels
from tests.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

START = pd.Timestamp("2026-11-02T00:00:00Z")  # a Monday: the twin's day 0
CUSTOMERS, DAYS = 3_000, 42
CUTOFF = START + pd.Timedelta(days=DAYS)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario("retail")


@pytest.fixture(scope="module")
def log(scenario: Scenario) -> EventLog:
    """Six weeks of the retail twin under the journey map: purchases, sends, opens, opt-outs."""
    ids = np.char.add("c-", np.arange(CUSTOMERS).astype(str))
    twin = CustomerTwin(scenario, seed=3)
    twin.reset(CUSTOMERS)
    journey, features = JourneyMapPolicy(twin), FeatureBuilder(twin.arrays)
    frames = []
    for day in range(DAYS):
        actions, _ = journey.act(features.build(twin.state, twin.day), twin.action_masks())
        result = twin.step(actions)
        frames.append(day_events(twin.arrays, result, ids, START + pd.Timedelta(days=day)))
    return EventLog.from_frames(pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="module")
def plan(log: EventLog, scenario: Scenario) -> pd.DataFrame:
    """Planned e-mails to 300 customers spread over the log, on days of the window."""
    who = log.events["customer_id"].drop_duplicates().iloc[::7].iloc[:300].to_numpy()
    rng = np.random.default_rng(0)
    action = scenario.actions[1]
    return pd.DataFrame(
        {
            "customer_id": who,
            "timestamp": CUTOFF + pd.to_timedelta(rng.integers(0, 28, who.size), unit="D"),
            "channel": action.channel,
            "action": action.offer,
        }
    )


def test_filter_over_partitions_is_the_single_process_filter(
    ray_cluster: str, scenario: Scenario, log: EventLog
) -> None:
    expected = filter_states(scenario, log, CUTOFF)
    run = filter_states_on_ray(scenario, log, CUTOFF, partitions=4, address=ray_cluster)
    got = run.result
    assert len(expected.customer_ids) > 0.9 * CUSTOMERS
    pd.testing.assert_index_equal(got.customer_ids, expected.customer_ids, exact=True)
    assert np.array_equal(got.probs, expected.probs)
    assert np.array_equal(got.log_likelihood, expected.log_likelihood)
    assert (got.start, got.days, got.churn_stage) == (
        expected.start,
        expected.days,
        expected.churn_stage,
    )
    assert run.partitions == 4
    alive = {node["NodeID"] for node in import_ray().nodes() if node["Alive"]}
    assert len(alive) == 2 and set(run.node_ids) == alive  # every node took a partition


def test_forecast_over_partitions_is_the_single_process_forecast(
    ray_cluster: str, scenario: Scenario, log: EventLog, plan: pd.DataFrame
) -> None:
    expected = forecast_customers(scenario, log, "4w", plan)
    run = forecast_customers_on_ray(scenario, log, "4w", plan, partitions=3, address=ray_cluster)
    pd.testing.assert_frame_equal(run.result, expected, check_exact=True)
    assert expected["expected_purchases"].sum() > 0
    assert len(set(run.node_ids)) == 2


def test_levels_and_own_history_starts_are_identical_too(ray_cluster: str, log: EventLog) -> None:
    """The joint over each customer's own levels, read from each customer's first event."""
    levels = retail_with_levels()
    settings = {"history_start": "first_event", "lookback_days": 30}
    expected = filter_states(levels, log, CUTOFF, **settings)
    run = filter_states_on_ray(levels, log, CUTOFF, partitions=5, address=ray_cluster, **settings)
    assert expected.levels is not None and run.result.levels is not None
    assert np.array_equal(run.result.levels, expected.levels)
    assert np.array_equal(run.result.log_likelihood, expected.log_likelihood)
    table = forecast_customers(levels, log, 10, cutoff=CUTOFF, **settings)
    ray_table = forecast_customers_on_ray(
        levels, log, 10, partitions=5, address=ray_cluster, cutoff=CUTOFF, **settings
    )
    pd.testing.assert_frame_equal(ray_table.result, table, check_exact=True)


def test_an_error_of_ours_in_a_task_is_raised_as_itself(
    ray_cluster: str, scenario: Scenario, log: EventLog
) -> None:
    """A task's own check (a consent no persona grants) reaches the caller as our error."""
    who = log.events["customer_id"].drop_duplicates().iloc[-1]  # in the last partition
    # no retail persona grants e-mail without SMS (see the retail scenario's personas)
    consent = pd.DataFrame({"email": [True], "sms": [False], "call_centre": [True],
                            "push": [True]}, index=[who])  # fmt: skip
    with pytest.raises(EventLogError, match=f"consent: customer '{who}'") as caught:
        filter_states(scenario, log, CUTOFF, consent=consent)
    with pytest.raises(EventLogError, match=f"consent: customer '{who}'") as caught:
        filter_states_on_ray(
            scenario, log, CUTOFF, partitions=2, address=ray_cluster, consent=consent
        )
    assert type(caught.value) is EventLogError  # not Ray's wrapper of it


@pytest.mark.parametrize("partitions", [0, -2, 1.5, True, "4"])
def test_a_bad_partition_count_names_the_option(
    partitions: object, scenario: Scenario, log: EventLog
) -> None:
    with pytest.raises(ScaleError, match="partitions"):
        filter_states_on_ray(scenario, log, CUTOFF, partitions=partitions)  # type: ignore[arg-type]
    with pytest.raises(ScaleError, match="partitions"):
        forecast_customers_on_ray(scenario, log, 7, partitions=partitions)  # type: ignore[arg-type]


def test_an_unreachable_address_names_the_option(scenario: Scenario, log: EventLog) -> None:
    pytest.importorskip("ray")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(ScaleError, match=r"^address: no Ray head answers at 127\.0\.0\.1"):
        filter_states_on_ray(scenario, log, CUTOFF, partitions=2, address=nobody)
    with pytest.raises(ScaleError, match=r"^--address: expected HOST:PORT"):
        connect("not an address", name="--address")
    with pytest.raises(ScaleError, match="num_cpus"):
        connect(nobody, num_cpus=2)


def test_blocks_cover_every_customer_once() -> None:
    for n, k in [(10, 3), (2, 5), (0, 4), (4096, 4)]:
        blocks = split_blocks(n, k)
        rows = np.concatenate([np.arange(n)[b] for b in blocks]) if n else np.array([])
        assert np.array_equal(rows, np.arange(n)) and all(b.stop > b.start for b in blocks[:n])
        assert len(blocks) == max(1, min(n, k))


def test_without_ray_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(RayNotInstalledError, match=r"pip install nba\[ray\]"):
        import_ray()
    with pytest.raises(RayNotInstalledError):
        connect()
