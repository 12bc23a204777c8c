from __future__ import annotations

import numpy as np
import pytest

from nba import CustomerTwin
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.scenario import Scenario


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
    # every one-hot block has exactly one 1 per row
    twin = CustomerTwin(retail, seed=0)
    obs = features.build(twin.reset(100), twin.day)
    for block, names in features.blocks:
        if len(names) > 1:
            start = features.offsets[block]
            np.testing.assert_array_equal(obs[:, start : start + len(names)].sum(axis=1), 1.0)


def test_decode_rejects_wrong_width(retail: Scenario) -> None:
    features = FeatureBuilder(CustomerTwin(retail).arrays)
    with pytest.raises(NBAValidationError, match="obs: expected shape"):
        features.decode(np.zeros((2, features.size + 1)))
