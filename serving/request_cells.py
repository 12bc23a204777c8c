"""Request cells read one column (frame path) or one value (single-customer path) at a time.

Both paths share these checks and their wording, so a request is refused alike whichever path
reads it. Every problem is a :class:`ScoringInputError` naming the row, the field and the
problem; values echoed in messages are cut to :data:`SHOWN_CHARS` characters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.types import BoolArray, IntArray


class ScoringInputError(NBAValidationError):
    """A request that cannot be scored; the message names the row, the field and the problem."""


SHOWN_CHARS = 80  # values echoed in messages are cut to this many characters


MAX_WHOLE = 10**9  # beyond any count, day or level a request can mean


ID_RANGE = (-(2**63), 2**63 - 1)  # integer ids: what an int64 column holds


def normalised(name: str) -> str:
    """A field name compared for suggestions: case, separators and punctuation ignored."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def echo(value: Any) -> str:
    """A value as the user wrote it (numpy scalars unwrapped), cut to about 80 characters."""
    try:
        if isinstance(value, np.datetime64 | np.timedelta64 | timedelta):
            value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        elif isinstance(value, np.generic):
            value = value.item()
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return cut(text)


def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA: a scalar that stands for nothing."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)
    return isinstance(value, np.datetime64 | np.timedelta64) and bool(np.isnat(value))


def is_integer(value: Any) -> bool:
    """Python or numpy integers; not booleans, nor numpy timedeltas (numpy integers too)."""
    if isinstance(value, int):
        return not isinstance(value, bool)
    return isinstance(value, np.integer) and not isinstance(value, np.timedelta64)


def identifier_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a customer id (strings and integers only), or None."""
    if isinstance(value, str):
        return None if value else "missing or empty"
    if is_integer(value):
        if ID_RANGE[0] <= value <= ID_RANGE[1]:
            return None
        low, high = ID_RANGE
        return f"{echo(value)} is out of range; expected a string or an integer in [{low}, {high}]"
    if is_missing(value):
        return "missing or empty"
    return f"expected a string or an integer, got {echo(value)}"


def raise_for_non_scalar(frame: pd.DataFrame) -> None:
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        odd = frame[column].map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray))
        if odd.any():
            row = first_row(frame, odd.to_numpy())
            shown = echo(frame[column].loc[row])
            raise ScoringInputError(
                f"row {echo(row)}, {cut(str(column))}: expected a single value, got {shown}"
            )


def one_category(row: Mapping[str, Any], column: str, index: dict[str, int]) -> int:
    value = row[column]
    code = index.get(value) if isinstance(value, str) else None
    if code is None:
        raise ScoringInputError(
            f"row 0, {column}: unknown value {echo(value)}; expected one of {list(index)}"
        )
    return code


def integer_problem(value: Any, low: int, high: int | None) -> str | None:
    """Why ``value`` is not a whole number in [low, high] (high None: up to 10**9), or None."""
    if isinstance(value, bool | np.bool_):
        return f"expected a whole number, got {echo(value)}"
    if is_integer(value):
        number = float(value)
    elif isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            what = "missing" if np.isnan(number) else "NaN or infinite"
            return f"expected a whole number, got {echo(value)} ({what})"
        if number != round(number):
            return f"expected a whole number, got {echo(value)} (fractional)"
    else:
        what = "missing" if is_missing(value) else "not a number"
        return f"expected a whole number, got {echo(value)} ({what})"
    ceiling = high if high is not None else MAX_WHOLE
    if number < low or number > ceiling:
        problem = "negative" if number < 0 else "out of range"
        return f"{echo(value)} is {problem}; expected [{low}, {ceiling}]"
    return None


def one_integer(row: Mapping[str, Any], column: str, low: int, high: int | None) -> int:
    value = row[column]
    if type(value) is int and low <= value <= (high if high is not None else MAX_WHOLE):
        return value  # the usual case, without the checks' float conversions
    problem = integer_problem(value, low, high)
    if problem:
        raise ScoringInputError(f"row 0, {column}: {problem}")
    return int(value)


#: JSON Schema of a cell :func:`boolean_value` reads: true or false, or the numbers 0 and 1
BOOLEAN_SCHEMA: dict[str, Any] = {"type": ["boolean", "integer"], "minimum": 0, "maximum": 1}


def boolean_value(value: Any) -> bool | None:
    """A cell read as true or false (booleans, or the numbers 0 and 1, written 1 or 1.0 as the
    integer fields read them), None otherwise."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if (is_integer(value) or isinstance(value, float | np.floating)) and value in (0, 1):
        return bool(value)
    return None


def one_boolean(row: Mapping[str, Any], column: str) -> bool:
    value = row[column]
    if value is True or value is False:
        return value
    read = boolean_value(value)
    if read is None:
        raise ScoringInputError(f"row 0, {column}: expected true or false, got {echo(value)}")
    return read


