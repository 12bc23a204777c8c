from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nba.loop.world import (
    WorldChange,
    WorldError,
    changed_world,
    load_world,
    scale_response,
    world_scenario,
    wrong_twin,
)
from nba.scenarios import load_scenario


def test_defaults_describe_the_issue_s_loop() -> None:
    spec = load_world()
    assert (spec.weeks, spec.twin_error, spec.customers) == (12, 0.3, 20_000)
    assert spec.change is not None and spec.change.factor == 0.5
    world = world_scenario(spec)
    assert world.horizon_days >= spec.days  # the loop never runs past the world's horizon


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"customers": 10}, r"world: customers: .*greater than or equal to 200"),
        ({"twin_error": 1.5}, r"world: twin_error"),
        ({"colour": "red"}, r"world: colour: Extra inputs"),
        ({"weeks": 4, "change": {"week": 6, "kind": "churn", "factor": 2}}, r"change.week: 6"),
        ({"change": {"week": 2, "kind": "channel_response", "factor": 0.5}}, r"channel: needed"),
        (
            {"change": {"week": 2, "kind": "channel_response", "channel": "fax", "factor": 0.5}},
            r"change.channel: unknown 'fax'",
        ),
        ({"horizon_days": 20}, r"horizon_days: 20 is shorter"),
        ({"scenario": "atlantis"}, r"world: scenario: .*atlantis"),
    ],
)
def test_a_bad_world_is_refused_naming_the_field(data: dict, message: str) -> None:
    with pytest.raises(WorldError, match=message):
        load_world(data)


def test_a_world_file_is_read_and_a_missing_one_named(tmp_path: Path) -> None:
    path = tmp_path / "world.yaml"
    path.write_text("customers: 500\nweeks: 3\nchange: null\n")
    spec = load_world(path, weeks=2)
    assert (spec.customers, spec.weeks, spec.change) == (500, 2, None)
    with pytest.raises(WorldError, match="no file at"):
        load_world(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(WorldError, match="must be a mapping"):
        load_world(tmp_path / "list.yaml")


def test_the_wrong_twin_is_wrong_within_the_stated_error_and_only_in_its_response() -> None:
    world = load_scenario("retail")
    twin, factors = wrong_twin(world, 0.3, np.random.default_rng(4))
    assert all(0.7 <= f <= 1.3 for group in factors.values() for f in group.values())
    for mine, theirs in zip(twin.personas, world.personas, strict=True):
        for channel, value in theirs.channel_affinity.items():
            expected = min(1.0, value * factors["channel_attention"][channel])
            assert mine.channel_affinity[channel] == pytest.approx(expected)
        assert mine.base_purchase_rate == theirs.base_purchase_rate
    for mine, theirs in zip(twin.offers, world.offers, strict=True):
        assert mine.purchase_lift == pytest.approx(
            theirs.purchase_lift * factors["offer_lift"][theirs.name]
        )
    assert twin.stages == world.stages
    again, _ = wrong_twin(world, 0.3, np.random.default_rng(4))
    assert again.fingerprint() == twin.fingerprint()  # same generator, same twin


def test_changes_halve_a_channel_or_raise_churn() -> None:
    world = load_scenario("retail")
    halved = changed_world(
        world, WorldChange(week=1, kind="channel_response", channel="sms", factor=0.5)
    )
    for before, after in zip(world.personas, halved.personas, strict=True):
        assert after.channel_affinity["sms"] == pytest.approx(before.channel_affinity["sms"] / 2)
        assert after.channel_affinity["email"] == before.channel_affinity["email"]
    churned = changed_world(world, WorldChange(week=1, kind="churn", factor=2.0))
    for before, after in zip(world.stages, churned.stages, strict=True):
        if "churned" in before.daily:
            assert after.daily["churned"] == pytest.approx(before.daily["churned"] * 2)
    same = scale_response(world, {}, {})
    assert same.fingerprint() == world.fingerprint()
