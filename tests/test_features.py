from __future__ import annotations

import numpy as np
import pytest

from nba import CustomerTwin
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.scenario import Scenario
from nba.scenarios import load_scenario


def test_build_decode_round_trip_over_every_state(retail: Scenario) -> None:
    twin = CustomerTwin(retail)
    features = FeatureBuilder(twin.arrays)
    states = twin.space.all_states()
    day = np.arange(len(states)) % retail.horizon_days
    obs = features.build(states, day)
    assert obs.dtype == np.float32 and obs.shape == (len(states), features.size)
    assert obs.min() >= 0.0 and obs.max() <= 1.0
    decoded, decoded_day = features.decode(obs)
    np.testing.assert_array_equal(twin.space.encode(decoded), np.arange(len(states)))
    np.testing.assert_array_equal(decoded_day, day)


def test_feature_names_are_documented_blocks(retail: Scenario) -> None:
    features = FeatureBuilder(CustomerTwin(retail).arrays)
    assert len(features.names) == features.size == len(set(features.names))
    assert features.names[0] == f"persona={retail.persona_names[0]}"
    assert "time_left" in features.names and "weekday=sun" in features.names
    # every one-hot block has exactly one 1 per row (days_left: only in the final days)
    twin = CustomerTwin(retail, seed=0)
    obs = features.build(twin.reset(100), twin.day)
    for block, names in features.blocks:
        if len(names) > 1 and block != "days_left":
            start = features.offsets[block]
            np.testing.assert_array_equal(obs[:, start : start + len(names)].sum(axis=1), 1.0)


def test_decode_rejects_wrong_width(retail: Scenario) -> None:
    features = FeatureBuilder(CustomerTwin(retail).arrays)
    with pytest.raises(NBAValidationError, match="obs: expected shape"):
        features.decode(np.zeros((2, features.size + 1)))


def test_days_left_marks_only_the_final_days() -> None:
    from nba.features import FINAL_DAYS

    twin = CustomerTwin(load_scenario("retail"))
    features = FeatureBuilder(twin.arrays)
    horizon = twin.scenario.horizon_days
    state = twin.reset(horizon)
    days = np.arange(horizon)
    block = features.build(state, days)[:, features.offsets["days_left"] :]
    assert block.shape[1] == FINAL_DAYS
    left = horizon - days
    assert (block.sum(axis=1) == (left <= FINAL_DAYS)).all()
    final = left <= FINAL_DAYS
    assert (np.argmax(block[final], axis=1) + 1 == left[final]).all()
    legacy = FeatureBuilder(twin.arrays, final_days=0)
    assert (
        features.names[: legacy.size] == legacy.names
    )  # a trailing block: old layouts are a prefix
    np.testing.assert_array_equal(
        features.build(state, days)[:, : legacy.size], legacy.build(state, days)
    )
    assert FeatureBuilder.for_names(twin.arrays, legacy.names) == legacy


def test_days_left_leaves_the_weekday_alone_at_the_episode_end() -> None:
    twin = CustomerTwin(load_scenario("retail"))
    features = FeatureBuilder(twin.arrays)
    state = twin.reset(2)
    horizon = twin.scenario.horizon_days
    obs = features.build(state, np.array([horizon, horizon - 1]))
    start = features.offsets["weekday"]
    np.testing.assert_array_equal(obs[:, start : start + 7].sum(axis=1), 1.0)
    assert obs[0, features.offsets["days_left"] :].sum() == 0.0
