"""The live-scoring input: one row per customer, validated column by column, vectorised.

Fields (``<channel>`` and ``<cap>`` come from the scenario):

=======================  ===========================================================  =========
field                    meaning                                                      required
=======================  ===========================================================  =========
``customer_id``          string or integer identifier                                 yes
``persona``              persona name                                                 yes
``stage``                journey-stage name                                           yes
``pressure``             contact-pressure level, 0 .. capacity (the leaky bucket)     yes
``discount_habit``       true if the customer buys mostly on discount                 yes
``opted_out``            true if the customer opted out of marketing                  yes
``last_contact_<ch>``    time of the last contact on each capped channel (empty =     one form
                         never); or ``days_since_<cap>``, whole days since the last
                         contact under each cap rule (>= 1)
``consent_<channel>``    per-channel consent; default: the persona's consent          no
``as_of``                the decision time (default: the scoring call's ``as_of``)    no
``day``                  day of the planning horizon, default 0 (receding horizon)    no
=======================  ===========================================================  =========

Every problem raises :class:`ScoringInputError` naming the row, the field and the problem;
nothing is filled in silently. The row is the frame's index label (0 for the first row of a
default index); ``nba score`` numbers a file's data rows from 1, the header excluded. Where a
file's column turned to text because of one bad cell, the message names that cell, not the first
row that holds text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.state import CustomerState
from nba.types import BoolArray, IntArray

_NAMED_PREFIXES = ("consent_", "last_contact_", "days_since_")
REQUIRED = ("customer_id", "persona", "stage", "pressure", "discount_habit", "opted_out")


class ScoringInputError(NBAValidationError):
    """A request that cannot be scored; the message names the row, the field and the problem."""


@dataclass
class ParsedRequest:
    """Validated request rows as the arrays the feature builder and rules consume."""

    customer_id: np.ndarray
    state: CustomerState
    consent: BoolArray  # (N, C)
    day: IntArray
    weekday: IntArray
    as_of: pd.Series | pd.Timestamp  # per-row UTC timestamps, or one for the whole batch


class OneCustomer(NamedTuple):
    """One validated customer as plain Python values (the single-customer latency path)."""

    customer_id: Any
    persona: int
    stage: int
    pressure: int
    habit: bool
    opted_out: bool
    days_since: tuple[int, ...]
    consent: tuple[bool, ...]
    default_consent: bool  # the persona's consent (after the opt-out): decision tables apply
    day: int
    weekday: int
    as_of: pd.Timestamp


class RequestSchema:
    """Validation and JSON Schema of scoring requests for one scenario."""

    def __init__(self, arrays: ScenarioArrays) -> None:
        self.arrays = arrays
        sc = arrays.scenario
        self.caps = sc.contact_rules.caps
        self.capped_channels = sorted({c for cap in self.caps for c in cap.channels})
        self.days_columns = [f"days_since_{cap.name}" for cap in self.caps]
        self.last_contact_columns = [f"last_contact_{c}" for c in self.capped_channels]
        self.consent_columns = [f"consent_{c}" for c in sc.channel_names]
        self._named_columns = frozenset(
            [*self.consent_columns, *self.last_contact_columns, *self.days_columns]
        )
        self._persona_index = {name: i for i, name in enumerate(sc.persona_names)}
        self._stage_index = {name: i for i, name in enumerate(sc.stage_names)}
        # plain-Python copies for the single-customer path
        self._plain_fields = (
            frozenset(REQUIRED)
            | frozenset(self.days_columns)
            | frozenset(self.last_contact_columns)
            | {"day", "as_of"}
        )
        self._cap_channels = [tuple(cap.channels) for cap in self.caps]
        self._last_contact_set = frozenset(self.last_contact_columns)
        self._days_set = frozenset(self.days_columns)
        self._pressure_capacity = sc.contact_rules.pressure_capacity
        self._last_day = sc.horizon_days - 1
        self._windows = [int(w) for w in arrays.rules.cap_windows]
        self._requires_consent = arrays.rules.requires_consent.tolist()
        self._persona_consent = arrays.persona_consent.tolist()
        self._default_consent = [
            (tuple(granted), self._revoke(granted)) for granted in self._persona_consent
        ]

    def json_schema(self) -> dict[str, Any]:
        sc = self.arrays.scenario
        timestamp = {"type": ["string", "null"], "format": "date-time"}
        properties: dict[str, Any] = {
            "customer_id": {"type": ["string", "integer"], "minLength": 1},
            "persona": {"type": "string", "enum": sc.persona_names},
            "stage": {"type": "string", "enum": sc.stage_names},
            "pressure": {
                "type": "integer",
                "minimum": 0,
                "maximum": sc.contact_rules.pressure_capacity,
            },
            "discount_habit": {"type": "boolean"},
            "opted_out": {"type": "boolean"},
            "as_of": {"type": "string", "format": "date-time"},
            "day": {"type": "integer", "minimum": 0, "maximum": sc.horizon_days - 1},
        }
        for column in self.last_contact_columns:
            properties[column] = timestamp
        for column, cap in zip(self.days_columns, self.caps, strict=True):
            properties[column] = {
                "type": "integer",
                "minimum": 1,
                "description": f"days since the last contact on {cap.channels}",
            }
        for column in self.consent_columns:
            properties[column] = {"type": "boolean"}
        history = [{"required": self.last_contact_columns}, {"required": self.days_columns}]
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"nba scoring request ({sc.name})",
            "type": "object",
            "properties": properties,
            "required": list(REQUIRED),
            "anyOf": history if self.caps else [{}],
        }

    def parse(self, frame: pd.DataFrame, as_of: datetime | None = None) -> ParsedRequest:
        """Validate a batch; every problem raises :class:`ScoringInputError`."""
        try:
            return self._parse(frame, as_of)
        except ScoringInputError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            # the fast converters choke on exotic cells (lists, dicts, arrays): find and name it
            _raise_for_non_scalar(frame)
            raise ScoringInputError(f"input: cannot read the request ({exc})") from None

    def _parse(self, frame: pd.DataFrame, as_of: datetime | None) -> ParsedRequest:
        if not isinstance(frame, pd.DataFrame):
            raise ScoringInputError(
                f"input: expected a pandas DataFrame, got {type(frame).__name__}"
            )
        if frame.empty:
            raise ScoringInputError("input: no rows to score")
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ScoringInputError(f"input: missing field(s) {missing}")
        self._check_named_columns(frame.columns)
        sc = self.arrays.scenario
        n = len(frame)
        customer_id = _identifiers(frame)
        persona = _categories(frame, "persona", sc.persona_names)
        stage = _categories(frame, "stage", sc.stage_names)
        pressure = _integers(frame, "pressure", 0, sc.contact_rules.pressure_capacity)
        habit = _booleans(frame, "discount_habit")
        opted_out = _booleans(frame, "opted_out")
        day = (
            _integers(frame, "day", 0, sc.horizon_days - 1)
            if "day" in frame.columns
            else np.zeros(n, dtype=np.int64)
        )
        decision_time: pd.Series | pd.Timestamp = (
            _timestamps(frame, "as_of", allow_missing=False)
            if "as_of" in frame.columns
            else _timestamp_or_now(as_of)
        )
        days_since = self._days_since(frame, decision_time)
        consent = self.arrays.persona_consent[persona].copy()
        for c, column in enumerate(self.consent_columns):
            if column in frame.columns:
                consent[:, c] = _booleans(frame, column)
        consent &= ~(opted_out[:, None] & self.arrays.rules.requires_consent[None, :])
        state = CustomerState(
            persona=persona,
            stage=stage,
            pressure=pressure,
            days_since=days_since,
            habit=habit,
            opted_out=opted_out,
        )
        if isinstance(decision_time, pd.Series):
            weekday = decision_time.dt.day_of_week.to_numpy(dtype=np.int64)
        else:
            weekday = np.full(n, decision_time.day_of_week, dtype=np.int64)
        return ParsedRequest(customer_id, state, consent, day, weekday, decision_time)

    def _revoke(self, consent: list[bool]) -> tuple[bool, ...]:
        """Consent left after a marketing opt-out."""
        return tuple(g and not r for g, r in zip(consent, self._requires_consent, strict=True))

    def parse_one(
        self, row: Mapping[str, Any], as_of: datetime | None = None
    ) -> OneCustomer | None:
        """One customer as plain Python values: the checks of :meth:`parse`, without arrays.

        Scoring one customer is latency-bound; building a DataFrame (or even one-row arrays)
        would cost more than the whole decision. Messages match :meth:`parse` (the tests hold
        the two paths together). Timestamps (``as_of``, ``last_contact_*``) are read here when
        they are plain ISO 8601 text, datetimes or empty; ``None`` for anything else (other
        spellings pandas reads, odd types, a contact in the future), which :meth:`parse` then
        reads or words the error for, so both paths accept and refuse the same requests.
        """
        if not isinstance(row, Mapping):
            raise ScoringInputError(f"input: expected a mapping, got {type(row).__name__}")
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise ScoringInputError(f"input: missing field(s) {missing}")
        unfamiliar = row.keys() - self._plain_fields
        if unfamiliar:
            self._check_named_columns(unfamiliar)
        customer_id = row["customer_id"]
        if customer_id is None or customer_id == "" or _is_nan(customer_id):
            raise ScoringInputError("row 0, customer_id: missing or empty")
        persona = _one_category(row, "persona", self._persona_index)
        stage = _one_category(row, "stage", self._stage_index)
        pressure = _one_integer(row, "pressure", 0, self._pressure_capacity)
        habit = _one_boolean(row, "discount_habit")
        opted_out = _one_boolean(row, "opted_out")
        day = _one_integer(row, "day", 0, self._last_day) if "day" in row else 0
        try:
            if "as_of" in row:  # the row's own decision time wins, as in :meth:`parse`
                now = _one_instant(row["as_of"])
                if now is None:
                    raise _AskPandas  # pandas words "missing timestamp"
                when = pd.Timestamp(now, tz="UTC")
            else:
                when = _timestamp_or_now(as_of)
                now = when.value
            days = self._one_days_since(row, now)
        except _AskPandas:
            return None
        consent = self._default_consent[persona][opted_out]
        default_consent = True
        if not unfamiliar.isdisjoint(self.consent_columns):
            given = [
                _one_boolean(row, column) if column in row else granted
                for column, granted in zip(
                    self.consent_columns, self._persona_consent[persona], strict=True
                )
            ]
            given_consent = self._revoke(given) if opted_out else tuple(given)
            default_consent = given_consent == consent
            consent = given_consent
        return OneCustomer(
            customer_id, persona, stage, pressure, habit, opted_out, days, consent,
            default_consent, day, when.day_of_week, when,
        )  # fmt: skip

    def _one_days_since(self, row: Mapping[str, Any], now: int) -> tuple[int, ...]:
        """Days since the last contact per cap for one row, as :meth:`_days_since` computes.

        ``now`` is the decision time in nanoseconds since the epoch (UTC). Whole days elapsed,
        floored, never contacted = the window, clipped to [1, window]; the timestamp form wins
        when every ``last_contact_*`` field is present.
        """
        if not self.caps:
            return ()
        fields = row.keys()
        if fields >= self._last_contact_set:
            last: dict[str, int | None] = {}
            for channel, column in zip(
                self.capped_channels, self.last_contact_columns, strict=True
            ):
                instant = _one_instant(row[column])
                if instant is not None and instant > now:
                    raise _AskPandas  # in the future: pandas words the error
                last[channel] = instant
            days = []
            for channels, window in zip(self._cap_channels, self._windows, strict=True):
                seen = [last[c] for c in channels if last[c] is not None]
                elapsed = window if not seen else (now - max(seen)) // _DAY_NS
                days.append(min(max(elapsed, 1), window))
            return tuple(days)
        if fields >= self._days_set:
            return tuple(
                [
                    min(_one_integer(row, column, 1, None), window)
                    for column, window in zip(self.days_columns, self._windows, strict=True)
                ]
            )
        raise ScoringInputError(
            f"input: contact history needs {self.last_contact_columns} or {self.days_columns}"
        )

    def parse_mapping(self, row: Mapping[str, Any], as_of: datetime | None = None) -> ParsedRequest:
        """One customer given as a mapping, validated into the arrays :meth:`parse` returns."""
        one = self.parse_one(row, as_of=as_of)
        if one is None:
            return self.parse(pd.DataFrame([dict(row)]), as_of=as_of)
        state = CustomerState(
            persona=np.array([one.persona]),
            stage=np.array([one.stage]),
            pressure=np.array([one.pressure]),
            days_since=np.array([one.days_since], dtype=np.int64).reshape(1, len(one.days_since)),
            habit=np.array([one.habit]),
            opted_out=np.array([one.opted_out]),
        )
        return ParsedRequest(
            customer_id=np.array([one.customer_id], dtype=object),
            state=state,
            consent=np.array([one.consent], dtype=bool),
            day=np.array([one.day]),
            weekday=np.array([one.weekday]),
            as_of=one.as_of,
        )

    def _check_named_columns(self, columns: Any) -> None:
        """A field naming a channel or cap must name one the scenario has (no silent ignore)."""
        for column in columns:
            if (
                isinstance(column, str)
                and column.startswith(_NAMED_PREFIXES)
                and column not in self._named_columns
            ):
                prefix = next(p for p in _NAMED_PREFIXES if column.startswith(p))
                allowed = [c for c in self._named_columns if c.startswith(prefix)]
                raise ScoringInputError(
                    f"input: unknown field {column!r}; {prefix}* fields are {sorted(allowed)}"
                )

    def _days_since(self, frame: pd.DataFrame, decision_time: pd.Series | pd.Timestamp) -> IntArray:
        n = len(frame)
        windows = self.arrays.rules.cap_windows
        if not self.caps:
            return np.zeros((n, 0), dtype=np.int64)
        if all(c in frame.columns for c in self.last_contact_columns):
            last = {}
            for channel, column in zip(
                self.capped_channels, self.last_contact_columns, strict=True
            ):
                stamps = _timestamps(frame, column, allow_missing=True)
                late = (stamps > decision_time).to_numpy()
                if late.any():
                    row = frame.index[int(np.flatnonzero(late)[0])]
                    when = (
                        decision_time.loc[row]
                        if isinstance(decision_time, pd.Series)
                        else decision_time
                    )
                    raise ScoringInputError(
                        f"row {row!r}, {column}: {_shown(frame[column].loc[row])} is in the future "
                        f"(decision time {when})"
                    )
                last[channel] = stamps
            columns = []
            for cap, window in zip(self.caps, windows, strict=True):
                latest = pd.concat([last[c] for c in cap.channels], axis=1).max(axis=1)
                elapsed = (decision_time - latest).dt.total_seconds().to_numpy() / 86_400.0
                days = np.where(np.isnan(elapsed), window, np.floor(elapsed))
                columns.append(np.clip(days, 1, window).astype(np.int64))
            return np.stack(columns, axis=1)
        if all(c in frame.columns for c in self.days_columns):
            columns = [
                np.minimum(_integers(frame, column, 1, None), window)
                for column, window in zip(self.days_columns, windows, strict=True)
            ]
            return np.stack(columns, axis=1)
        raise ScoringInputError(
            f"input: contact history needs {self.last_contact_columns} or {self.days_columns}"
        )


_MAX_WHOLE = 10**9  # beyond any count, day or level a request can mean

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
_DAY_NS = 86_400 * 10**9
_NS_YEARS = range(1678, 2262)  # what nanosecond timestamps (pandas' default) can hold


class _AskPandas(Exception):
    """A timestamp only the frame path can read or word the error for (single path only)."""


def _one_instant(value: Any) -> int | None:
    """One timestamp cell as nanoseconds since the epoch (UTC), ``None`` when empty.

    Naive values are UTC, as :func:`_timestamps` reads them. Raises :class:`_AskPandas` for
    anything else (other spellings, odd types, impossible dates), so that
    :meth:`RequestSchema.parse` decides and words it exactly as for a batch.
    """
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return _iso_instant(value)
    if not isinstance(value, datetime):
        raise _AskPandas
    if value.year not in _NS_YEARS:
        raise _AskPandas
    if isinstance(value, pd.Timestamp):
        return int(value.value)
    epoch = _EPOCH_NAIVE if value.utcoffset() is None else _EPOCH_UTC
    return (value - epoch) // _MICROSECOND * 1000


def _iso_instant(text: str) -> int:
    """Nanoseconds since the epoch (UTC) of plain ISO 8601 text (naive = UTC)."""
    match = _PLAIN_ISO.fullmatch(text)
    if match is None:
        raise _AskPandas
    fraction, zone = match.group(7, 8)
    if zone and zone != "Z" and int(zone[4:6]) > 59:
        raise _AskPandas
    nanoseconds = 0
    if fraction and len(fraction) > 6:  # datetime holds microseconds: keep the rest apart
        nanoseconds = int(fraction[6:].ljust(3, "0"))
        text = text[: match.start(7) + 6] + text[match.end(7) :]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:  # no such date, time or offset: pandas words it
        raise _AskPandas from None
    if moment.year not in _NS_YEARS:
        raise _AskPandas
    epoch = _EPOCH_NAIVE if moment.tzinfo is None else _EPOCH_UTC
    return (moment - epoch) // _MICROSECOND * 1000 + nanoseconds


def _raise_for_non_scalar(frame: pd.DataFrame) -> None:
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        odd = frame[column].map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray))
        if odd.any():
            row = _first(frame, odd.to_numpy())
            shown = _shown(frame[column].loc[row])
            raise ScoringInputError(f"row {row!r}, {column}: expected a single value, got {shown}")


def _is_nan(value: Any) -> bool:
    return isinstance(value, float | np.floating) and bool(np.isnan(value))


def _one_category(row: Mapping[str, Any], column: str, index: dict[str, int]) -> int:
    value = row[column]
    code = index.get(value) if isinstance(value, str) else None
    if code is None:
        raise ScoringInputError(
            f"row 0, {column}: unknown value {_shown(value)}; expected one of {list(index)}"
        )
    return code


def _one_integer(row: Mapping[str, Any], column: str, low: int, high: int | None) -> int:
    value = row[column]
    if isinstance(value, bool | np.bool_):
        raise ScoringInputError(f"row 0, {column}: expected a whole number, got {_shown(value)}")
    if isinstance(value, int | np.integer):
        number = float(value)
    elif isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            what = "missing" if np.isnan(number) else "NaN or infinite"
            raise ScoringInputError(
                f"row 0, {column}: expected a whole number, got {_shown(value)} ({what})"
            )
        if number != round(number):
            raise ScoringInputError(
                f"row 0, {column}: expected a whole number, got {_shown(value)} (fractional)"
            )
    else:
        what = "missing" if value is None else "not a number"
        raise ScoringInputError(
            f"row 0, {column}: expected a whole number, got {_shown(value)} ({what})"
        )
    ceiling = high if high is not None else _MAX_WHOLE
    if number < low or number > ceiling:
        bounds = f"[{low}, {ceiling}]"
        problem = "negative" if number < 0 else "out of range"
        raise ScoringInputError(f"row 0, {column}: {_shown(value)} is {problem}; expected {bounds}")
    return int(number)


def _one_boolean(row: Mapping[str, Any], column: str) -> bool:
    value = row[column]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    raise ScoringInputError(f"row 0, {column}: expected true or false, got {_shown(value)}")


def _shown(value: Any) -> str:
    """A value as the user wrote it (numpy scalars unwrapped)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _first(frame: pd.DataFrame, bad: np.ndarray) -> Any:
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


