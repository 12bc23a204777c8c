"""Reading a request: the bearer token, the request id, the body (content type, size, strict
JSON) and the envelope of ``/decide/batch``; each refusal a :class:`ServiceError`."""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import datetime
from typing import Any

import pandas as pd
from starlette.requests import Request

from nba.serving.http.service import _Service
from nba.serving.http.settings import ServeSettings, ServiceError
from nba.serving.http.strict_json import _cut, parse_json

_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")  # visible ASCII: UUIDs, ULIDs, trace ids
_BATCH_FIELDS = frozenset({"customers", "capacity", "as_of", "top_k"})


def _authorize(request: Request, service: _Service) -> None:
    if service.token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), service.token
    ):
        raise ServiceError(
            401, "authorization: missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
        )


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex
    if not _REQUEST_ID.fullmatch(given):
        raise ServiceError(400, "X-Request-ID: expected 1 to 200 visible ASCII characters")
    return given


async def _read_json(request: Request, limit: int) -> Any:
    """The body as strict JSON, after the content type and size checks (415, 413, 400)."""
    return parse_json(await _read_body(request, limit))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body's bytes, after the content type and size checks (415, 413)."""
    content_type = request.headers.get("content-type", "")
    media, _, parameters = content_type.partition(";")
    charset = parameters.strip().lower()
    if media.strip().lower() != "application/json" or charset not in (
        "",
        "charset=utf-8",
        'charset="utf-8"',
    ):
        raise ServiceError(
            415, f"Content-Type: expected application/json, got {_cut(content_type)!r}"
        )
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ServiceError(400, "Content-Length: not a number")
        if int(length) > limit:
            raise ServiceError(413, f"body: {int(length):,} bytes exceed the limit of {limit:,}")
        body = await request.body()
    else:  # chunked: count as it arrives
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ServiceError(413, f"body: more than the limit of {limit:,} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    return body


def _batch_request(payload: Any, settings: ServeSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check ``/decide/batch``'s envelope; the rows are the scorer's to validate."""
    if not isinstance(payload, dict):
        raise ServiceError(400, f"body: expected a JSON object, got {_json_kind(payload)}")
    unknown = sorted(payload.keys() - _BATCH_FIELDS)
    if unknown:
        raise ServiceError(
            422, f"body: unknown field {_cut(unknown[0])!r}; expected {sorted(_BATCH_FIELDS)}"
        )
    customers = payload.get("customers")
    if not isinstance(customers, list):
        raise ServiceError(
            422,
            f"customers: expected a list of objects, got "
            f"{_json_kind(customers) if 'customers' in payload else 'nothing'}",
        )
    if not customers:
        raise ServiceError(422, "customers: no customers to score")
    if len(customers) > settings.max_batch_rows:
        raise ServiceError(
            413,
            f"customers: {len(customers):,} exceed the limit of {settings.max_batch_rows:,} "
            "per request",
        )
    first = customers[0]
    if not isinstance(first, dict):
        raise ServiceError(422, f"customers[0]: expected an object, got {_json_kind(first)}")
    fields = first.keys()
    for i, row in enumerate(customers):
        if not isinstance(row, dict):
            raise ServiceError(422, f"customers[{i}]: expected an object, got {_json_kind(row)}")
        if row.keys() != fields:
            missing = sorted(fields - row.keys())
            extra = sorted(row.keys() - fields)
            what = f"lacks {missing}" if missing else f"adds {extra}"
            raise ServiceError(
                422,
                _cut(
                    f"customers[{i}]: every customer needs the same fields; it {what} "
                    "compared with customers[0]",
                    300,
                ),
            )
    options: dict[str, Any] = {}
    capacity = payload.get("capacity")
    if capacity is not None:
        if not isinstance(capacity, dict):
            raise ServiceError(422, f"capacity: expected an object, got {_json_kind(capacity)}")
        whole = {name: _whole_number(limit) for name, limit in capacity.items()}
        for name, limit in capacity.items():
            if limit is not None and whole[name] is None:
                raise ServiceError(
                    422,
                    f"capacity.{_cut(name)}: expected a non-negative integer or null, got "
                    f"{_cut(repr(limit))}",
                )
        options["capacity"] = whole
    if "as_of" in payload:
        options["as_of"] = _timestamp(payload["as_of"], "as_of")
    if "top_k" in payload:
        top_k = _whole_number(payload["top_k"])
        if top_k is None or not 1 <= top_k <= 64:
            raise ServiceError(
                422, f"top_k: expected an integer in [1, 64], got {_cut(repr(payload['top_k']))}"
            )
        options["top_k"] = top_k
    frame = pd.DataFrame(customers, columns=list(fields))
    return frame, options


def _whole_number(value: Any) -> int | None:
    """A JSON integer as an int: 3 or 3.0 (JSON Schema's integers, as the request fields read
    them); None for anything else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _timestamp(value: Any, name: str) -> datetime:
    """The batch's decision time, to the nanosecond like the rows' timestamps.

    ``datetime`` keeps microseconds only: a contact at ``...01.5001993Z`` would otherwise be
    "in the future" of a decision time given as the very same text.
    """
    if not isinstance(value, str):
        raise ServiceError(422, f"{name}: expected an ISO 8601 timestamp, got {_json_kind(value)}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ServiceError(422, f"{name}: cannot parse timestamp {_cut(value)!r}") from None
    try:
        precise = pd.Timestamp(value)
    except (ValueError, OverflowError):  # outside pandas' years: the schema words the refusal
        return moment
    same_instant = precise.floor("us").to_pydatetime() == moment
    return precise if same_instant and precise.tzinfo == moment.tzinfo else moment


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