def first_row(frame: pd.DataFrame, bad: np.ndarray) -> Any:
    return frame.index[int(np.flatnonzero(bad)[0])]


def _telling(bad: np.ndarray, values: pd.Series, looks_right: Any) -> np.ndarray:
    """The bad cells worth naming first: those that do not even spell a valid value.

    A CSV column with one stray cell is read as text throughout, so every row is "bad" as a
    type; the row the user must fix is the one whose text is wrong, not the first row.
    """
    wrong = bad & ~values.map(looks_right).to_numpy(dtype=bool)
    return wrong if wrong.any() else bad


def _whole_number_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return bool(np.isfinite(number)) and number == round(number)


def _boolean_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() in {"true", "false", "0", "1"}


def id_column(frame: pd.DataFrame) -> np.ndarray:
    """Identifiers as given (strings or integers); anything else, missing or empty is refused."""
    values = frame["customer_id"]
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "string":  # text throughout: refuse the empty and missing cells
        bad = values.isna().to_numpy() | values.eq("").fillna(False).to_numpy(dtype=bool)
    elif kind == "integer" and values.dtype == np.int64:
        bad = np.zeros(len(values), dtype=bool)
    else:  # cell by cell: mixed, missing, or integers an int64 may not hold
        bad = values.map(lambda v: identifier_problem(v) is not None).to_numpy(dtype=bool)
    if bad.any():
        row = first_row(frame, bad)
        problem = identifier_problem(values.loc[row])
        raise ScoringInputError(f"row {echo(row)}, customer_id: {problem}")
    return values.to_numpy()


def refuse_repeated_ids(frame: pd.DataFrame, identifiers: np.ndarray) -> None:
    """One decision per customer per batch: an id given twice is refused, naming both rows.

    Ids compare as the decisions print them: the integer 7 and the text "7" are the same id.
    """
    keys = frame["customer_id"].reset_index(drop=True)  # text columns hash fastest as given
    if isinstance(keys.dtype, pd.CategoricalDtype):
        keys = keys.astype(object)
    if keys.dtype == object and pd.api.types.infer_dtype(keys, skipna=False) != "string":
        keys = keys.map(str)
    repeated = keys.duplicated().to_numpy()
    if repeated.any():
        second = int(np.flatnonzero(repeated)[0])
        first = int(np.flatnonzero((keys == keys.iloc[second]).to_numpy())[0])
        raise ScoringInputError(
            f"row {echo(frame.index[second])}, customer_id: {echo(identifiers[second])} "
            f"repeats row {echo(frame.index[first])}; give each customer once per batch"
        )


def category_column(frame: pd.DataFrame, column: str, names: pd.Index) -> IntArray:
    values = frame[column]
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) != "string":
        keys = values.map(lambda v: v if isinstance(v, str) else None)  # no unhashable cells
    else:
        keys = values.astype(object)
    codes = names.get_indexer(keys)
    bad = np.asarray(codes) < 0
    if bad.any():
        row = first_row(frame, bad)
        shown = echo(values.loc[row])
        raise ScoringInputError(
            f"row {echo(row)}, {column}: unknown value {shown}; expected one of {list(names)}"
        )
    return np.asarray(codes, dtype=np.int64)


def integer_column(frame: pd.DataFrame, column: str, low: int, high: int | None) -> IntArray:
    raw = frame[column]
    dtype = raw.dtype
    numeric = (
        isinstance(dtype, np.dtype) and dtype.kind in "iuf"
    )  # plain numpy numbers: checked as arrays
    if not numeric:  # objects, text, booleans, extension types: cell by cell, as one customer
        problems = raw.map(lambda v: integer_problem(v, low, high))
        bad = problems.notna().to_numpy()
        if bad.any():
            row = first_row(frame, _telling(bad, raw, _whole_number_text))
            raise ScoringInputError(f"row {echo(row)}, {column}: {problems.loc[row]}")
        return raw.map(int).to_numpy(dtype=np.int64)
    values = raw.to_numpy(dtype=np.float64)
    ceiling = high if high is not None else MAX_WHOLE
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < low) | (values > ceiling)
    if bad.any():
        row = first_row(frame, bad)
        raise ScoringInputError(
            f"row {echo(row)}, {column}: {integer_problem(raw.loc[row], low, high)}"
        )
    return values.astype(np.int64)


def boolean_column(frame: pd.DataFrame, column: str) -> BoolArray:
    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy()
    mapped = values.map(boolean_value)
    bad = mapped.isna().to_numpy()
    if bad.any():
        row = first_row(frame, _telling(bad, values, _boolean_text))
        raise ScoringInputError(
            f"row {echo(row)}, {column}: expected true or false, got {echo(values.loc[row])}"
        )
    return mapped.to_numpy(dtype=bool)