def _identifiers(frame: pd.DataFrame) -> np.ndarray:
    """Identifiers as given (strings or integers); missing or empty ones are refused."""
    values = frame["customer_id"]
    bad = values.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(values.dtype):
        bad = bad | values.eq("").to_numpy()
    if bad.any():
        row = _first(frame, bad)
        raise ScoringInputError(f"row {row!r}, customer_id: missing or empty")
    return values.to_numpy()


def _categories(frame: pd.DataFrame, column: str, names: list[str]) -> IntArray:
    values = frame[column]
    codes = pd.Index(names).get_indexer(values.astype(object))
    bad = np.asarray(codes) < 0
    if bad.any():
        row = _first(frame, bad)
        shown = _shown(values.loc[row])
        raise ScoringInputError(
            f"row {row!r}, {column}: unknown value {shown}; expected one of {names}"
        )
    return np.asarray(codes, dtype=np.int64)


def _integers(frame: pd.DataFrame, column: str, low: int, high: int | None) -> IntArray:
    raw = frame[column]
    if raw.dtype == bool or (raw.dtype == object and raw.map(type).eq(bool).any()):
        row = _first(frame, raw.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy())
        raise ScoringInputError(
            f"row {row!r}, {column}: expected a whole number, got {_shown(raw.loc[row])}"
        )
    if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
        # numbers only: a string is the wrong type, even "3"
        texts = raw.map(lambda v: isinstance(v, str)).to_numpy()
        if texts.any():
            row = _first(frame, _telling(texts, raw, _whole_number_text))
            raise ScoringInputError(
                f"row {row!r}, {column}: expected a whole number, got {_shown(raw.loc[row])} "
                "(not a number)"
            )
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        row = frame.index[position]
        what = "NaN or infinite" if not np.isfinite(values[position]) else "fractional"
        if pd.isna(raw.loc[row]) or isinstance(raw.loc[row], str):
            what = "missing" if pd.isna(raw.loc[row]) else "not a number"
        raise ScoringInputError(
            f"row {row!r}, {column}: expected a whole number, got {_shown(raw.loc[row])} ({what})"
        )
    ceiling = high if high is not None else _MAX_WHOLE
    out_of_range = (values < low) | (values > ceiling)
    if out_of_range.any():
        position = int(np.flatnonzero(out_of_range)[0])
        row = frame.index[position]
        bounds = f"[{low}, {ceiling}]"
        problem = "negative" if values[position] < 0 else "out of range"
        raise ScoringInputError(
            f"row {row!r}, {column}: {_shown(raw.loc[row])} is {problem}; expected {bounds}"
        )
    return values.astype(np.int64)


