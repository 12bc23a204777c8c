"""Request timestamps: decision times and last contacts, read in their own offsets.

The frame path reads whole columns with pandas; the single-customer path reads plain ISO 8601
text and datetimes itself (to the nanosecond, as pandas' ISO8601 parser does) and raises
:class:`AskPandas` for anything else, so that the frame path decides and words the error.
Elapsed days are counted between UTC instants; weekdays (quiet days) on each time's own wall
clock. :data:`TIMESTAMP_PATTERN` is what the JSON Schema promises.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from nba.serving.request_cells import ScoringInputError, echo, first_row, is_missing
from nba.types import IntArray


def timestamp_schema(description: str, nullable: bool = False) -> dict[str, Any]:
    """The JSON Schema of a request timestamp (``as_of``, ``last_contact_*``, a batch's
    ``as_of``): what every entry point reads alike, and nothing the validator refuses."""
    return {
        "type": ["string", "null"] if nullable else "string",
        "format": "date-time",
        "pattern": TIMESTAMP_PATTERN,
        "description": f"{description} RFC 3339, years 1678-2261.",
    }


# ISO 8601 as machines write it: a date, optionally a time (hh:mm, seconds, up to nine
# decimals) with "Z" or +hh:mm. Read exactly (to the nanosecond) as pandas' ISO8601 parser does.
_PLAIN_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?)?",
    re.ASCII,
)


_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


_EPOCH_NAIVE = datetime(1970, 1, 1)


_MICROSECOND = timedelta(microseconds=1)


DAY_NS = 86_400 * 10**9


_NS_YEARS = range(1678, 2262)  # what nanosecond timestamps (pandas' default) can hold


# The timestamps the JSON Schema promises: RFC 3339 date-times (a "T", seconds, up to nine
# decimals, "Z" or +hh:mm) on real calendar days of the years 1678-2261, written in their own
# offset: every one of them is read, in any batch, alike by both paths. The validator reads more
# (naive or date-only text, other years where pandas can), which the schema need not promise.
_YEAR = r"(?:16(?:7[89]|[89][0-9])|1[7-9][0-9]{2}|2[01][0-9]{2}|22[0-5][0-9]|226[01])"


_LEAP_YEAR = (
    r"(?:16(?:8[048]|9[26])|(?:1[7-9]|2[01])(?:0[48]|[2468][048]|[13579][26])|2000"
    r"|22(?:0[48]|[24][048]|[135][26]|60))"
)


_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)


TIMESTAMP_PATTERN = (
    rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


class AskPandas(Exception):
    """A timestamp only the frame path can read or word the error for (single path only)."""


def one_moment(value: Any) -> tuple[int, int] | None:
    """One timestamp cell as (nanoseconds since the epoch UTC, its offset in nanoseconds).

    ``None`` when empty. Naive values are UTC. Raises :class:`AskPandas` as
    :func:`one_instant` does.
    """
    if isinstance(value, str):
        match = _PLAIN_ISO.fullmatch(value)
        if match is None:
            raise AskPandas
        return iso_instant(value), zone_ns(match.group(8))
    instant = one_instant(value)
    if instant is None:
        return None
    offset = value.utcoffset()
    return instant, 0 if offset is None else offset // _MICROSECOND * 1000


def zone_ns(zone: str | None) -> int:
    """Nanoseconds of a ``Z`` or ``+hh:mm`` suffix (none: UTC)."""
    if not zone or zone == "Z":
        return 0
    minutes = int(zone[1:3]) * 60 + int(zone[4:6])
    return (-1 if zone[0] == "-" else 1) * minutes * 60 * 10**9


def offset_ns(value: Any) -> int:
    """The UTC offset a timestamp cell was written in (nanoseconds; naive and empty: UTC)."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        return 0 if offset is None else offset // _MICROSECOND * 1000
    if isinstance(value, str):
        match = _PLAIN_ISO.fullmatch(value)
        if match is not None:
            return zone_ns(match.group(8))
        offset = pd.Timestamp(value).utcoffset()  # other spellings pandas' ISO parser read
        return 0 if offset is None else offset // _MICROSECOND * 1000
    return 0


def one_instant(value: Any) -> int | None:
    """One timestamp cell as nanoseconds since the epoch (UTC), ``None`` when empty.

    Naive values are UTC, as :func:`timestamp_column` reads them. Raises :class:`AskPandas` for
    anything else (other spellings, odd types, impossible dates), so that
    :meth:`RequestSchema.parse` decides and words it exactly as for a batch.
    """
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return iso_instant(value)
    if not isinstance(value, datetime):
        raise AskPandas
    if value.year not in _NS_YEARS:
        raise AskPandas
    if isinstance(value, pd.Timestamp):
        return int(value.value)
    epoch = _EPOCH_NAIVE if value.utcoffset() is None else _EPOCH_UTC
    return (value - epoch) // _MICROSECOND * 1000


