from __future__ import annotations

import json
from importlib import resources
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
    # every packaged YAML is a built-in, listed by its own name (no list kept in the tests)
    packaged = sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("nba.scenarios").iterdir()
        if p.name.endswith(".yaml")
    )
    assert builtin_scenario_names() == packaged
    assert "retail" in packaged and len(packaged) >= 2
    assert [load_scenario(name).name for name in packaged] == packaged


BILLION_LAUGHS = "\n".join(
    [
        'lol0: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"lol{i}: &{chr(97 + i)} [{', '.join([f'*{chr(96 + i)}'] * 10)}]" for i in range(1, 10)),
        "name: *i",
    ]
)


def _retail_yaml(retail_dict: dict[str, Any], change: Any) -> str:
    """The changed scenario as YAML text (JSON is YAML, and writes shared objects twice)."""
    change(retail_dict)
    return json.dumps(retail_dict, separators=(",", ":"))


def _stages(count: int) -> Any:
    def change(data: dict[str, Any]) -> None:
        data["stages"] = [{"name": f"s{i}", "purchase_multiplier": 0} for i in range(count)]

    return change


def _many_caps(data: dict[str, Any]) -> None:
    cap = data["contact_rules"]["caps"][0]
    data["contact_rules"]["caps"] = [dict(cap, name=f"c{i}") for i in range(500)]


HOSTILE_TEXT: dict[str, tuple[str, str]] = {
    "billion laughs": (BILLION_LAUGHS, r"line \d+: more than 50,000 values"),
    "recursive alias": ("name: &a [x, *a]\n", r"alias \*a is recursive"),
    "101 aliases": (
        "a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n",
        r"more than 100 aliases",
    ),
    "nested 40 deep": ("name: " + "[" * 40 + "]" * 40 + "\n", r"nested deeper than 32 levels"),
    "nested 10^5 deep": ("[" * 100_000 + "]" * 100_000, r"scenario YAML: cannot parse"),
    "a 2 MB string": ("name: " + "x" * (2 << 20), r"over the 1,048,576 byte limit"),
    "duplicate key": ("name: a\nname: b\n", r"line 2: duplicate key 'name'"),
    "integer key": ("name: a\nchannels:\n  - {name: email, 1: x}\n", r"line 3: key '1' is not"),
    "bool key": ("no: 3\n", r"line 1: key 'no' is not a string; quote it"),
    "python tag": ("name: !!python/object/apply:os.system [id]\n", r"line 1: tag .* not allowed"),
    "binary tag": ("name: !!binary aGVsbG8=\n", r"line 1: tag 'tag:yaml.org,2002:binary'"),
    "local tag": ("name: !mine x\n", r"tag '!mine' is not allowed"),
    "two documents": ("name: a\n---\nname: b\n", r"cannot parse: expected a single document"),
}


@pytest.mark.timeout(20, func_only=True)  # refused, not worked through: no hang
@pytest.mark.parametrize("case", sorted(HOSTILE_TEXT))
def test_hostile_yaml_fails_fast_with_our_error(case: str) -> None:
    text, expected = HOSTILE_TEXT[case]
    with pytest.raises(ScenarioError, match=expected):
        Scenario.from_yaml(text)


@pytest.mark.timeout(20, func_only=True)  # refused, not worked through: no hang
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_stages(20_000), r"more than 50,000 values"),
        (_stages(65), r"stages: List should have at most 64 items"),
        (_many_caps, r"contact_rules\.caps: List should have at most 16 items"),
        (
            lambda d: d["contact_rules"]["caps"][0].update(window_days=1_000_000),
            r"caps\[0\]\.window_days: Input should be less than or equal to 60",
        ),
        (
            lambda d: d["contact_rules"].update(pressure_capacity=10**9),
            r"pressure_capacity: Input should be less than or equal to 30",
        ),
        (
            lambda d: d.update(personas=[{"name": f"p{i}"} for i in range(8_000)]),
            r"personas: List should have at most 1024 items",
        ),
    ],
    ids=[
        "20,000 stages",
        "65 stages",
        "500 caps",
        "window 10^6 days",
        "pressure 10^9",
        "8,000 personas",
    ],
)
def test_huge_catalogues_fail_fast(retail_dict: dict[str, Any], change: Any, expected: str) -> None:
    text = _retail_yaml(retail_dict, change)
    assert len(text) < 1 << 20
    with pytest.raises(ScenarioError, match=expected):
        Scenario.from_yaml(text)


@pytest.mark.timeout(20, func_only=True)  # refused, not worked through: no hang
def test_hostile_files_fail_fast(tmp_path: Path) -> None:
    giant = tmp_path / "giant.yaml"
    with giant.open("wb") as handle:  # 1 GB that is never read: a sparse file
        handle.truncate(1 << 30)
    with pytest.raises(ScenarioError, match=r"giant\.yaml'.*larger than the 1,048,576 byte"):
        load_scenario(giant)
    with pytest.raises(ScenarioError, match="no such file"):
        Scenario.from_yaml(Path("/dev/zero"))
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):  # a ValueError; the CLI names the file and offset
        Scenario.from_yaml(latin)