def _booleans(frame: pd.DataFrame, column: str) -> BoolArray:
    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy()

    def convert(v: Any) -> Any:
        if isinstance(v, bool | np.bool_):
            return bool(v)
        if isinstance(v, int | np.integer) and v in (0, 1):
            return bool(v)
        return None

    mapped = values.map(convert)
    bad = mapped.isna().to_numpy()
    if bad.any():
        row = _first(frame, _telling(bad, values, _boolean_text))
        raise ScoringInputError(
            f"row {row!r}, {column}: expected true or false, got {_shown(values.loc[row])}"
        )
    return mapped.to_numpy(dtype=bool)


def _timestamps(frame: pd.DataFrame, column: str, allow_missing: bool) -> pd.Series:
    raw = frame[column]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        text_or_null = raw.map(
            lambda v: v is None or isinstance(v, str | datetime | pd.Timestamp) or pd.isna(v)
        )
        if not text_or_null.all():
            row = _first(frame, ~text_or_null.to_numpy())
            raise ScoringInputError(
                f"row {row!r}, {column}: expected a timestamp, got {_shown(raw.loc[row])}"
            )
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        unparsed = parsed.isna().to_numpy() & ~raw.isna().to_numpy()
        if unparsed.any():
            row = _first(frame, unparsed)
            raise ScoringInputError(
                f"row {row!r}, {column}: cannot parse timestamp {_shown(raw.loc[row])}"
            )
    if not allow_missing and parsed.isna().any():
        row = _first(frame, parsed.isna().to_numpy())
        raise ScoringInputError(f"row {row!r}, {column}: missing timestamp")
    return parsed


def _timestamp_or_now(value: datetime | None) -> pd.Timestamp:
    if isinstance(value, pd.Timestamp) and value.tzinfo is not None:
        return value.tz_convert("UTC") if str(value.tzinfo) != "UTC" else value
    stamp = pd.Timestamp(value if value is not None else datetime.now(UTC))
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
