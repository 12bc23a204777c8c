"""The scoring request as JSON Schema 2020-12, never looser than the validator.

Every request the schema admits is scored, but for what JSON Schema cannot state: a contact
after the decision time and an integer id written as a float (``7.0``). The HTTP service's
OpenAPI document and the pyfunc model's metadata carry this schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nba.serving.request_cells import BOOLEAN_SCHEMA, ID_RANGE
from nba.serving.request_time import timestamp_schema

if TYPE_CHECKING:
    from nba.serving.schema import RequestSchema

#: how every request timestamp's offset is read
ZONE = (
    "Read in its own offset: quiet days follow the weekday of its local wall time; "
    "naive or Z is UTC."
)


def request_json_schema(schema: RequestSchema) -> dict[str, Any]:
    """The JSON Schema of one request row for ``schema``'s scenario, fields in its order.

    The state's fields come from their components' declaration (:mod:`.request_fields`), the
    contact history's two forms from :class:`~nba.serving.request_history.ContactHistory`.
    """
    sc = schema.arrays.scenario
    properties: dict[str, Any] = {
        "customer_id": {
            "type": ["string", "integer"],
            "minLength": 1,
            "minimum": ID_RANGE[0],
            "maximum": ID_RANGE[1],
            "description": "A non-empty string or a 64-bit integer (7, not 7.0); unique "
            "within a batch.",
        },
        "as_of": timestamp_schema(
            "The decision time (default: the call's as_of, else now). " + ZONE
        ),
        "day": {"type": "integer", "minimum": 0, "maximum": sc.horizon_days - 1},
        **schema.history.json_properties(ZONE),
    }
    for field in schema.component_fields:  # the state, from its declaration
        properties.update(field.json_properties())
    for column in schema.consent_columns:
        properties[column] = {
            **BOOLEAN_SCHEMA,
            "description": "Consent on the channel (default: the persona's consent).",
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"nba scoring request ({sc.name})",
        "type": "object",
        "properties": {name: properties[name] for name in schema.fields},
        "required": list(schema.required),
        "additionalProperties": False,
        **schema.history.json_constraints(),
    }
