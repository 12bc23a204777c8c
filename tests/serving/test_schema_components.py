"""The request follows the state declaration: a new component is a new field everywhere.

Both parse paths, the JSON Schema, the error hints and the documentation table are derived
from :data:`nba.state.COMPONENTS`; a toy declaration must flow through all of them.
"""

from __future__ import annotations

import dataclasses
import re

import jsonschema
import numpy as np
import pandas as pd
import pytest

import nba.serving.schema as schema_module
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.serving.request_fields import fields_table
from nba.serving.schema import OneCustomer, ParsedRequest, RequestSchema, ScoringInputError
from nba.state import COMPONENTS, StateComponent, StateSpace
from nba.state_components import RequestField
from tests.test_state_components import LOYALTY, TIERS

from .conftest import customer, frame

AS_OF = pd.Timestamp("2026-11-23T12:00:00Z")

VISITS = StateComponent(  # an optional level: left out, it is the rested value
    name="visits",
    kind="level",
    radices=lambda a: [4],
    sources=lambda a: ["visit levels"],
    rested=2,
    response=True,
    request=RequestField("store_visits", "store visits this month, 0 .. 3", required=False),
    doc="store visits",
)


def _with(*extra: StateComponent) -> tuple[StateComponent, ...]:
    """Response components go after opted_out, before the clocks (index order)."""
    at = [c.name for c in COMPONENTS].index("days_since")
    return (*COMPONENTS[:at], *extra, *COMPONENTS[at:])


@pytest.fixture
def arrays(retail: Scenario) -> ScenarioArrays:
    return ScenarioArrays.from_scenario(retail)


@pytest.fixture
def toy(arrays: ScenarioArrays) -> RequestSchema:
    return RequestSchema(arrays, _with(LOYALTY, VISITS))


def _both_paths(schema: RequestSchema, row: dict[str, object]) -> tuple[OneCustomer, ParsedRequest]:
    one = schema.parse_one(row, as_of=AS_OF)
    assert one is not None
    return one, schema.parse(frame(row), as_of=AS_OF)


def test_a_new_component_is_read_alike_by_both_paths(
    toy: RequestSchema, arrays: ScenarioArrays
) -> None:
    row = customer(loyalty_tier="gold", store_visits=1)
    one, batch = _both_paths(toy, row)
    assert one.loyalty_tier == 2 and one.visits == 1
    assert batch.state.loyalty_tier.tolist() == [2] and batch.state.visits.tolist() == [1]
    # every component, in declaration order, equal on both paths and in the mapping route
    mapped = toy.parse_mapping(row, as_of=AS_OF)
    for name, value in zip(one.names, one.state, strict=True):
        assert np.asarray(getattr(batch.state, name))[0].tolist() == np.asarray(value).tolist()
        assert getattr(mapped.state, name).tolist() == getattr(batch.state, name).tolist()
    space = StateSpace(arrays, toy.components)
    assert space.encode_one(*one.state) == int(space.encode(batch.state)[0])


def test_an_optional_component_left_out_is_its_rested_value(toy: RequestSchema) -> None:
    one, batch = _both_paths(toy, customer(loyalty_tier="bronze"))
    assert one.visits == 2 and batch.state.visits.tolist() == [2]
    two = [customer(loyalty_tier="bronze"), customer(customer_id="c-2", loyalty_tier="gold")]
    assert toy.parse(frame(*two), as_of=AS_OF).state.visits.tolist() == [2, 2]
    # a column given for some rows only is refused like any other missing cell
    two[1]["store_visits"] = 3
    with pytest.raises(ScoringInputError, match=r"row 0, store_visits: .*missing"):
        toy.parse(frame(*two), as_of=AS_OF)
    with pytest.raises(AttributeError, match="no field or state component 'vists'"):
        _ = one.vists


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loyalty_tier": None}, r"missing field\(s\) \['loyalty_tier'\]"),
        ({"loyalty_tier": "platinum"}, r"row 0, loyalty_tier: unknown value 'platinum'"),
        ({"loyalty_tier": "gold", "store_visits": 4}, r"row 0, store_visits: 4 is out of range"),
        ({"loyalty_tier": "gold", "store_visits": True}, r"store_visits: expected a whole"),
        ({"loyalty_tier": "gold", "loyalty_teir": "x"}, r"did you mean 'loyalty_tier'"),
    ],
)
def test_a_new_component_is_validated_alike_by_both_paths(
    toy: RequestSchema, overrides: dict[str, object], message: str
) -> None:
    row = {k: v for k, v in customer(**overrides).items() if v is not None}
    with pytest.raises(ScoringInputError, match=message):
        toy.parse_one(row, as_of=AS_OF)
    with pytest.raises(ScoringInputError, match=message):
        toy.parse(frame(row), as_of=AS_OF)


