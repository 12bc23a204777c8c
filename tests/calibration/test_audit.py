from __future__ import annotations

import pandas as pd
import pytest

from nba.calibration import EventLogError, audit
from nba.scenarios import load_scenario
from tests.calibration.conftest import HillstromSplit

SEGMENTS = {
    "mens buyers": "mens and not womens",
    "womens buyers": "womens and not mens",
    "both lines": "mens and womens",
    "newbie": "newbie",
}


def per_arm(table: pd.DataFrame) -> pd.DataFrame:
    arms = table[table["group"].str.startswith("arm")]
    assert set(arms["kpi"]) == {"conversion", "spend", "visit"} and len(arms) == 9
    return arms


def test_the_twin_reproduces_its_own_calibration_half_arm_by_arm(
    hillstrom_split: HillstromSplit,
) -> None:
    """Fidelity without split noise: each arm's KPIs inside the calibration data's intervals."""
    result = audit(hillstrom_split.result.scenario, hillstrom_split.calibration)
    arms = per_arm(result.table)
    failing = arms.loc[~arms["passed"], ["group", "kpi", "observed", "simulated", "lower", "upper"]]
    assert failing.empty, failing.to_string()


def test_held_out_half_agrees_within_two_sample_error(hillstrom_split: HillstromSplit) -> None:
    """Out of sample both halves are noisy: the check is on their difference's error."""
    result = audit(hillstrom_split.result.scenario, hillstrom_split.holdout, segments=SEGMENTS)
    table = result.table
    arms = per_arm(table)
    failing = arms.loc[~arms["consistent"], ["group", "kpi", "observed", "simulated", "z"]]
    assert failing.empty, failing.to_string()
    assert {f"segment: {name}" for name in SEGMENTS} <= set(table["group"])
    assert result.summary()["customers"] == len(hillstrom_split.holdout.customer_ids)


def test_needs_a_calibrated_scenario(hillstrom_split: HillstromSplit) -> None:
    with pytest.raises(EventLogError, match="no calibration block"):
        audit(load_scenario("retail"), hillstrom_split.holdout)


def test_bad_segment_queries_are_named(hillstrom_split: HillstromSplit) -> None:
    with pytest.raises(EventLogError, match=r"segments\.odd"):
        audit(hillstrom_split.result.scenario, hillstrom_split.holdout, segments={"odd": "nope >"})
