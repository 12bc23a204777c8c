"""Audit segments: a small condition language over the customer table, never code.

``nba audit --segment "returning=not newbie and recency_months <= 6"`` names a group of
held-out customers. The text comes from users (and scripts that pass user input along), so it
is parsed, not evaluated: Python's :mod:`ast` reads it, an allow-list of node types is checked,
and the result is evaluated with pandas comparisons, one vectorised operation per node.

Grammar, as in ``DataFrame.query`` for these forms (the same rows are selected):

- ``column``: a true/false column (bool, or 0/1 numbers);
- ``column OP literal``, ``literal OP column``, ``column OP column``, chains ``1 < x <= 5``,
  with OP one of ``== != < <= > >=``;
- ``column in [literal, ...]``, ``column not in (...)``;
- ``and``/``&``, ``or``/``|``, ``not``/``~`` and parentheses (``&`` and ``|`` bind as ``and``
  and ``or``, as pandas reads them);
- literals: numbers (``-2.5``, ``1e3``), quoted text, ``True``/``False`` (or ``true``/``false``);
- column names that are not identifiers in backticks: ```emp.var.rate` > 1``.

Anything else (calls, attribute access, subscripts, arithmetic, ``@variables``, lambdas) is
refused with an :class:`~nba.calibration.events.EventLogError` naming the segment and the
construct, before any row is read.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.events import EventLogError
from nba.types import BoolArray

MAX_QUERY_CHARS = 1_000  # bounds parsing and evaluation work (and Python's int-digit limits)

_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_REFUSED = {
    ast.Call: "function calls",
    ast.Attribute: "attribute access",
    ast.Subscript: "subscripts",
    ast.BinOp: "arithmetic",
    ast.Lambda: "lambdas",
    ast.NamedExpr: "assignment",
    ast.IfExp: "if-expressions",
    ast.List: "lists outside 'in'",
    ast.Tuple: "tuples outside 'in'",
    ast.Set: "sets outside 'in'",
    ast.JoinedStr: "f-strings",
    ast.Starred: "starred expressions",
    ast.Dict: "dicts",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}
_BOOLEAN_WORDS = {"true": True, "false": False}


# ------------------------------------------------------------------ the parsed condition
class _Node:
    def columns(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class _Column(_Node):
    name: str

    def columns(self) -> set[str]:
        return {self.name}


@dataclass(frozen=True)
class _Literal(_Node):
    value: bool | int | float | str


@dataclass(frozen=True)
class _Compare(_Node):
    left: _Column | _Literal
    op: type[ast.cmpop]
    right: _Column | _Literal

    def columns(self) -> set[str]:
        return self.left.columns() | self.right.columns()


@dataclass(frozen=True)
class _Member(_Node):
    column: _Column
    values: tuple[bool | int | float | str, ...]
    negated: bool

    def columns(self) -> set[str]:
        return self.column.columns()


@dataclass(frozen=True)
class _Logic(_Node):
    kind: str  # "and", "or", "not"
    parts: tuple[_Node, ...]

    def columns(self) -> set[str]:
        return set().union(*(part.columns() for part in self.parts))


@dataclass(frozen=True)
class Segment:
    """One named, parsed segment; :meth:`select` gives its members of a customer table."""

    name: str
    query: str
    condition: _Node

    @classmethod
    def parse(cls, name: str, query: str) -> Segment:
        """Parse ``query``; raises :class:`EventLogError` naming ``segments.<name>``."""
        if not isinstance(query, str) or not query.strip():
            raise EventLogError(f"segments.{name}: expected a condition, got {_shown(query)}")
        if len(query) > MAX_QUERY_CHARS:
            raise EventLogError(
                f"segments.{name}: the condition has {len(query):,} characters; "
                f"at most {MAX_QUERY_CHARS:,}"
            )
        text, quoted = _rewrite(name, query)
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise EventLogError(
                f"segments.{name}: not a condition {_shown(query)} ({exc.msg})"
            ) from None
        except (ValueError, MemoryError, RecursionError) as exc:  # null bytes, too deep
            raise EventLogError(
                f"segments.{name}: not a condition {_shown(query)} ({type(exc).__name__})"
            ) from None
        condition = _Parser(name, quoted).condition(tree.body)
        return cls(name, query, condition)

    @property
    def columns(self) -> set[str]:
        """The columns the condition reads."""
        return self.condition.columns()

    def select(self, table: pd.DataFrame) -> BoolArray:
        """(N,) whether each row of ``table`` is in the segment (missing values are not)."""
        missing = sorted(self.columns - set(map(str, table.columns)))
        if missing:
            known = ", ".join(map(str, table.columns))
            raise EventLogError(
                f"segments.{self.name}: unknown column(s) {missing}; the customer table has "
                f"{_cut(known, 300)}"
            )
        return _Evaluator(self.name, table).condition(self.condition)


def parse_segments(segments: Mapping[str, str]) -> list[Segment]:
    """Every segment parsed (the first bad one raises)."""
    return [Segment.parse(name, query) for name, query in segments.items()]


# ------------------------------------------------------------------ parsing
def _rewrite(name: str, query: str) -> tuple[str, dict[str, str]]:
    """pandas' spellings into Python's: ``&``/``|`` as ``and``/``or`` (their precedence in
    ``DataFrame.query``), backticked column names as placeholder identifiers. Text inside
    quotes is left alone."""
    out: list[str] = []
    quoted: dict[str, str] = {}
    i, n = 0, len(query)
    while i < n:
        char = query[i]
        if char in "'\"":
            if query.startswith(char * 3, i):
                raise EventLogError(f"segments.{name}: triple-quoted text is not supported")
            end = i + 1
            while end < n and query[end] != char:
                end += 2 if query[end] == "\\" else 1
            out.append(query[i : end + 1])
            i = end + 1
        elif char == "`":
            end = query.find("`", i + 1)
            if end < 0:
                raise EventLogError(f"segments.{name}: a backtick is not closed")
            placeholder = f"_nba_column_{len(quoted)}_"
            quoted[placeholder] = query[i + 1 : end]
            out.append(f" {placeholder} ")
            i = end + 1
        elif char in "&|":
            out.append(" and " if char == "&" else " or ")
            i += 1
        else:
            out.append(char)
            i += 1
    return "".join(out), quoted


class _Parser:
    """The allow-list: every node is one of the grammar's forms, or the query is refused."""

    def __init__(self, name: str, quoted: dict[str, str]) -> None:
        self.name = name
        self.quoted = quoted

    def fail(self, problem: str) -> EventLogError:
        return EventLogError(f"segments.{self.name}: {problem}")

    def condition(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.BoolOp):
            kind = "and" if isinstance(node.op, ast.And) else "or"
            return _Logic(kind, tuple(self.condition(value) for value in node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.Invert):
            return _Logic("not", (self.condition(node.operand),))
        if isinstance(node, ast.Compare):
            return self.comparison(node)
        if isinstance(node, ast.Name):
            return self.column(node)
        raise self.refusal(node, "a condition")

    def comparison(self, node: ast.Compare) -> _Node:
        terms = [node.left, *node.comparators]
        parts: list[_Node] = []
        for left, op, right in zip(terms, node.ops, terms[1:], strict=False):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(left, ast.Name):
                    raise self.fail("'in' needs a column on its left, e.g. zip_code in ['Rural']")
                if not isinstance(right, ast.List | ast.Tuple | ast.Set):
                    raise self.fail("'in' needs a list of values on its right, e.g. in [1, 2]")
                values = tuple(self.literal(element).value for element in right.elts)
                parts.append(_Member(self.column(left), values, isinstance(op, ast.NotIn)))
                continue
            if type(op) not in _COMPARISONS:
                raise self.fail(f"the operator {type(op).__name__} is not allowed")
            a, b = self.operand(left), self.operand(right)
            if isinstance(a, _Literal) and isinstance(b, _Literal):
                raise self.fail("a comparison needs a column on one side")
            parts.append(_Compare(a, type(op), b))
        return parts[0] if len(parts) == 1 else _Logic("and", tuple(parts))

    def operand(self, node: ast.expr) -> _Column | _Literal:
        if isinstance(node, ast.Name) and not self.is_boolean_word(node):
            return self.column(node)
        return self.literal(node)

    def is_boolean_word(self, node: ast.Name) -> bool:
        return node.id.lower() in _BOOLEAN_WORDS and node.id not in self.quoted

    def column(self, node: ast.Name) -> _Column:
        return _Column(self.quoted.get(node.id, node.id))

    def literal(self, node: ast.expr) -> _Literal:
        if isinstance(node, ast.Name) and self.is_boolean_word(node):
            return _Literal(_BOOLEAN_WORDS[node.id.lower()])
        sign = 1
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            sign = -1 if isinstance(node.op, ast.USub) else 1
            node = node.operand
            if not (isinstance(node, ast.Constant) and _is_number(node.value)):
                raise self.fail("a sign goes before a number only")
        if isinstance(node, ast.Constant):
            value = node.value
            if _is_number(value):
                return _Literal(sign * value)
            if isinstance(value, str | bool):
                return _Literal(value)
            raise self.fail(f"the literal {_shown(value)} is not a number, text or true/false")
        raise self.refusal(node, "a value")

    def refusal(self, node: ast.AST, expected: str) -> EventLogError:
        if isinstance(node, ast.Constant):
            return self.fail(f"expected {expected}, got the value {_shown(node.value)}")
        what = _REFUSED.get(type(node), f"{type(node).__name__} expressions")
        return self.fail(f"{what}: not allowed (expected {expected})")


# ------------------------------------------------------------------ evaluation
class _Evaluator:
    def __init__(self, name: str, table: pd.DataFrame) -> None:
        self.name = name
        self.table = table.reset_index(drop=True)
        self.by_name = {str(c): c for c in self.table.columns}

    def fail(self, problem: str) -> EventLogError:
        return EventLogError(f"segments.{self.name}: {problem}")

    def condition(self, node: _Node) -> BoolArray:
        if isinstance(node, _Logic):
            masks = [self.condition(part) for part in node.parts]
            if node.kind == "not":
                return ~masks[0]
            combine = np.logical_and if node.kind == "and" else np.logical_or
            return combine.reduce(masks)
        if isinstance(node, _Column):
            return self.flag(node.name)
        if isinstance(node, _Member):
            for value in node.values:
                self.check_kinds(node.column.name, value)
            series = self.series(node.column.name)
            inside = series.isin(list(node.values)).to_numpy(dtype=bool)
            return ~inside if node.negated else inside
        if isinstance(node, _Compare):
            return self.compare(node)
        raise TypeError(node)  # pragma: no cover - the parser builds no other node

    def series(self, name: str) -> pd.Series:
        return self.table[self.by_name[name]]

    def value(self, term: _Column | _Literal) -> Any:
        return self.series(term.name) if isinstance(term, _Column) else term.value

    def compare(self, node: _Compare) -> BoolArray:
        for term, other in ((node.left, node.right), (node.right, node.left)):
            if isinstance(term, _Column) and isinstance(other, _Literal):
                self.check_kinds(term.name, other.value)
        try:
            result = _COMPARISONS[node.op](self.value(node.left), self.value(node.right))
            return np.asarray(pd.Series(result).fillna(False), dtype=bool)
        except (TypeError, ValueError, OverflowError) as exc:
            left, right = _describe(node.left), _describe(node.right)
            raise self.fail(
                f"cannot compare {left} {_SYMBOLS[node.op]} {right} ({_cut(str(exc), 120)})"
            ) from None

    def check_kinds(self, name: str, value: object) -> None:
        """Refuse comparisons that would silently select nobody (text against numbers)."""
        series = self.series(name)
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            fits = isinstance(value, bool) or value in (0, 1)
        elif pd.api.types.is_numeric_dtype(dtype):
            fits = _is_number(value) or isinstance(value, bool)
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            fits = isinstance(value, str)
        elif pd.api.types.is_string_dtype(dtype) and pd.api.types.infer_dtype(series) in (
            "string",
            "empty",
        ):
            fits = isinstance(value, str)
        else:  # mixed objects: pandas decides
            fits = True
        if not fits:
            raise self.fail(f"column {name!r} holds {_kind(dtype)}; compared with {_shown(value)}")

    def flag(self, name: str) -> BoolArray:
        """A column used as a condition: true/false values (0/1 numbers), missing = false."""
        series = self.series(name)
        if pd.api.types.is_bool_dtype(series.dtype):
            return np.asarray(series.fillna(False), dtype=bool)
        present = series.dropna()
        if pd.api.types.is_numeric_dtype(series.dtype) and present.isin([0, 1]).all():
            return np.asarray(series.eq(1), dtype=bool)
        if series.dtype == object and all(isinstance(v, bool | np.bool_) for v in present):
            return np.asarray(series.eq(True), dtype=bool)
        raise self.fail(
            f"column {name!r} holds {_kind(series.dtype)}, not true/false; compare it, "
            f"e.g. {name} > 0"
        )


# ------------------------------------------------------------------ helpers
def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(dtype: Any) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "true/false values"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numbers"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamps"
    return "text"


def _describe(term: _Column | _Literal) -> str:
    return f"column {term.name!r}" if isinstance(term, _Column) else _shown(term.value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _shown(value: object) -> str:
    return _cut(repr(value), 80)
