"""Calibration from a template scenario: priors and stage names are the template's, not retail's.

The template here is retail's YAML edited into another business (renamed stages, fewer and
renamed channels and offers, its own churn), a log is generated from it, and the calibrated
scenario must carry the template's stage names, the log's channels and offers, the template's
priors where the log is silent, and be a working twin.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pytest
import yaml

from nba import optimal
from nba.calibration import CalibrationResult, EventLogError, audit, calibrate
from nba.calibration.priors import Priors
from nba.calibration.stages import STAGES, stage_roles
from nba.calibration.synthetic import SyntheticLog, simulate_log
from nba.kernel import build_kernel
from nba.scenario import FittedValue, Scenario
from nba.scenarios import load_scenario
from nba.twin import CustomerTwin

RENAMED_STAGES = {
    "aware": "prospect",
    "active": "member",
    "loyal": "vip",
    "lapsed": "dormant",
    "churned": "gone",
}
RENAMED_CHANNELS = {"email": "letter", "sms": "text", "push": "ping"}
RENAMED_OFFERS = {"discount_10": "coupon", "reminder": "nudge"}
PROSPECT_CHURN = 0.0042  # not retail's 0.003: the prior must come from the template


def _rename(mapping: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Keys renamed by ``names``; keys it does not know dropped."""
    return {names[k]: v for k, v in mapping.items() if k in names}


def other_business() -> Scenario:
    """Retail's YAML edited: five renamed stages, three renamed channels, two renamed offers."""
    retail = yaml.safe_load(
        resources.files("nba.scenarios").joinpath("retail.yaml").read_text("utf-8")
    )
    stages = []
    for stage in retail["stages"]:
        if stage["name"] not in RENAMED_STAGES:
            continue
        stages.append(
            stage
            | {
                "name": RENAMED_STAGES[stage["name"]],
                "daily": _rename(stage.get("daily", {}), RENAMED_STAGES),
                "on_purchase": _rename(stage.get("on_purchase", {}), RENAMED_STAGES),
            }
        )
    stages[0]["daily"]["gone"] = PROSPECT_CHURN
    channels = [
        c | {"name": RENAMED_CHANNELS[c["name"]]}
        for c in retail["channels"]
        if c["name"] in RENAMED_CHANNELS
    ]
    offers = [
        {k: v for k, v in o.items() if k not in ("stage_moves", "lift_by_stage")}
        | {"name": RENAMED_OFFERS[o["name"]]}
        for o in retail["offers"]
        if o["name"] in RENAMED_OFFERS
    ]
    actions = [
        {"name": "letter_coupon", "channel": "letter", "offer": "coupon"},
        {"name": "text_nudge", "channel": "text", "offer": "nudge"},
        {"name": "ping_coupon", "channel": "ping", "offer": "coupon"},
    ]
    personas = []
    for persona in retail["personas"][:3]:
        start = _rename(persona["initial_stages"], RENAMED_STAGES)
        total = sum(start.values())
        personas.append(
            persona
            | {
                "share": 1.0 / 3.0,
                "channel_affinity": _rename(persona["channel_affinity"], RENAMED_CHANNELS),
                "consent": [
                    RENAMED_CHANNELS[c] for c in persona["consent"] if c in RENAMED_CHANNELS
                ],
                "initial_stages": {k: v / total for k, v in start.items()},
            }
        )
    data = {k: v for k, v in retail.items() if k not in ("journey_map", "contact_rules")}
    data |= {
        "name": "other_business",
        "churn_stage": "gone",
        "stages": stages,
        "channels": channels,
        "offers": offers,
        "actions": actions,
        "personas": personas,
        "contact_rules": {"pressure_capacity": 5, "pressure_drain": 1},
        "horizon_days": 14,
    }
    return Scenario.from_dict(data)


@pytest.fixture(scope="module")
def template() -> Scenario:
    return other_business()


@pytest.fixture(scope="module")
def generated(template: Scenario) -> SyntheticLog:
    return simulate_log(template, 12_000, seed=4, stages=RENAMED_STAGES)


@pytest.fixture(scope="module")
def result(template: Scenario, generated: SyntheticLog) -> CalibrationResult:
    return calibrate(
        generated.log,
        template=template,
        stages=RENAMED_STAGES,
        n_bootstrap=30,
        k_range=range(2, 5),
        seed=0,
        data_label="other business",
    )


def test_the_calibrated_scenario_takes_the_templates_stages_and_the_logs_channels(
    result: CalibrationResult,
) -> None:
    scenario = Scenario.from_yaml(result.scenario.to_yaml())  # validates and round-trips
    assert scenario.stage_names == [RENAMED_STAGES[s] for s in STAGES]
    assert scenario.churn_stage == "gone"
    assert scenario.channel_names == ["letter", "ping", "text"]
    # an offer sent on two channels is two arms, two estimates: one offer per channel
    assert sorted(o.name for o in scenario.offers) == ["letter_coupon", "nudge", "ping_coupon"]
    assert sorted(scenario.action_names[1:]) == ["letter_coupon", "ping_coupon", "text_nudge"]
    assert scenario.calibration is not None
    assert scenario.calibration.stage_rules["stages"] == scenario.stage_names
    retail_words = {"aware", "active", "loyal", "lapsed", "churned", "email", "sms", "push"}
    for name in result.parameters["name"]:
        inside = set(name.replace("[", " ").replace("]", " ").replace(".", " ").split())
        assert not inside & retail_words, name
    for persona in scenario.personas:
        assert set(persona.initial_stages) <= set(scenario.stage_names)


