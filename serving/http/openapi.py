"""The OpenAPI 3.1 document of ``nba serve``: request bodies and answers as JSON Schemas of
our own, the customer's being the validator's (:meth:`PolicyScorer.input_schema`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from nba.serving.http.settings import ServeSettings
from nba.serving.schema import timestamp_schema
from nba.serving.scorer import PolicyScorer

__all__ = ["openapi_document"]

_OPERATIONS = (  # path, method, summary, request body, answer
    ("/decide", "post", "Decide for one customer (the single-customer path)", "Customer",
     "Decision"),
    ("/decide/batch", "post", "Decide for a batch of customers (capacity shared across it)",
     "Batch", "Decisions"),
    ("/healthz", "get", "Liveness; never needs the token", None, "Health"),
    ("/version", "get", "The model being served: registry name, version and run", None,
     "Version"),
)  # fmt: skip
_REFUSALS = {
    "400": "The body is not JSON (strict: no NaN, no duplicate keys, UTF-8), not an object, or "
    "X-Request-ID is malformed.",
    "409": "X-Request-ID was logged with other decisions (servers with a decision log).",
    "413": "The body, or the batch, is larger than the server's limit.",
    "415": "Content-Type is not application/json.",
    "422": "A field is missing, unknown or invalid; the message names it.",
    "503": "The decision could not be recorded in the decision log; nothing was decided.",
}


def openapi_document(app: FastAPI, scorer: PolicyScorer, settings: ServeSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 document: request bodies and answers as JSON Schemas of our own.

    ``Customer`` is :meth:`PolicyScorer.input_schema` itself, so the published contract is the
    validator's; the rest describes the envelopes and answers.
    """
    customer = {k: v for k, v in scorer.input_schema().items() if k != "$schema"}
    paths: dict[str, Any] = {}
    for path, method, summary, body, answer in _OPERATIONS:
        responses: dict[str, Any] = {"200": _answer("OK", answer)}
        if body:
            statuses = ["400", "413", "415", "422"] + (["409", "503"] if settings.log else [])
            responses.update({s: _answer(_REFUSALS[s], "Error") for s in sorted(statuses)})
        operation: dict[str, Any] = {"summary": summary, "responses": responses}
        if body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            }
        if settings.token and path != "/healthz":
            operation["security"] = [{"bearer": []}]
            responses["401"] = _answer("Missing or wrong bearer token.", "Error")
        paths[path] = {method: operation}
    components: dict[str, Any] = {"schemas": _schemas(scorer, settings, customer)}
    if settings.token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": app.title,
            "version": app.version,
            "summary": app.summary,
            "description": f"Decisions from the exported policy behind {settings.model!r}. "
            'Every refusal is one line: {"error": "..."}.',
        },
        "paths": paths,
        "components": components,
    }


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# The answers' fields, described once (:func:`_answer_fields`); each answer names its own, in
# the order it writes them (``_decision_json``; the columns of ``PolicyScorer.score_batch``).
_DECISION = (
    "customer_id", "action", "action_name", "channel", "offer", "propensity", "value_estimate",
    "model_version", "explored", "alternatives", "suppressed",
)  # fmt: skip
_ROW = (
    "customer_id", "action", "action_name", "channel", "offer", "propensity", "explored",
    "value_estimate", "suppressed_action", "suppressed_reason", "model_version",
)  # fmt: skip
_REQUIRED = ["customer_id", "action", "action_name", "propensity", "model_version"]
_ROW_DESCRIPTION = "One row of PolicyScorer.score_batch (rank_k_* for k = 1 .. top_k)."


def _schemas(
    scorer: PolicyScorer, settings: ServeSettings, customer: dict[str, Any]
) -> dict[str, Any]:
    nullable_text = {"type": ["string", "null"]}
    fields = _answer_fields(scorer)
    return {
        "Customer": customer,
        "Batch": _batch(scorer, settings),
        "Decision": _answer_object(fields, _DECISION),
        "Decisions": {
            "type": "object",
            "required": ["model_version", "decisions"],
            "properties": {
                "model_version": {"type": "string"},
                "decisions": {
                    "type": "array",
                    "items": _answer_object(fields, _ROW, _ROW_DESCRIPTION),
                },
            },
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"const": "ok"}},
            "required": ["status"],
        },
        "Version": {
            "type": "object",
            "required": ["model", "model_version"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "string"},
                "name": nullable_text,
                "version": nullable_text,
                "run_id": nullable_text,
                "scenario": {"type": "string"},
                "loaded_at": {"type": "string", "format": "date-time"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
            "additionalProperties": False,
        },
    }


def _answer_fields(scorer: PolicyScorer) -> dict[str, Any]:
    """Every field a decision is answered with, on either path, as a JSON Schema."""
    names = list(scorer.action_names)
    nullable_text = {"type": ["string", "null"]}
    return {
        "customer_id": {"type": ["string", "integer"]},
        "action": {"type": "integer", "minimum": 0, "maximum": len(names) - 1},
        "action_name": {"type": "string", "enum": names},
        "channel": {"type": ["string", "null"], "enum": [*scorer.channel_names, None]},
        "offer": nullable_text,
        "propensity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "value_estimate": {"type": "number"},
        "model_version": {"type": "string"},
        "explored": {"type": "boolean"},
        "alternatives": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": names},
                    "probability": {"type": "number", "minimum": 0, "maximum": 1},
                },
                "required": ["action", "probability"],
            },
        },
        "suppressed": {
            "type": ["object", "null"],
            "properties": {"action": {"type": "string"}, "reason": {"type": "string"}},
        },
        "suppressed_action": nullable_text,
        "suppressed_reason": nullable_text,
    }


def _answer_object(
    fields: dict[str, Any], names: tuple[str, ...], description: str | None = None
) -> dict[str, Any]:
    """An answer object with ``names`` drawn from ``fields``."""
    schema: dict[str, Any] = {"type": "object"}
    if description is not None:
        schema["description"] = description
    schema["required"] = list(_REQUIRED)
    schema["properties"] = {name: fields[name] for name in names}
    return schema


def _batch(scorer: PolicyScorer, settings: ServeSettings) -> dict[str, Any]:
    """The body of ``/decide/batch``: customers, shared capacity, a default as_of, top_k."""
    return {
        "type": "object",
        "required": ["customers"],
        "additionalProperties": False,
        "properties": {
            "customers": {
                "type": "array",
                "items": _ref("Customer"),
                "minItems": 1,
                "maxItems": settings.max_batch_rows,
                "description": "Every customer has the same fields; customer ids are unique.",
            },
            "capacity": {
                "type": "object",
                "description": "Contacts available per scarce channel in this request (shared "
                "across its customers only); a channel not named keeps the scenario's "
                "daily_capacity, null lifts it.",
                "propertyNames": {"enum": list(scorer.channel_names)},
                "additionalProperties": {"type": ["integer", "null"], "minimum": 0},
            },
            "as_of": timestamp_schema("Decision time for customers without their own as_of."),
            "top_k": {"type": "integer", "minimum": 1, "maximum": 64},
        },
    }
