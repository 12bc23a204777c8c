from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nba.calibration import EventLog, EventLogError, calibrate
from nba.calibration.snapshot import contact_counts
from nba.scenario import Scenario
from nba.twin import CustomerTwin
from tests.calibration.conftest import HillstromSplit


def test_hillstrom_scenario_is_valid_and_every_fitted_value_has_an_interval(
    hillstrom_split: HillstromSplit,
) -> None:
    result = hillstrom_split.result
    scenario = Scenario.from_yaml(result.scenario.to_yaml())  # round-trips through YAML
    assert scenario.calibration is not None
    assert scenario.action_names == ["no_action", "email_mens", "email_womens"]
    fitted = result.fitted()
    assert len(fitted) > 20
    assert fitted[["lower", "upper"]].notna().all().all()
    assert (fitted["lower"] <= fitted["estimate"] + 1e-12).all()
    assert (fitted["estimate"] <= fitted["upper"] + 1e-12).all()
    assumed = result.parameters[result.parameters["source"] == "assumed"]
    assert assumed["method"].str.contains("prior").all()  # each says which prior
    # randomized arms identify response: the men's e-mail lifts purchases more than women's
    lift = {o.name: o.purchase_lift for o in scenario.offers}
    assert lift["mens"] > lift["womens"] > 0
    assert result.persona_model.k in result.persona_model.explained
    CustomerTwin(scenario).reset(10)  # the twin runs on it


def test_base_rates_reproduce_the_control_group(hillstrom_split: HillstromSplit) -> None:
    result = hillstrom_split.result
    table = result.snapshot.customers
    control = table[table["contact"] == "held_out"]
    rates = np.array([p.base_purchase_rate for p in result.scenario.personas])
    stage_multiplier = np.array([s.purchase_multiplier for s in result.scenario.stages])
    predicted = (rates[control["persona"]] * stage_multiplier[control["stage"]]).sum() * 14
    assert predicted == pytest.approx(control["purchases"].sum(), rel=0.15)


def test_full_hillstrom_calibrates_every_customer(hillstrom_log: EventLog) -> None:
    # the time target (60 s) lives in benchmarks/calibration_audit.py, not in a timed test
    result = calibrate(hillstrom_log, n_bootstrap=200, seed=0)
    assert len(result.snapshot.customers) == 64_000


def test_same_seed_same_scenario(hillstrom_split: HillstromSplit) -> None:
    again = calibrate(hillstrom_split.calibration, n_bootstrap=100, seed=0, data_label="hillstrom")
    assert again.scenario.fingerprint() == hillstrom_split.result.scenario.fingerprint()


def test_contact_counts_count_earlier_sends_per_customer() -> None:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "a"],
            "timestamp": [start + pd.Timedelta(days=d) for d in (0, 2, 4, 4, 40)],
            "event": "sent",
            "channel": "email",
        }
    )
    counts = contact_counts(EventLog.from_frames(frame), days=30)
    by_time = counts.sort_values(["customer_id", "timestamp"])["prior_sends"].tolist()
    assert by_time == [0, 1, 2, 0, 0]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"window_days": 0}, "window_days"),
        ({"k_range": range(1, 4)}, "k_range"),
        ({"k_range": range(5, 5)}, "k_range"),
        ({"n_bootstrap": 5}, "n_bootstrap"),
        ({"margin_rate": 1.5}, "margin_rate"),
    ],
)
def test_bad_settings_are_named(
    hillstrom_split: HillstromSplit, settings: dict[str, object], field: str
) -> None:
    with pytest.raises(EventLogError, match=field):
        calibrate(hillstrom_split.calibration, **settings)  # type: ignore[arg-type]
