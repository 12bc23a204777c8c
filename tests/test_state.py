from __future__ import annotations

import numpy as np

from nba import CustomerTwin
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import StateSpace


def test_encode_decode_round_trip(retail: Scenario) -> None:
    space = StateSpace(ScenarioArrays.from_scenario(retail))
    index = np.arange(space.size)
    states = space.decode(index)
    np.testing.assert_array_equal(space.encode(states), index)
    assert states.pressure.max() == retail.contact_rules.pressure_capacity
    windows = [c.window_days for c in retail.contact_rules.caps]
    np.testing.assert_array_equal(states.days_since.min(axis=0), 1)
    np.testing.assert_array_equal(states.days_since.max(axis=0), windows)


def test_response_key_drops_only_the_cap_clocks(retail: Scenario) -> None:
    space = StateSpace(ScenarioArrays.from_scenario(retail))
    states = space.all_states()
    key = space.response_key(np.arange(space.size))
    assert key.max() + 1 == space.response_size
    first = space.decode(key * space.history_size)
    for name in ("persona", "stage", "pressure", "habit", "opted_out"):
        np.testing.assert_array_equal(getattr(first, name), getattr(states, name))


def test_consent_is_persona_consent_minus_opt_outs(retail: Scenario) -> None:
    twin = CustomerTwin(retail, seed=0)
    state = twin.reset(200)
    state.opted_out[::2] = True
    consent = state.consent(twin.arrays)
    paid_social = retail.channel_names.index("paid_social")
    assert consent[::2, paid_social].all()  # needs no consent, survives an opt-out
    needs = twin.arrays.rules.requires_consent
    assert not consent[::2][:, needs].any()
    np.testing.assert_array_equal(consent[1::2], twin.arrays.persona_consent[state.persona[1::2]])


def test_encode_one_matches_encode(retail: Scenario) -> None:
    space = StateSpace(ScenarioArrays.from_scenario(retail))
    for index in np.random.default_rng(0).choice(space.size, 500, replace=False):
        state = space.decode(np.array([index]))
        values = (state.persona, state.stage, state.pressure, state.habit, state.opted_out)
        plain = [int(v[0]) for v in values]
        assert space.encode_one(*plain, state.days_since[0].tolist()) == index