def iso_instant(text: str) -> int:
    """Nanoseconds since the epoch (UTC) of plain ISO 8601 text (naive = UTC)."""
    match = _PLAIN_ISO.fullmatch(text)
    if match is None:
        raise AskPandas
    fraction, zone = match.group(7, 8)
    if zone and zone != "Z" and int(zone[4:6]) > 59:
        raise AskPandas
    nanoseconds = 0
    if fraction and len(fraction) > 6:  # datetime holds microseconds: keep the rest apart
        nanoseconds = int(fraction[6:].ljust(3, "0"))
        text = text[: match.start(7) + 6] + text[match.end(7) :]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # no such date, time or offset: pandas words it
        raise AskPandas from None
    if moment.year not in _NS_YEARS:
        raise AskPandas
    epoch = _EPOCH_NAIVE if moment.tzinfo is None else _EPOCH_UTC
    return (moment - epoch) // _MICROSECOND * 1000 + nanoseconds


def timestamp_cell(value: Any) -> bool:
    """Whether a cell may be a timestamp: text, a datetime, or empty."""
    return isinstance(value, str | datetime | np.datetime64) or is_missing(value)


def timestamp_column(frame: pd.DataFrame, column: str, allow_missing: bool) -> pd.Series:
    """A column of timestamps as UTC instants (naive = UTC)."""
    raw = frame[column]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        readable = raw.map(timestamp_cell).to_numpy(dtype=bool)
        if not readable.all():
            row = first_row(frame, ~readable)
            raise ScoringInputError(
                f"row {echo(row)}, {column}: expected a timestamp, got {echo(raw.loc[row])}"
            )
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        unparsed = parsed.isna().to_numpy() & ~raw.isna().to_numpy()
        if unparsed.any():
            row = first_row(frame, unparsed)
            raise ScoringInputError(
                f"row {echo(row)}, {column}: cannot parse timestamp {echo(raw.loc[row])}"
            )
    if not allow_missing and parsed.isna().any():
        row = first_row(frame, parsed.isna().to_numpy())
        raise ScoringInputError(f"row {echo(row)}, {column}: missing timestamp")
    return parsed


def day_parts(moments: pd.Series | pd.Timestamp) -> tuple[IntArray, IntArray]:
    """(whole days since the epoch, nanoseconds into that day) of UTC times, in any unit."""
    index = pd.DatetimeIndex(moments if isinstance(moments, pd.Series) else [moments])
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[index.unit]
    days, rest = np.divmod(index.asi8, 86_400 * per_second)
    return days, rest * (10**9 // per_second)


def whole_days(later: pd.Series | pd.Timestamp, earlier: pd.Series) -> np.ndarray:
    """Whole days from each ``earlier`` to ``later``, floored (NaN where ``earlier`` is empty).

    Counted in days and nanoseconds apart, as :meth:`RequestSchema.parse_one` counts: the
    difference of two nanosecond times from 1678 and 2261 overflows int64 (292 years).
    """
    later_days, later_ns = day_parts(later)
    earlier_days, earlier_ns = day_parts(earlier)
    whole = later_days - earlier_days - (later_ns < earlier_ns)
    return np.where(earlier.isna().to_numpy(), np.nan, whole.astype(np.float64))


def local_weekdays(raw: pd.Series, utc: pd.Series) -> IntArray:
    """Weekday (Monday 0) of each decision time on the wall clock of its own offset.

    A tz-aware column keeps its zone, a naive one is UTC; text and datetimes carry their own
    offsets, row by row (one customer's Sunday evening in New York is not Monday).
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.day_of_week.to_numpy(dtype=np.int64)
    if pd.api.types.infer_dtype(raw, skipna=False) == "string":  # distinct text, few zones
        codes, uniques = pd.factorize(raw)
        offsets = np.array([offset_ns(v) for v in uniques], dtype=np.int64)[codes]
    else:  # equal instants in different zones are equal datetimes: no factorising
        offsets = raw.map(offset_ns).to_numpy(dtype=np.int64)
    if not offsets.any():
        return utc.dt.day_of_week.to_numpy(dtype=np.int64)
    shift = pd.to_timedelta(offsets, unit="ns").as_unit(utc.dt.unit)  # whole minutes: exact
    return (utc + shift.to_numpy()).dt.day_of_week.to_numpy(dtype=np.int64)


def timestamp_or_now(value: datetime | None) -> tuple[pd.Timestamp, int]:
    """The call's decision time in UTC, and its weekday on its own wall clock (naive = UTC)."""
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:  # the usual case
        utc = value.tz_convert("UTC") if str(value.tzinfo) != "UTC" else value
        return utc, value.day_of_week
    try:
        stamp = pd.Timestamp(value if value is not None else datetime.now(UTC))
        if stamp is pd.NaT:
            raise ValueError("NaT")
        utc = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    except Exception:
        raise ScoringInputError(
            f"as_of: expected a timestamp for the decision time, got {echo(value)}"
        ) from None
    return utc, stamp.day_of_week