def test_anchors_and_merge_keys_within_bounds_still_load(retail: Scenario) -> None:
    text = retail.to_yaml()
    assert "&" not in text and "*" not in text  # our own YAML never needs them
    shared = (
        text.replace("contact_rules:\n", "contact_rules: &rules\n", 1)
        + "journey_defaults: *rules\n"
    )
    with pytest.raises(ScenarioError, match="journey_defaults"):  # parsed, then validated
        Scenario.from_yaml(shared)


def test_exclusions_validate_their_references_and_round_trip(
    retail: Scenario, retail_dict: dict[str, Any], tmp_path: Path
) -> None:
    rule = {"name": "no_discount_loyal", "stages": ["loyal"], "offers": ["discount_20"]}
    retail_dict["contact_rules"]["exclusions"] = [rule]
    scenario = Scenario.from_dict(retail_dict)
    assert scenario.contact_rules.exclusions[0].channels == []  # empty: every channel
    assert Scenario.from_yaml(scenario.to_yaml(tmp_path / "x.yaml")) == scenario
    assert scenario.fingerprint() != retail.fingerprint()
    # a scenario without exclusions serialises as before (its fingerprint is unchanged)
    assert "exclusions" not in retail.to_dict()["contact_rules"]

    bad = dict(rule, stages=["lapsing"], channels=["fax"])
    retail_dict["contact_rules"]["exclusions"] = [bad, dict(rule, stages=[])]
    with pytest.raises(ScenarioError) as error:
        Scenario.from_dict(retail_dict)
    message = str(error.value)
    assert "contact_rules.exclusions[1].stages: List should have at least 1 item" in message
    retail_dict["contact_rules"]["exclusions"] = [bad, rule]
    with pytest.raises(ScenarioError) as error:
        Scenario.from_dict(retail_dict)
    message = str(error.value)
    assert "contact_rules.exclusions: duplicate names ['no_discount_loyal']" in message
    assert "contact_rules.exclusions[0].stages: unknown ['lapsing']" in message
    assert "contact_rules.exclusions[0].channels: unknown ['fax']" in message


def _calibrated_retail(parameters: list[dict[str, object]]) -> Scenario:
    data = load_scenario("retail").to_dict()
    data["calibration"] = {
        "data": "test",
        "reference_time": "2026-01-01T00:00:00+00:00",
        "response_window_days": 14,
        "persona_model": {},
        "stage_rules": {
            "stages": ["aware", "active", "loyal", "lapsed", "churned"],
            "active_days": 90,
            "loyal_purchases": None,
            "fitted_from": "assumed",
        },
        "parameters": parameters,
    }
    return Scenario.from_dict(data)


def test_fingerprint_of_calibrated_scenarios_survives_the_interval_rename() -> None:
    """Exports and logs made before ``lower``/``upper``/``confidence`` still match.

    The pinned hash is what the code before the rename (commit f686b22) printed for the
    legacy form; the new vocabulary at 95% must hash the same, another confidence must not.
    """
    legacy = _calibrated_retail(
        [
            {
                "name": "personas[0].base_purchase_rate",
                "estimate": 0.01,
                "low": 0.008,
                "high": 0.012,
                "source": "fitted",
                "method": "bootstrap",
            },
            {
                "name": "channels[0].cost",
                "estimate": 0.1,
                "low": None,
                "high": None,
                "source": "assumed",
            },
        ]
    )
    renamed = _calibrated_retail(
        [
            {
                "name": "personas[0].base_purchase_rate",
                "estimate": 0.01,
                "lower": 0.008,
                "upper": 0.012,
                "confidence": 0.95,
                "source": "fitted",
                "method": "bootstrap",
            },
            {"name": "channels[0].cost", "estimate": 0.1, "source": "assumed"},
        ]
    )
    pinned = "cf3d3bcd418b001b8929efbe764ac9e00cb094928a4e38b62d2da1283440b867"
    assert legacy.fingerprint() == pinned
    assert renamed.fingerprint() == pinned
    assert Scenario.from_yaml(renamed.to_yaml()).fingerprint() == pinned
    other = _calibrated_retail(
        [
            {
                "name": "personas[0].base_purchase_rate",
                "estimate": 0.01,
                "lower": 0.008,
                "upper": 0.012,
                "confidence": 0.9,
                "source": "fitted",
                "method": "bootstrap",
            },
        ]
    )
    assert other.fingerprint() != pinned


def test_extends_starts_from_a_built_in_and_replaces_top_level_fields() -> None:
    retail = load_scenario("retail")
    variant = Scenario.from_yaml("extends: retail\nname: shorter\nhorizon_days: 30\n")
    assert variant.name == "shorter" and variant.horizon_days == 30
    assert variant.stages == retail.stages and variant.personas == retail.personas
    packaged = load_scenario("retail_levels")
    assert packaged.heterogeneity is not None and packaged.actions == retail.actions
    assert packaged.heterogeneity.mean_rate_multiplier == pytest.approx(1.0, abs=1e-3)
    for bad in ("nowhere", "retail.yaml", 3):
        with pytest.raises(ScenarioError, match=r"^extends: "):
            Scenario.from_dict({"extends": bad, "name": "x"})
