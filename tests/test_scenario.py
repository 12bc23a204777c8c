from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nba.errors import ScenarioError, UnknownNameError
from nba.scenario import NO_ACTION, Scenario
from nba.scenarios import builtin_scenario_names, load_scenario


def test_reference_scenario_meets_the_brief(retail: Scenario) -> None:
    assert retail.stage_names == [
        "aware",
        "considering",
        "active",
        "loyal",
        "advocate",
        "lapsed",
        "churned",
    ]
    assert len(retail.personas) >= 4
    assert {p.barrier for p in retail.personas} == {"price", "trust", "awareness", "convenience"}
    assert set(retail.channel_names) >= {
        "email",
        "sms",
        "push",
        "in_app",
        "direct_mail",
        "paid_social",
        "call_centre",
    }
    assert len(retail.actions) >= 10 and retail.action_names[0] == NO_ACTION
    # every persona's barrier is addressed by at least one offer that some action sends
    sent_offers = {a.offer for a in retail.actions}
    for persona in retail.personas:
        assert any(
            persona.barrier in o.addresses for o in retail.offers if o.name in sent_offers
        ), persona.name
    # the long-run effects carry their provenance
    assert retail.fatigue.source and retail.discount_habit.source and retail.response.source
    stages = {s.name: s for s in retail.stages}
    assert stages["loyal"].source and stages["advocate"].source
    assert retail.contact_rules.caps and retail.contact_rules.quiet_days


def test_yaml_round_trip_is_exact(retail: Scenario, tmp_path: Path) -> None:
    path = tmp_path / "retail.yaml"
    text = retail.to_yaml(path)
    assert path.read_text() == text
    again = Scenario.from_yaml(path)
    assert again == retail
    assert again.fingerprint() == retail.fingerprint()
    assert load_scenario(path) == retail


def test_fingerprint_changes_with_content(retail: Scenario) -> None:
    changed = retail.updated({"margin_rate": 0.3})
    assert changed.fingerprint() != retail.fingerprint()


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node: Any = data
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("personas.0.channel_affinity.sms", 1.3, r"personas\[0\]\.channel_affinity\.sms"),
        ("channels.1.unsubscribe_risk", -0.1, r"channels\[1\]\.unsubscribe_risk"),
        ("channels.0.cost", -1.0, r"channels\[0\]\.cost"),
        ("contact_rules.caps.0.channels", ["email", "fax"], r"caps\[0\]\.channels.*'fax'"),
        ("stages.2.daily", {"lapsed": 0.7, "churned": 0.6}, r"stages\[2\]\.daily.*sum"),
        ("churn_stage", "gone", r"churn_stage: unknown stage 'gone'"),
        ("actions.0.channel", "carrier_pigeon", r"actions\[0\]\.channel.*carrier_pigeon"),
        ("personas.1.share", 0.9, r"share.*sum"),
        ("offers.0.discount", 1.5, r"offers\[0\]\.discount"),
        ("discount_factor", 0.0, r"discount_factor"),
        ("journey_map.0.action", "email_spam", r"journey_map\[0\]\.action.*email_spam"),
        ("channels.6.pressure", 99, r"channels\[6\]\.pressure.*capacity"),
    ],
)
def test_invalid_values_name_the_field(
    retail_dict: dict[str, Any], path: str, value: Any, expected: str
) -> None:
    with pytest.raises(ScenarioError, match=expected):
        Scenario.from_dict(_set(retail_dict, path, value))


def test_missing_stage_is_named(retail_dict: dict[str, Any]) -> None:
    retail_dict["stages"] = [s for s in retail_dict["stages"] if s["name"] != "lapsed"]
    with pytest.raises(ScenarioError, match=r"unknown \['lapsed'\]"):
        Scenario.from_dict(retail_dict)


def test_unknown_key_and_duplicates_are_refused(retail_dict: dict[str, Any]) -> None:
    retail_dict["colour"] = "blue"
    retail_dict["channels"].append(dict(retail_dict["channels"][0]))
    with pytest.raises(ScenarioError) as info:
        Scenario.from_dict(retail_dict)
    assert "colour" in str(info.value)


def test_errors_are_value_errors_and_unknown_names_list_choices() -> None:
    assert issubclass(ScenarioError, ValueError)
    with pytest.raises(UnknownNameError, match="retail"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario("missing.yaml")
    with pytest.raises(ScenarioError, match="cannot parse"):
        Scenario.from_yaml("name: [unclosed\nother: 1")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        Scenario.from_dict(["not", "a", "mapping"])  # type: ignore[arg-type]
    assert builtin_scenario_names() == ["retail"]
