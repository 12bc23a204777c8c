from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

from nba import CustomerTwin
from nba.errors import NBAValidationError
from nba.kernel import build_kernel
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import MAX_TABLE_CELLS, StateSpace


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
        plain = [int(v[0]) for name, v in state.items() if name != "days_since"]
        assert space.encode_one(*plain, state.days_since[0].tolist()) == index


def _caps(retail_dict: dict[str, Any], count: int, window: int = 60) -> Scenario:
    cap = retail_dict["contact_rules"]["caps"][0]
    caps = [dict(cap, name=f"cap{g}", window_days=window) for g in range(count)]
    retail_dict["contact_rules"]["caps"] = caps
    retail_dict["contact_rules"]["pressure_capacity"] = 30
    return Scenario.from_dict(retail_dict)


@pytest.mark.timeout(20, func_only=True)  # refused, not worked through: no hang
def test_a_space_past_int64_indexing_is_refused_naming_the_fields(
    retail_dict: dict[str, Any],
) -> None:
    scenario = _caps(retail_dict, 16)  # 60^16 x ...: numpy's product would wrap around
    with pytest.raises(NBAValidationError, match="state space too large") as info:
        CustomerTwin(scenario)
    message = str(info.value)
    assert "over the limit of 1,099,511,627,776" in message
    assert "contact_rules.caps[0].window_days (cap0) = 60" in message
    assert "and 15 more" in message  # 16 windows, pressure, stages, personas: 4 named


@pytest.mark.timeout(20, func_only=True)  # refused, not worked through: no hang
@pytest.mark.parametrize(
    ("count", "personas"),
    [(3, 1), (2, 1000)],
    ids=["3 caps of 60 days", "1,000 personas"],
)
def test_tables_over_the_cap_are_refused_before_allocation(
    retail_dict: dict[str, Any], count: int, personas: int
) -> None:
    persona = retail_dict["personas"][0]
    retail_dict["personas"] = [
        dict(persona, name=f"p{i}", share=1 / personas) for i in range(personas)
    ]
    scenario = _caps(retail_dict, count)
    space = StateSpace(ScenarioArrays.from_scenario(scenario))  # indexing costs nothing
    assert space.size * (5 + count) > MAX_TABLE_CELLS
    tracemalloc.start()
    try:
        with pytest.raises(NBAValidationError, match="every state's components") as info:
            space.all_states()
        with pytest.raises(NBAValidationError, match=r"rule masks \(7 x S x A\)"):
            build_kernel(scenario)
        with pytest.raises(NBAValidationError, match=r"decision table \(7 x S x A\)"):
            space.require_table(7 * 13, "a day's decision table (7 x S x A)")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"peak {peak:,} bytes"
    assert f"over the limit of {MAX_TABLE_CELLS:,}" in str(info.value)
    largest = "personas = 1,000" if personas > 1 else "(cap0) = 60"
    assert largest in str(info.value)


def test_the_built_in_space_is_well_within_the_caps(retail: Scenario) -> None:
    space = StateSpace(ScenarioArrays.from_scenario(retail))
    space.require_table(7 * len(retail.action_names), "a day's decision table")
    assert 7 * space.size * len(retail.action_names) * 16 < MAX_TABLE_CELLS