def test_what_the_log_cannot_say_comes_from_the_template(
    template: Scenario, result: CalibrationResult
) -> None:
    scenario = result.scenario
    rows = result.parameters.set_index("name")
    prior = rows.loc["stages[prospect].daily.gone"]
    assert prior["source"] == "assumed" and "other_business" in prior["method"]
    assert prior["estimate"] == PROSPECT_CHURN
    stages = {s.name: s for s in scenario.stages}
    assert stages["prospect"].daily["gone"] == PROSPECT_CHURN
    costs = {c.name: (c.cost, c.pressure) for c in template.channels}
    for channel in scenario.channels:
        assert (channel.cost, channel.pressure) == costs[channel.name]
    assert scenario.contact_rules.pressure_capacity == 5
    assert scenario.fatigue.churn_at_full_pressure == template.fatigue.churn_at_full_pressure


def test_the_calibrated_twin_simulates_solves_and_audits(
    generated: SyntheticLog, result: CalibrationResult
) -> None:
    scenario = result.scenario
    twin = CustomerTwin(scenario, seed=0)
    twin.reset(200)
    for _ in range(5):
        twin.step(np.ones(200, dtype=np.int64))
    assert twin.kpis.purchases.sum() > 0
    plan = optimal.solve(build_kernel(CustomerTwin(scenario)))
    assert np.isfinite(plan.value) and plan.value > 0
    # the audit places the log's customers by the stored rules under the renamed stages
    checked = audit(scenario, generated.log, replicates=5, n_bootstrap=50, seed=0)
    assert set(checked.table["kpi"]) >= {"conversion", "spend"}


def test_retail_is_the_default_template_with_its_sourced_values() -> None:
    priors = Priors.from_template(load_scenario("retail"))
    assert priors.source == "retail"
    assert priors.stage_names == {s: s for s in STAGES}
    assert priors.daily == {
        ("aware", "churned"): 0.003,
        ("active", "lapsed"): 0.015,
        ("active", "churned"): 0.0005,
        ("loyal", "lapsed"): 0.006,
        ("loyal", "churned"): 0.0003,
        ("lapsed", "churned"): 0.012,
    }
    assert list(priors.on_purchase.items()) == [
        (("aware", "active"), 1.0),
        (("lapsed", "active"), 1.0),
        (("active", "loyal"), 0.08),
    ]
    assert priors.stage_multiplier == {"aware": 0.1, "active": 1.0, "loyal": 1.4, "lapsed": 0.25}
    assert (priors.notice_drop, priors.pressure_capacity, priors.discount_factor) == (
        0.6,
        6,
        0.995,
    )


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (RENAMED_STAGES | {"dormant": "member"}, "not rule stages"),
        (RENAMED_STAGES | {"aware": "nowhere"}, "has no stage"),
        (RENAMED_STAGES | {"active": "prospect"}, "share one template stage"),
    ],
)
def test_bad_stage_maps_are_named(template: Scenario, stages: dict[str, str], message: str) -> None:
    with pytest.raises(EventLogError, match=message):
        stage_roles(template, stages)


def test_a_template_without_the_rule_stages_needs_a_map(template: Scenario) -> None:
    with pytest.raises(EventLogError, match="map the rule stages"):
        stage_roles(template)


def test_scenarios_calibrated_with_low_and_high_still_load() -> None:
    old = FittedValue.model_validate(
        {"name": "x", "estimate": 1.0, "low": 0.5, "high": 1.5, "source": "fitted"}
    )
    assert (old.lower, old.upper, old.confidence) == (0.5, 1.5, 0.95)
    prior = FittedValue.model_validate(
        {"name": "x", "estimate": 1.0, "low": None, "high": None, "source": "assumed"}
    )
    assert (prior.lower, prior.upper, prior.confidence) == (None, None, None)
    with pytest.raises(ValueError, match="confidence"):
        FittedValue.model_validate(
            {"name": "x", "estimate": 1.0, "lower": 0.5, "upper": 1.5, "confidence": 95}
            | {"source": "fitted"}
        )


def test_calibrates_from_the_subscription_business() -> None:
    subscription = load_scenario("subscription")
    roles = {"aware": "trial", "active": "subscribed", "loyal": "upgraded", "lapsed": "cancelled"}
    generated = simulate_log(subscription, 12_000, seed=2, stages=roles)
    result = calibrate(
        generated.log, template=subscription, stages=roles, n_bootstrap=30, k_range=range(2, 5)
    )
    scenario = Scenario.from_yaml(result.scenario.to_yaml())
    assert scenario.stage_names == ["trial", "subscribed", "upgraded", "cancelled", "lost"]
    assert scenario.churn_stage == subscription.churn_stage
    logged = {a.channel for a in subscription.actions if a.name != "no_action"}
    assert set(scenario.channel_names) == logged
    stages = {s.name: s for s in subscription.stages}
    rows = result.parameters.set_index("name")
    unseen = rows.loc["stages[upgraded].purchase_multiplier"]  # one purchase each: no loyal rule
    assert unseen["source"] == "assumed" and "subscription" in unseen["method"]
    expected = stages["upgraded"].purchase_multiplier / stages["subscribed"].purchase_multiplier
    assert unseen["estimate"] == pytest.approx(expected)
    assert optimal.solve(build_kernel(CustomerTwin(scenario))).value > 0
