"""The request's fields, derived from the state declaration (:data:`nba.state.COMPONENTS`).

Each state component with a request description (:class:`~nba.state.RequestField`) becomes
one field per column, read by its kind: a category is one of its labels, a level an integer in
``0 .. size - 1``, a flag a boolean, a clock whole days ``>= 1`` (past the window counts as the
window). The contact clock (``days_since``) may also come as last-contact timestamps
(:mod:`nba.serving.request_history`). A component a request does not carry, or an optional one
left out, takes its rested value. ``customer_id``, the consents, ``as_of`` and ``day`` are the
request's own fields. Both parse paths, the JSON Schema and the documentation table
(:func:`fields_table`) read this module, so adding a component is one declaration.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.serving.request_cells import (
    BOOLEAN_SCHEMA,
    MAX_WHOLE,
    boolean_column,
    category_column,
    integer_column,
    one_boolean,
    one_category,
    one_integer,
)
from nba.serving.request_history import LAST_CONTACT
from nba.state import COMPONENTS, StateComponent
from nba.state_components import DAYS_SINCE as CONTACT_CLOCK

#: (field, meaning, required) of the fields that are the request's own, not state
ID_ROW = (
    "customer_id",
    "a non-empty string or a 64-bit integer (not a float, bool or bytes); integers stay "
    "integers; unique within a batch",
    "yes",
)
REQUEST_ROWS = (
    ("consent_<channel>", "per-channel consent; default: the persona's consent", "no"),
    ("as_of", "the decision time (default: the scoring call's ``as_of``, else now)", "no"),
    ("day", "day of the planning horizon, default 0 (receding horizon)", "no"),
)


def is_contact_clock(component: StateComponent) -> bool:
    """Whether a component is the contact history (two request forms, one per cap rule)."""
    return component.kind == "clock" and component.name == CONTACT_CLOCK.name


@dataclass(frozen=True)
class ComponentField:
    """How one state component is read from a request: its fields, bounds and default."""

    component: StateComponent
    names: tuple[str, ...]  # one request field per column
    scalar: bool  # shape (N,), not (N, columns)
    required: bool
    labels: tuple[str, ...]  # a category's value names (empty otherwise)
    highs: tuple[int, ...]  # per column: a level's largest value, a clock's window
    rested: np.ndarray | None  # (columns,) the value when left out

    @classmethod
    def of(cls, component: StateComponent, arrays: ScenarioArrays) -> ComponentField:
        request = component.request
        columns = component.column_names(arrays)
        radices = component.radices(arrays)
        carried = request is not None and not component.is_silent(arrays)  # silent: one level
        names = tuple(request.names(columns)) if request is not None and carried else ()
        required = carried and request is not None and request.required
        rested = component.rested_values(arrays)
        if not required and rested is None:
            raise NBAValidationError(
                f"state component {component.name!r}: a request must carry it (no rested "
                "value), but its request field is missing or optional"
            )
        labels = component.labels(arrays) if component.labels is not None else []
        highs = [r - 1 + component.digit_offset for r in radices]
        return cls(component, names, columns is None, required, tuple(labels), tuple(highs), rested)

    @property
    def prefix(self) -> str:
        """The field name before its column (``days_since_`` of ``days_since_{column}``)."""
        request = self.component.request
        return "" if request is None else request.field.split("{column}")[0]

    # ------------------------------------------------------------------ batches
    def read_column(self, frame: pd.DataFrame) -> np.ndarray:
        """The component's (N,) or (N, columns) array from a validated frame's fields."""
        n = len(frame)
        parts = []
        for g in range(len(self.highs)):
            name = self.names[g] if self.names else None
            if name is not None and name in frame.columns:
                parts.append(self._cells(frame, name, g))
            else:
                assert self.rested is not None  # refused in :meth:`of` otherwise
                parts.append(np.full(n, self.rested[g], dtype=self.component.dtype))
        if self.scalar:
            return parts[0]
        if not parts:
            return np.zeros((n, 0), dtype=self.component.dtype)
        return np.stack(parts, axis=1)

    def _cells(self, frame: pd.DataFrame, name: str, g: int) -> np.ndarray:
        kind = self.component.kind
        if kind == "category":
            return category_column(frame, name, pd.Index(self.labels))
        if kind == "flag":
            return boolean_column(frame, name)
        if kind == "clock":
            return np.minimum(integer_column(frame, name, 1, None), self.highs[g])
        return integer_column(frame, name, self.component.digit_offset, self.highs[g])

    # ------------------------------------------------------------------ one customer
    def one_reader(self) -> Callable[[Mapping[str, Any]], Any]:
        """A reader of the component's plain value(s) from one row, built once per schema.

        A required scalar field (every field of today's state) reads with one call to the
        cell check, as the hand-written parser did: this is the single-customer latency path.
        """
        cells = [self._one_cell(g) for g in range(len(self.highs))]
        if self.scalar:
            return cells[0]
        return lambda row: tuple([cell(row) for cell in cells])

    def _one_cell(self, g: int) -> Callable[[Mapping[str, Any]], Any]:
        if not self.names:  # not in requests: the rested value
            return self._rested_cell(g)
        name, high = self.names[g], self.highs[g]
        kind, low = self.component.kind, self.component.digit_offset
        read: Callable[[Mapping[str, Any]], Any]
        if kind == "category":
            index = {label: i for i, label in enumerate(self.labels)}
            read = lambda row: one_category(row, name, index)  # noqa: E731
        elif kind == "flag":
            read = lambda row: one_boolean(row, name)  # noqa: E731
        elif kind == "clock":
            read = lambda row: min(one_integer(row, name, 1, None), high)  # noqa: E731
        else:
            read = lambda row: one_integer(row, name, low, high)  # noqa: E731
        if self.required:
            return read
        rested = self._rested_cell(g)
        return lambda row: read(row) if name in row else rested(row)

    def _rested_cell(self, g: int) -> Callable[[Mapping[str, Any]], Any]:
        assert self.rested is not None  # refused in :meth:`of` otherwise
        value = bool(self.rested[g]) if self.component.kind == "flag" else int(self.rested[g])
        return lambda row: value

    def example(self, i: int, g: int = 0) -> Any:
        """A valid value of column ``g`` for the ``i``-th example customer."""
        kind = self.component.kind
        if kind == "category":
            return self.labels[i % len(self.labels)]
        if kind == "flag":
            return bool(i % 2)
        low = 1 if kind == "clock" else self.component.digit_offset
        return low + i % (self.highs[g] - low + 1)

    # ------------------------------------------------------------------ documentation
    def json_properties(self) -> dict[str, Any]:
        """JSON Schema of each of the component's fields."""
        request = self.component.request
        if request is None or not self.names:
            return {}
        kind = self.component.kind
        properties = {}
        for name, high in zip(self.names, self.highs, strict=True):
            if kind == "category":
                schema: dict[str, Any] = {"type": "string", "enum": list(self.labels)}
            elif kind == "flag":
                schema = dict(BOOLEAN_SCHEMA)
            elif kind == "clock":
                schema = {"type": "integer", "minimum": 1, "maximum": MAX_WHOLE}
            else:
                schema = {"type": "integer", "minimum": self.component.digit_offset}
                schema["maximum"] = high
            properties[name] = {**schema, "description": _sentence(request.doc)}
        return properties


def component_fields(
    arrays: ScenarioArrays, components: tuple[StateComponent, ...] = COMPONENTS
) -> list[ComponentField]:
    """Every component's request reading, in declaration order, the contact clock apart."""
    return [ComponentField.of(c, arrays) for c in components if not is_contact_clock(c)]


def one_state_reader(fields: list[ComponentField]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """One function reading every component's plain value(s) from a row, in field order.

    The single-customer path calls it per request; a loop over per-component readers cost
    about 0.4 us more than the hand-written calls it replaces, so the calls are generated
    from the declaration, as :func:`nba.state.StateSpace.encode_one`'s sum is. Only names we
    make up enter the source; field names, labels and bounds are bound in its namespace.
    """
    namespace: dict[str, Any] = {
        "one_category": one_category,
        "one_boolean": one_boolean,
        "one_integer": one_integer,
    }
    calls = []
    for k, field in enumerate(fields):
        kind = field.component.kind
        if not (field.scalar and field.required):  # defaults or columns: the general reader
            namespace[f"read{k}"] = field.one_reader()
            calls.append(f"read{k}(row)")
            continue
        namespace[f"name{k}"], namespace[f"high{k}"] = field.names[0], field.highs[0]
        if kind == "category":
            namespace[f"index{k}"] = {label: i for i, label in enumerate(field.labels)}
            calls.append(f"one_category(row, name{k}, index{k})")
        elif kind == "flag":
            calls.append(f"one_boolean(row, name{k})")
        elif kind == "clock":
            calls.append(f"min(one_integer(row, name{k}, 1, None), high{k})")
        else:
            namespace[f"low{k}"] = field.component.digit_offset
            calls.append(f"one_integer(row, name{k}, low{k}, high{k})")
    source = f"def read_state(row):\n    return [{', '.join(calls)}]\n"
    exec(compile(source, "<nba.serving.request_fields read_state>", "exec"), namespace)
    reader: Callable[[Mapping[str, Any]], list[Any]] = namespace["read_state"]
    return reader


def fields_table(components: tuple[StateComponent, ...] = COMPONENTS) -> str:
    """The request's fields as a reStructuredText table, in the order the schema lists them.

    ``<channel>``, ``<ch>`` (a capped channel), ``<cap>`` (a cap rule) and ``<column>`` (a
    component's column) stand for the scenario's names.
    """
    rows = [ID_ROW]
    history = []
    for component in components:
        request = component.request
        if request is None:
            continue
        if is_contact_clock(component):
            field = request.field.format(column="<cap>")
            prefix = request.field.split("{column}")[0]
            history = [
                (
                    f"{LAST_CONTACT}<ch>",
                    "time of the last contact on each capped channel (empty = never), "
                    f"every one of them; or the ``{prefix}*`` form",
                    "one form",
                ),
                (
                    field,
                    f"{request.doc}, every one of them. Part of a form is refused; when both "
                    "forms are complete the timestamps decide (the counts must still be valid)",
                    "one form",
                ),
            ]
            continue
        field = request.field.format(column="<column>")
        rested = "" if request.required else "; default: the rested value"
        rows.append((field, request.doc + rested, "yes" if request.required else "no"))
    return _table([*rows, *history, *REQUEST_ROWS])


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = (max(23, *(len(field) + 6 for field, _, _ in rows)), 59, 9)
    rule = "  ".join("=" * w for w in widths)
    heading = "  ".join(
        h.ljust(w) for h, w in zip(("field", "meaning", "required"), widths, strict=True)
    )
    lines = [rule, heading.rstrip(), rule]
    for field, meaning, required in rows:
        glued = meaning.replace(">= ", ">=\x00")  # "(>= 1)" stays on one line
        wrapped = [w.replace("\x00", " ") for w in textwrap.wrap(glued, widths[1])] or [""]
        first = f"``{field}``".ljust(widths[0])
        lines.append(f"{first}  {wrapped[0].ljust(widths[1])}  {required}".rstrip())
        lines += [(" " * (widths[0] + 2) + more).rstrip() for more in wrapped[1:]]
    return "\n".join([*lines, rule])


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


if __name__ == "__main__":  # python -m nba.serving.request_fields: the table for the docs
    print(fields_table())
