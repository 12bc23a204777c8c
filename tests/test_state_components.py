"""Adding a state component is one declaration: space, kernel, features and requests follow."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nba import CustomerTwin, optimal
from nba.errors import NBAValidationError
from nba.features import FeatureBuilder
from nba.kernel import build_kernel
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import COMPONENTS, CustomerState, StateComponent, StateSpace, rested_state
from nba.state_components import RequestField

TIERS = ["bronze", "silver", "gold"]

#: A toy latent component without dynamics (a customer keeps their tier).
LOYALTY = StateComponent(
    name="loyalty_tier",
    kind="category",
    radices=lambda a: [len(TIERS)],
    sources=lambda a: ["loyalty tiers"],
    labels=lambda a: list(TIERS),
    rested=0,
    response=True,
    request=RequestField("loyalty_tier", "loyalty tier name"),
    doc="loyalty tier",
)


def _with_loyalty() -> tuple[StateComponent, ...]:
    """Index order: the new response component goes after opted_out, before the clocks."""
    names = [c.name for c in COMPONENTS]
    at = names.index("days_since")
    return (*COMPONENTS[:at], LOYALTY, *COMPONENTS[at:])


def test_the_declaration_is_in_today_s_index_order() -> None:
    names = [c.name for c in COMPONENTS]
    assert names == [
        "persona",
        "stage",
        "pressure",
        "habit",
        "opted_out",
        "rate_level",
        "dropout_level",
        "days_since",
    ]
    history = [c.name for c in COMPONENTS if not c.response]
    assert history == ["days_since"]  # the response key drops exactly the clocks


def test_space_grows_by_the_component_and_round_trips(retail: Scenario) -> None:
    arrays = ScenarioArrays.from_scenario(retail)
    plain, toy = StateSpace(arrays), StateSpace(arrays, _with_loyalty())
    assert toy.size == 3 * plain.size
    assert toy.history_size == plain.history_size  # still only the clocks
    assert ("loyalty tiers", 3) in toy.factors
    index = np.arange(toy.size)
    states = toy.decode(index)
    np.testing.assert_array_equal(toy.encode(states), index)
    assert sorted(set(states.loyalty_tier.tolist())) == [0, 1, 2]
    # a state of the toy space with tier 0 is the plain space's state, stretched by the tier
    rested = states.take(np.flatnonzero(states.loyalty_tier == 0))
    plain_state = CustomerState(**{k: v for k, v in rested.items() if k != "loyalty_tier"})
    np.testing.assert_array_equal(
        toy.response_key(toy.encode(rested)) // 3,
        plain.response_key(plain.encode(plain_state)),
    )
    one = states.take(np.array([12_345]))
    values = {name: array[0].tolist() for name, array in one.items()}
    assert toy.encode_one(**values) == 12_345
    assert toy.stride("loyalty_tier") == toy.history_size


def test_features_gain_the_block_and_round_trip(retail: Scenario) -> None:
    arrays = ScenarioArrays.from_scenario(retail)
    components = _with_loyalty()
    plain, toy = FeatureBuilder(arrays), FeatureBuilder(arrays, components=components)
    tier_names = [f"loyalty_tier={t}" for t in TIERS]
    assert toy.size == plain.size + 3
    assert dict(toy.blocks)["loyalty_tier"] == tier_names
    # one-hot blocks in component order, before the first cap clock
    first_cap = f"{retail.contact_rules.caps[0].name}_days=1"
    assert toy.names.index(tier_names[-1]) + 1 == toy.names.index(first_cap)
    assert [n for n in toy.names if n not in tier_names] == plain.names
    space = StateSpace(arrays, components)
    states = space.all_states()
    day = np.arange(len(states)) % retail.horizon_days
    decoded, decoded_day = toy.decode(toy.build(states, day))
    np.testing.assert_array_equal(space.encode(decoded), np.arange(space.size))
    np.testing.assert_array_equal(decoded_day, day)
    assert FeatureBuilder.for_names(arrays, toy.names, components) == toy


def test_rested_state_fills_the_new_component(retail: Scenario) -> None:
    arrays = ScenarioArrays.from_scenario(retail)
    state = rested_state(arrays, np.array([0, 1]), np.array([2, 0]), components=_with_loyalty())
    np.testing.assert_array_equal(state.loyalty_tier, [0, 0])
    np.testing.assert_array_equal(state.days_since, np.tile(arrays.rules.cap_windows, (2, 1)))
    assert not state.habit.any() and not state.opted_out.any() and not state.pressure.any()
    drawn = dataclasses.replace(LOYALTY, rested=None)
    with pytest.raises(NBAValidationError, match="'loyalty_tier' has no rested value"):
        rested_state(arrays, np.array([0]), np.array([0]), components=(*COMPONENTS, drawn))


def test_twin_and_kernel_follow_and_a_static_component_changes_nothing(
    retail: Scenario,
) -> None:
    plain, toy = (
        CustomerTwin(retail, seed=3),
        CustomerTwin(retail, seed=3, components=_with_loyalty()),
    )
    assert toy.space.size == 3 * plain.space.size
    a, b = plain.reset(500), toy.reset(500)
    for _ in range(5):
        actions = np.random.default_rng(0).integers(0, plain.n_actions, 500)
        plain.step(actions), toy.step(actions)
    for name, array in a.items():
        np.testing.assert_array_equal(getattr(b, name), array)
    np.testing.assert_array_equal(b.loyalty_tier, 0)
    # no dynamics and no effect on outcomes: the same optimum from the rested tier
    assert optimal.solve(build_kernel(toy)).value == pytest.approx(
        optimal.solve(build_kernel(plain)).value, rel=1e-12
    )


def test_customer_state_refuses_missing_unknown_and_misspelt_components(
    retail: Scenario,
) -> None:
    state = CustomerTwin(retail, seed=0).reset(3)
    values = dict(state.items())
    with pytest.raises(NBAValidationError, match=r"missing \['habit'\]"):
        CustomerState(**{k: v for k, v in values.items() if k != "habit"})
    with pytest.raises(NBAValidationError, match=r"unknown \['loyalty_tier'\]"):
        CustomerState(**values, loyalty_tier=np.zeros(3, dtype=np.int64))
    with pytest.raises(NBAValidationError, match="'opted_ot' is not a state component"):
        state.opted_ot = np.ones(3, dtype=bool)  # type: ignore[attr-defined]
    assert len(state.take(np.array([0, 2]))) == 2 and state.copy().names == state.names


def test_a_declaration_out_of_index_order_is_refused(retail: Scenario) -> None:
    arrays = ScenarioArrays.from_scenario(retail)
    with pytest.raises(NBAValidationError, match="response components must precede"):
        StateSpace(arrays, (*COMPONENTS, LOYALTY))
    with pytest.raises(NBAValidationError, match="unique names"):
        StateSpace(arrays, (*COMPONENTS[:-1], COMPONENTS[1], COMPONENTS[-1]))


def test_requests_gain_the_field_in_the_validator_and_the_json_schema(retail: Scenario) -> None:
    from nba.serving.schema import RequestSchema, ScoringInputError

    arrays = ScenarioArrays.from_scenario(retail)
    schema = RequestSchema(arrays, _with_loyalty())
    described = schema.json_schema()
    assert described["properties"]["loyalty_tier"]["enum"] == TIERS
    assert "loyalty_tier" in described["required"]
    row = {
        "customer_id": "c1",
        "persona": retail.persona_names[0],
        "stage": retail.stage_names[0],
        "pressure": 0,
        "discount_habit": False,
        "opted_out": False,
        **{f"days_since_{cap.name}": 3 for cap in retail.contact_rules.caps},
    }
    with pytest.raises(ScoringInputError, match="loyalty_tier"):
        schema.parse_mapping(row)
    with pytest.raises(ScoringInputError, match="loyalty_tier"):
        schema.parse_mapping({**row, "loyalty_tier": "platinum"})
    parsed = schema.parse_mapping({**row, "loyalty_tier": "gold"})
    np.testing.assert_array_equal(parsed.state.loyalty_tier, [2])
    plain = RequestSchema(arrays).json_schema()
    assert "loyalty_tier" not in plain["properties"]
