"""Request bodies as strict JSON (UTF-8, no NaN or Infinity, no duplicate keys, no lone
surrogates), and the short one-line texts every refusal uses."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from nba.serving.http.settings import ServiceError

__all__ = ["parse_json"]

_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SPACE = " \t\n\r"  # JSON's whitespace


class _StrictJSONError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError(f"number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _StrictJSONError(f"duplicate key {_cut(key)!r}")
            seen.add(key)
    return result


_DECODER = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


def parse_json(body: bytes) -> Any:
    """A request body as strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, valid text.

    :raises ServiceError: 400 naming the problem.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceError(400, f"body: not UTF-8 (byte at offset {exc.start})") from None
    try:
        value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip(_SPACE)))
        if text[end:].strip(_SPACE):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        raise ServiceError(400, f"body: invalid JSON ({exc.msg} at offset {exc.pos})") from None
    except _StrictJSONError as exc:
        raise ServiceError(400, f"body: invalid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
        raise ServiceError(400, f"body: invalid JSON ({_first_line(exc)})") from None
    if _LONE_SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ServiceError(400, "body: invalid JSON (a \\u escape is half a surrogate pair)")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string (key or value) holds a surrogate that is not UTF-8 encodable."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(lines) if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