def test_the_json_schema_follows_the_declaration(toy: RequestSchema) -> None:
    schema = toy.json_schema()
    properties = schema["properties"]
    assert properties["loyalty_tier"]["enum"] == TIERS
    assert (properties["store_visits"]["minimum"], properties["store_visits"]["maximum"]) == (0, 3)
    assert "loyalty_tier" in schema["required"] and "store_visits" not in schema["required"]
    assert list(properties) == toy.fields
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(customer(loyalty_tier="silver", store_visits=3))
    assert not validator.is_valid(customer(loyalty_tier="silver", store_visits=4))
    assert not validator.is_valid(customer())  # the required tier is missing


def test_today_s_declaration_gives_today_s_fields(arrays: ScenarioArrays) -> None:
    schema = RequestSchema(arrays)
    assert schema.required == schema_module.REQUIRED
    assert schema.required == (
        "customer_id", "persona", "stage", "pressure", "discount_habit", "opted_out",
    )  # fmt: skip
    assert not {"loyalty_tier", "store_visits"} & set(schema.fields)


def _documented(table: str, arrays: ScenarioArrays, schema: RequestSchema) -> set[str]:
    """The fields a documentation table names, its placeholders spelt out for a scenario."""
    sc = arrays.scenario
    places = {
        "<channel>": sc.channel_names,
        "<ch>": schema.capped_channels,
        "<cap>": [cap.name for cap in sc.contact_rules.caps],
    }
    names = set()
    for line in table.splitlines():
        match = re.match(r"``([^`]+)``", line)
        if match is None:
            continue
        field = match.group(1)
        placeholder = next((p for p in places if p in field), None)
        expanded = (
            [field.replace(placeholder, n) for n in places[placeholder]] if placeholder else [field]
        )
        names.update(expanded)
    return names


@pytest.mark.parametrize("components", [COMPONENTS, _with(LOYALTY, VISITS)], ids=["today", "toy"])
def test_the_docs_list_exactly_the_accepted_fields(
    arrays: ScenarioArrays, components: tuple[StateComponent, ...]
) -> None:
    schema = RequestSchema(arrays, components)
    # a component with one value here (the individual levels of a scenario without them) is
    # documented, as scenarios with levels accept it, but this one does not
    silent = {c.request.field for c in components if c.request and c.is_silent(arrays)}
    documented = _documented(fields_table(components), arrays, schema)
    assert silent == {"rate_level", "dropout_level"} and not silent & set(schema.fields)
    assert documented - silent == set(schema.fields)
    assert fields_table() in (schema_module.__doc__ or "")  # the module's docs are generated


def test_a_component_a_request_cannot_give_is_refused_when_the_schema_is_built(
    arrays: ScenarioArrays,
) -> None:
    hidden = dataclasses.replace(LOYALTY, request=None)  # not in requests: rested value
    assert "loyalty_tier" not in RequestSchema(arrays, _with(hidden)).fields
    one = RequestSchema(arrays, _with(hidden)).parse_one(customer(), as_of=AS_OF)
    assert one is not None and one.loyalty_tier == 0
    drawn = dataclasses.replace(LOYALTY, request=None, rested=None)
    with pytest.raises(NBAValidationError, match="'loyalty_tier': a request must carry it"):
        RequestSchema(arrays, _with(drawn))
    no_clock = tuple(c for c in COMPONENTS if c.name != "days_since")
    with pytest.raises(NBAValidationError, match="one contact clock"):
        RequestSchema(arrays, no_clock)


def test_every_state_field_has_valid_examples(toy: RequestSchema) -> None:
    """The pyfunc's input example fills any state field it does not spell out from these."""
    seen = set()
    for i in range(6):
        row = customer(customer_id=f"c-{i}")
        for field in toy.component_fields:
            row.update({name: field.example(i, g) for g, name in enumerate(field.names)})
        one, batch = _both_paths(toy, row)
        from_batch = [np.asarray(getattr(batch.state, name))[0].tolist() for name in one.names]
        assert from_batch == [np.asarray(value).tolist() for value in one.state]
        seen.add((one.loyalty_tier, one.visits))
    assert {tier for tier, _ in seen} == {0, 1, 2} and {v for _, v in seen} == {0, 1, 2, 3}
