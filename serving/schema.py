"""The live-scoring input: one row per customer, validated column by column, vectorised.

Fields (``<channel>`` and ``<cap>`` come from the scenario); nothing else is accepted:

=======================  ===========================================================  =========
field                    meaning                                                      required
=======================  ===========================================================  =========
``customer_id``          a non-empty string or a 64-bit integer (not a float, bool    yes
                         or bytes); integers stay integers; unique within a batch
``persona``              persona name                                                 yes
``stage``                journey-stage name                                           yes
``pressure``             contact-pressure level, 0 .. capacity (the leaky bucket)     yes
``discount_habit``       true if the customer buys mostly on discount                 yes
``opted_out``            true if the customer opted out of marketing                  yes
``last_contact_<ch>``    time of the last contact on each capped channel (empty =     one form
                         never), every one of them; or ``days_since_<cap>``, whole
                         days since the last contact under each cap rule (>= 1),
                         every one of them. Part of a form is refused; when both
                         forms are complete the timestamps decide (the counts must
                         still be valid)
``consent_<channel>``    per-channel consent; default: the persona's consent          no
``as_of``                the decision time (default: the scoring call's ``as_of``,    no
                         else now)
``day``                  day of the planning horizon, default 0 (receding horizon)    no
=======================  ===========================================================  =========

Time: a timestamp (text in ISO 8601, a ``datetime`` or a pandas timestamp, in a row's ``as_of``
or the call's ``as_of``) is read in its own offset: quiet days follow the weekday of its local
wall time (``2026-11-29T19:00:00-05:00`` is a Sunday, although it is Monday in UTC); a tz-aware
pandas column keeps its zone; naive text, naive datetimes and ``Z`` are UTC. Elapsed days
(``last_contact_*`` to the decision time) are counted between the UTC instants. The JSON Schema
(:meth:`RequestSchema.json_schema`) promises RFC 3339 text of the years 1678-2261, which every
entry point reads alike in any batch; it admits nothing the validator refuses but a contact
after the decision time and an integer id written as a float (``7.0``), which JSON Schema
cannot state.

Every problem raises :class:`ScoringInputError` naming the row, the field and the problem;
nothing is filled in silently and no other exception leaves validation. Unknown fields (a
misspelt ``Consent_email``, a pandas-renamed duplicate ``opted_out.1``) are refused with the
closest known names, as are duplicate columns and customers given twice in one batch. Values
echoed in messages are cut to about 80 characters. The row is the frame's index label (0 for the
first row of a default index); ``nba score`` numbers a file's data rows from 1, the header
excluded. Where a file's column turned to text because of one bad cell, the message names that
cell, not the first row that holds text.
"""

from __future__ import annotations

import difflib
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
OPTIONAL_SCALARS = ("day", "as_of")
SHOWN_CHARS = 80  # values echoed in messages are cut to this many characters


class ScoringInputError(NBAValidationError):
    """A request that cannot be scored; the message names the row, the field and the problem."""


@dataclass
class ParsedRequest:
    """Validated request rows as the arrays the feature builder and rules consume."""

    customer_id: np.ndarray
    state: CustomerState
    consent: BoolArray  # (N, C)
    day: IntArray
    weekday: IntArray  # in each decision time's own offset (quiet days)
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
    weekday: int  # in the decision time's own offset
    as_of: pd.Timestamp  # UTC


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
        #: every field a request may carry, in the order the JSON Schema lists them
        self.fields: list[str] = [
            *REQUIRED,
            *OPTIONAL_SCALARS,
            *self.consent_columns,
            *self.last_contact_columns,
            *self.days_columns,
        ]
        self._fields = frozenset(self.fields)
        self._normalised = {_normalised(name): name for name in self.fields}
        self._categories = {
            "persona": pd.Index(sc.persona_names),
            "stage": pd.Index(sc.stage_names),
        }
        self._persona_index = {name: i for i, name in enumerate(sc.persona_names)}
        self._stage_index = {name: i for i, name in enumerate(sc.stage_names)}
        # plain-Python copies for the single-customer path
        self._plain_fields = (
            frozenset(REQUIRED)
            | frozenset(self.days_columns)
            | frozenset(self.last_contact_columns)
            | frozenset(OPTIONAL_SCALARS)
        )
        self._consent_set = frozenset(self.consent_columns)
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
        """The request as JSON Schema 2020-12: never looser than the validator, so that every
        request it admits is scored (but for what it cannot state: see the module doc)."""
        sc = self.arrays.scenario
        zone = (
            "Read in its own offset: quiet days follow the weekday of its local wall time; "
            "naive or Z is UTC."
        )
        timestamp = timestamp_schema(
            "Last contact on the channel (null = never), not after the decision time. Give "
            f"every last_contact_* field or none; elapsed days count between UTC instants. {zone}",
            nullable=True,
        )
        properties: dict[str, Any] = {
            "customer_id": {
                "type": ["string", "integer"],
                "minLength": 1,
                "minimum": _ID_RANGE[0],
                "maximum": _ID_RANGE[1],
                "description": "A non-empty string or a 64-bit integer (7, not 7.0); unique "
                "within a batch.",
            },
            "persona": {"type": "string", "enum": sc.persona_names},
            "stage": {"type": "string", "enum": sc.stage_names},
            "pressure": {
                "type": "integer",
                "minimum": 0,
                "maximum": sc.contact_rules.pressure_capacity,
            },
            "discount_habit": {"type": "boolean"},
            "opted_out": {"type": "boolean"},
            "as_of": timestamp_schema(
                "The decision time (default: the call's as_of, else now). " + zone
            ),
            "day": {"type": "integer", "minimum": 0, "maximum": sc.horizon_days - 1},
        }
        for column in self.last_contact_columns:
            properties[column] = dict(timestamp)
        for column, cap in zip(self.days_columns, self.caps, strict=True):
            properties[column] = {
                "type": "integer",
                "minimum": 1,
                "maximum": _MAX_WHOLE,
                "description": f"Whole days since the last contact on {cap.channels}. Give "
                "every days_since_* field or none; with every last_contact_* field too, the "
                "timestamps decide.",
            }
        for column in self.consent_columns:
            properties[column] = {
                "type": "boolean",
                "description": "Consent on the channel (default: the persona's consent).",
            }
        history = [{"required": self.last_contact_columns}, {"required": self.days_columns}]
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"nba scoring request ({sc.name})",
            "type": "object",
            "properties": {name: properties[name] for name in self.fields},
            "required": list(REQUIRED),
            "additionalProperties": False,
            "anyOf": history if self.caps else [{}],
            "dependentRequired": {
                **{c: self.last_contact_columns for c in self.last_contact_columns},
                **{c: self.days_columns for c in self.days_columns},
            },
        }

    # ------------------------------------------------------------------ batches
    def parse(self, frame: pd.DataFrame, as_of: datetime | None = None) -> ParsedRequest:
        """Validate a batch; every problem raises :class:`ScoringInputError`, nothing else."""
        try:
            return self._parse(frame, as_of)
        except ScoringInputError:
            raise
        except Exception as exc:  # exotic cells or labels the converters choke on: name them
            try:
                _raise_for_non_scalar(frame)
            except ScoringInputError:
                raise
            except Exception:
                pass  # the generic message below says what we know
            raise ScoringInputError(
                f"input: cannot read the request ({type(exc).__name__}: {_cut(str(exc))})"
            ) from None

    def _parse(self, frame: pd.DataFrame, as_of: datetime | None) -> ParsedRequest:
        if not isinstance(frame, pd.DataFrame):
            raise ScoringInputError(
                f"input: expected a pandas DataFrame, got {type(frame).__name__}"
            )
        self._check_columns(frame.columns)
        if len(frame) == 0:
            raise ScoringInputError("input: no rows to score")
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise ScoringInputError(f"input: missing field(s) {missing}")
        sc = self.arrays.scenario
        n = len(frame)
        customer_id = _identifiers(frame)
        persona = _categories(frame, "persona", self._categories["persona"])
        stage = _categories(frame, "stage", self._categories["stage"])
        pressure = _integers(frame, "pressure", 0, sc.contact_rules.pressure_capacity)
        habit = _booleans(frame, "discount_habit")
        opted_out = _booleans(frame, "opted_out")
        day = (
            _integers(frame, "day", 0, sc.horizon_days - 1)
            if "day" in frame.columns
            else np.zeros(n, dtype=np.int64)
        )
        decision_time: pd.Series | pd.Timestamp
        if "as_of" in frame.columns:
            decision_time = _timestamps(frame, "as_of", allow_missing=False)
            weekday = _local_weekdays(frame["as_of"], decision_time)
        else:
            decision_time, local_weekday = _timestamp_or_now(as_of)
            weekday = np.full(n, local_weekday, dtype=np.int64)
        days_since = self._days_since(frame, decision_time)
        consent = self.arrays.persona_consent[persona].copy()
        for c, column in enumerate(self.consent_columns):
            if column in frame.columns:
                consent[:, c] = _booleans(frame, column)
        consent &= ~(opted_out[:, None] & self.arrays.rules.requires_consent[None, :])
        _refuse_repeated_identifiers(frame, customer_id)
        state = CustomerState(
            persona=persona,
            stage=stage,
            pressure=pressure,
            days_since=days_since,
            habit=habit,
            opted_out=opted_out,
        )
        return ParsedRequest(customer_id, state, consent, day, weekday, decision_time)

    def _check_columns(self, columns: pd.Index) -> None:
        """One plain name per column, each a field of the schema, each once."""
        if isinstance(columns, pd.MultiIndex):
            raise ScoringInputError(
                f"input: expected one field name per column, got {columns.nlevels}-level "
                f"column labels such as {_shown(columns[0]) if len(columns) else '()'}"
            )
        repeated = columns[columns.duplicated()]
        if len(repeated):
            name = repeated[0]
            count = sum(1 for c in columns if c is name or c == name)
            raise ScoringInputError(
                f"input: field {_shown(name)} appears {count} times; give each field once"
            )
        unknown = [c for c in columns if not (isinstance(c, str) and c in self._fields)]
        if unknown:
            raise self._unknown_fields(unknown)

    def _unknown_fields(self, unknown: list[Any]) -> ScoringInputError:
        """The error for fields the schema does not have, with the closest known names."""
        parts = []
        for name in unknown[:5]:
            if name is None or (isinstance(name, float) and name != name):
                parts.append("without a name (None or NaN)")  # pandas turns None into NaN
                continue
            close = self._closest(name)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            parts.append(_shown(name) + hint)
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        noun = "field" if len(unknown) == 1 else "fields"
        listed = ""
        if isinstance(unknown[0], str) and unknown[0].startswith(_NAMED_PREFIXES):
            prefix = next(p for p in _NAMED_PREFIXES if unknown[0].startswith(p))
            listed = f"; {prefix}* fields are {[f for f in self.fields if f.startswith(prefix)]}"
        return ScoringInputError(f"input: unknown {noun} {', '.join(parts)}{more}{listed}")

    def _closest(self, name: Any) -> list[str]:
        try:
            key = _normalised(name if isinstance(name, str) else str(name))[:100]
        except Exception:
            return []
        exact = self._normalised.get(key)
        if exact is not None:
            return [exact]
        near = difflib.get_close_matches(key, list(self._normalised), n=3, cutoff=0.6)
        return [self._normalised[k] for k in near]

    def _history_form(self, present: Any) -> bool:
        """Which form of contact history a request uses: True for timestamps, False for counts.

        ``present`` holds the request's field names. Part of a form is an error naming what is
        missing; with both forms complete the timestamps decide (the counts are still checked).
        """
        has_stamps = not self._last_contact_set.isdisjoint(present)
        has_days = not self._days_set.isdisjoint(present)
        if has_stamps and not self._last_contact_set <= present:
            missing = [c for c in self.last_contact_columns if c not in present]
            raise ScoringInputError(
                f"input: last_contact_* fields incomplete, missing {missing}; give every one "
                "(empty for never contacted)"
            )
        if has_days and not self._days_set <= present:
            missing = [c for c in self.days_columns if c not in present]
            raise ScoringInputError(
                f"input: days_since_* fields incomplete, missing {missing}; give every one"
            )
        if not (has_stamps or has_days):
            raise ScoringInputError(
                f"input: contact history needs {self.last_contact_columns} or {self.days_columns}"
            )
        return has_stamps

    def _days_since(self, frame: pd.DataFrame, decision_time: pd.Series | pd.Timestamp) -> IntArray:
        n = len(frame)
        windows = self.arrays.rules.cap_windows
        if not self.caps:
            return np.zeros((n, 0), dtype=np.int64)
        present = frozenset(c for c in frame.columns if isinstance(c, str))
        stamped = self._history_form(present)
        result = None
        if stamped:
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
                        f"row {_shown(row)}, {column}: {_shown(frame[column].loc[row])} is in "
                        f"the future (decision time {when})"
                    )
                last[channel] = stamps
            columns = []
            for cap, window in zip(self.caps, windows, strict=True):
                latest = last[cap.channels[0]]
                for channel in cap.channels[1:]:  # the latest contact, empty if none
                    other = last[channel]
                    latest = other.where(latest.isna() | (other > latest), latest)
                elapsed = _whole_days(decision_time, latest)
                days = np.where(np.isnan(elapsed), window, elapsed)
                columns.append(np.clip(days, 1, window).astype(np.int64))
            result = np.stack(columns, axis=1)
        if self._days_set <= present:
            counts = [
                np.minimum(_integers(frame, column, 1, None), window)
                for column, window in zip(self.days_columns, windows, strict=True)
            ]
            if result is None:
                result = np.stack(counts, axis=1)
        assert result is not None
        return result

    # ------------------------------------------------------------------ one customer
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
        spellings pandas reads, odd types, a contact in the future, anything unexpected), which
        :meth:`parse` then reads or words the error for, so both paths accept and refuse the
        same requests.
        """
        try:
            return self._parse_one(row, as_of)
        except ScoringInputError:
            raise
        except Exception:  # something odd: the frame parser words it (or reads it)
            return None

    def _parse_one(self, row: Mapping[str, Any], as_of: datetime | None) -> OneCustomer | None:
        if not isinstance(row, Mapping):
            raise ScoringInputError(f"input: expected a mapping, got {type(row).__name__}")
        unfamiliar = row.keys() - self._plain_fields
        if unfamiliar and not unfamiliar <= self._consent_set:
            raise self._unknown_fields([k for k in row if k not in self._fields])
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise ScoringInputError(f"input: missing field(s) {missing}")
        customer_id = row["customer_id"]
        if type(customer_id) is not str or not customer_id:
            problem = _identifier_problem(customer_id)
            if problem:
                raise ScoringInputError(f"row 0, customer_id: {problem}")
        persona = _one_category(row, "persona", self._persona_index)
        stage = _one_category(row, "stage", self._stage_index)
        pressure = _one_integer(row, "pressure", 0, self._pressure_capacity)
        habit = _one_boolean(row, "discount_habit")
        opted_out = _one_boolean(row, "opted_out")
        day = _one_integer(row, "day", 0, self._last_day) if "day" in row else 0
        try:
            if "as_of" in row:  # the row's own decision time wins, as in :meth:`parse`
                moment = _one_moment(row["as_of"])
                if moment is None:
                    raise _AskPandas  # pandas words "missing timestamp"
                now, offset = moment
                when = pd.Timestamp(now, tz="UTC")
                weekday = ((now + offset) // _DAY_NS + 3) % 7  # 1970-01-01 was a Thursday
            else:
                when, weekday = _timestamp_or_now(as_of)
                now = when.value
            days = self._one_days_since(row, now)
        except _AskPandas:
            return None
        consent = self._default_consent[persona][opted_out]
        default_consent = True
        if unfamiliar:
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
            default_consent, day, weekday, when,
        )  # fmt: skip

    def _one_days_since(self, row: Mapping[str, Any], now: int) -> tuple[int, ...]:
        """Days since the last contact per cap for one row, as :meth:`_days_since` computes.

        ``now`` is the decision time in nanoseconds since the epoch (UTC). Whole days elapsed,
        floored, never contacted = the window, clipped to [1, window].
        """
        if not self.caps:
            return ()
        fields = row.keys()
        if fields >= self._last_contact_set:  # every timestamp (the usual case: no set maths)
            if not self._days_set.isdisjoint(fields):
                self._history_form(frozenset(fields))
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
            if fields >= self._days_set:  # both forms: the counts must be valid too
                for column in self.days_columns:
                    _one_integer(row, column, 1, None)
            return tuple(days)
        if fields >= self._days_set and self._last_contact_set.isdisjoint(fields):
            return tuple(
                [
                    min(_one_integer(row, column, 1, None), window)
                    for column, window in zip(self.days_columns, self._windows, strict=True)
                ]
            )
        self._history_form(frozenset(fields))
        raise AssertionError("unreachable: _history_form refuses every other shape")

    def parse_mapping(self, row: Mapping[str, Any], as_of: datetime | None = None) -> ParsedRequest:
        """One customer given as a mapping, validated into the arrays :meth:`parse` returns."""
        one = self.parse_one(row, as_of=as_of)
        if one is None:
            try:
                frame = pd.DataFrame([dict(row)])
            except Exception as exc:
                raise ScoringInputError(
                    f"input: cannot read the request ({type(exc).__name__}: {_cut(str(exc))})"
                ) from None
            return self.parse(frame, as_of=as_of)
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


_MAX_WHOLE = 10**9  # beyond any count, day or level a request can mean


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
_DAY_NS = 86_400 * 10**9
_NS_YEARS = range(1678, 2262)  # what nanosecond timestamps (pandas' default) can hold
_ID_RANGE = (-(2**63), 2**63 - 1)  # integer ids: what an int64 column holds

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


class _AskPandas(Exception):
    """A timestamp only the frame path can read or word the error for (single path only)."""


def _normalised(name: str) -> str:
    """A field name compared for suggestions: case, separators and punctuation ignored."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _shown(value: Any) -> str:
    """A value as the user wrote it (numpy scalars unwrapped), cut to about 80 characters."""
    try:
        if isinstance(value, np.datetime64 | np.timedelta64 | timedelta):
            value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
        elif isinstance(value, np.generic):
            value = value.item()
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return _cut(text)


def _is_missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA: a scalar that stands for nothing."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, float | np.floating):
        return bool(value != value)
    return isinstance(value, np.datetime64 | np.timedelta64) and bool(np.isnat(value))


def _is_integer(value: Any) -> bool:
    """Python or numpy integers; not booleans, nor numpy timedeltas (numpy integers too)."""
    if isinstance(value, int):
        return not isinstance(value, bool)
    return isinstance(value, np.integer) and not isinstance(value, np.timedelta64)


def _identifier_problem(value: Any) -> str | None:
    """Why ``value`` cannot be a customer id (strings and integers only), or None."""
    if isinstance(value, str):
        return None if value else "missing or empty"
    if _is_integer(value):
        if _ID_RANGE[0] <= value <= _ID_RANGE[1]:
            return None
        low, high = _ID_RANGE
        return (
            f"{_shown(value)} is out of range; expected a string or an integer in [{low}, {high}]"
        )
    if _is_missing(value):
        return "missing or empty"
    return f"expected a string or an integer, got {_shown(value)}"


def _one_moment(value: Any) -> tuple[int, int] | None:
    """One timestamp cell as (nanoseconds since the epoch UTC, its offset in nanoseconds).

    ``None`` when empty. Naive values are UTC. Raises :class:`_AskPandas` as
    :func:`_one_instant` does.
    """
    if isinstance(value, str):
        match = _PLAIN_ISO.fullmatch(value)
        if match is None:
            raise _AskPandas
        return _iso_instant(value), _zone_ns(match.group(8))
    instant = _one_instant(value)
    if instant is None:
        return None
    offset = value.utcoffset()
    return instant, 0 if offset is None else offset // _MICROSECOND * 1000


def _zone_ns(zone: str | None) -> int:
    """Nanoseconds of a ``Z`` or ``+hh:mm`` suffix (none: UTC)."""
    if not zone or zone == "Z":
        return 0
    minutes = int(zone[1:3]) * 60 + int(zone[4:6])
    return (-1 if zone[0] == "-" else 1) * minutes * 60 * 10**9


def _offset_ns(value: Any) -> int:
    """The UTC offset a timestamp cell was written in (nanoseconds; naive and empty: UTC)."""
    if isinstance(value, datetime):
        offset = value.utcoffset()
        return 0 if offset is None else offset // _MICROSECOND * 1000
    if isinstance(value, str):
        match = _PLAIN_ISO.fullmatch(value)
        if match is not None:
            return _zone_ns(match.group(8))
        offset = pd.Timestamp(value).utcoffset()  # other spellings pandas' ISO parser read
        return 0 if offset is None else offset // _MICROSECOND * 1000
    return 0


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
            raise ScoringInputError(
                f"row {_shown(row)}, {_cut(str(column))}: expected a single value, got {shown}"
            )


def _one_category(row: Mapping[str, Any], column: str, index: dict[str, int]) -> int:
    value = row[column]
    code = index.get(value) if isinstance(value, str) else None
    if code is None:
        raise ScoringInputError(
            f"row 0, {column}: unknown value {_shown(value)}; expected one of {list(index)}"
        )
    return code


def _integer_problem(value: Any, low: int, high: int | None) -> str | None:
    """Why ``value`` is not a whole number in [low, high] (high None: up to 10**9), or None."""
    if isinstance(value, bool | np.bool_):
        return f"expected a whole number, got {_shown(value)}"
    if _is_integer(value):
        number = float(value)
    elif isinstance(value, float | np.floating):
        number = float(value)
        if not np.isfinite(number):
            what = "missing" if np.isnan(number) else "NaN or infinite"
            return f"expected a whole number, got {_shown(value)} ({what})"
        if number != round(number):
            return f"expected a whole number, got {_shown(value)} (fractional)"
    else:
        what = "missing" if _is_missing(value) else "not a number"
        return f"expected a whole number, got {_shown(value)} ({what})"
    ceiling = high if high is not None else _MAX_WHOLE
    if number < low or number > ceiling:
        problem = "negative" if number < 0 else "out of range"
        return f"{_shown(value)} is {problem}; expected [{low}, {ceiling}]"
    return None


def _one_integer(row: Mapping[str, Any], column: str, low: int, high: int | None) -> int:
    value = row[column]
    if type(value) is int and low <= value <= (high if high is not None else _MAX_WHOLE):
        return value  # the usual case, without the checks' float conversions
    problem = _integer_problem(value, low, high)
    if problem:
        raise ScoringInputError(f"row 0, {column}: {problem}")
    return int(value)


def _boolean(value: Any) -> bool | None:
    """A cell read as true or false (booleans, or the integers 0 and 1), None otherwise."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if _is_integer(value) and value in (0, 1):
        return bool(value)
    return None


def _one_boolean(row: Mapping[str, Any], column: str) -> bool:
    value = row[column]
    if value is True or value is False:
        return value
    read = _boolean(value)
    if read is None:
        raise ScoringInputError(f"row 0, {column}: expected true or false, got {_shown(value)}")
    return read


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
        bad = values.map(lambda v: _identifier_problem(v) is not None).to_numpy(dtype=bool)
    if bad.any():
        row = _first(frame, bad)
        problem = _identifier_problem(values.loc[row])
        raise ScoringInputError(f"row {_shown(row)}, customer_id: {problem}")
    return values.to_numpy()


def _refuse_repeated_identifiers(frame: pd.DataFrame, identifiers: np.ndarray) -> None:
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
            f"row {_shown(frame.index[second])}, customer_id: {_shown(identifiers[second])} "
            f"repeats row {_shown(frame.index[first])}; give each customer once per batch"
        )


def _categories(frame: pd.DataFrame, column: str, names: pd.Index) -> IntArray:
    values = frame[column]
    if values.dtype == object and pd.api.types.infer_dtype(values, skipna=False) != "string":
        keys = values.map(lambda v: v if isinstance(v, str) else None)  # no unhashable cells
    else:
        keys = values.astype(object)
    codes = names.get_indexer(keys)
    bad = np.asarray(codes) < 0
    if bad.any():
        row = _first(frame, bad)
        shown = _shown(values.loc[row])
        raise ScoringInputError(
            f"row {_shown(row)}, {column}: unknown value {shown}; expected one of {list(names)}"
        )
    return np.asarray(codes, dtype=np.int64)


def _integers(frame: pd.DataFrame, column: str, low: int, high: int | None) -> IntArray:
    raw = frame[column]
    dtype = raw.dtype
    numeric = (
        isinstance(dtype, np.dtype) and dtype.kind in "iuf"
    )  # plain numpy numbers: checked as arrays
    if not numeric:  # objects, text, booleans, extension types: cell by cell, as one customer
        problems = raw.map(lambda v: _integer_problem(v, low, high))
        bad = problems.notna().to_numpy()
        if bad.any():
            row = _first(frame, _telling(bad, raw, _whole_number_text))
            raise ScoringInputError(f"row {_shown(row)}, {column}: {problems.loc[row]}")
        return raw.map(int).to_numpy(dtype=np.int64)
    values = raw.to_numpy(dtype=np.float64)
    ceiling = high if high is not None else _MAX_WHOLE
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < low) | (values > ceiling)
    if bad.any():
        row = _first(frame, bad)
        raise ScoringInputError(
            f"row {_shown(row)}, {column}: {_integer_problem(raw.loc[row], low, high)}"
        )
    return values.astype(np.int64)


def _booleans(frame: pd.DataFrame, column: str) -> BoolArray:
    values = frame[column]
    if values.dtype == bool:
        return values.to_numpy()
    mapped = values.map(_boolean)
    bad = mapped.isna().to_numpy()
    if bad.any():
        row = _first(frame, _telling(bad, values, _boolean_text))
        raise ScoringInputError(
            f"row {_shown(row)}, {column}: expected true or false, got {_shown(values.loc[row])}"
        )
    return mapped.to_numpy(dtype=bool)


def _timestamp_cell(value: Any) -> bool:
    """Whether a cell may be a timestamp: text, a datetime, or empty."""
    return isinstance(value, str | datetime | np.datetime64) or _is_missing(value)


def _timestamps(frame: pd.DataFrame, column: str, allow_missing: bool) -> pd.Series:
    """A column of timestamps as UTC instants (naive = UTC)."""
    raw = frame[column]
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw.dt.tz_localize("UTC")
    else:
        readable = raw.map(_timestamp_cell).to_numpy(dtype=bool)
        if not readable.all():
            row = _first(frame, ~readable)
            raise ScoringInputError(
                f"row {_shown(row)}, {column}: expected a timestamp, got {_shown(raw.loc[row])}"
            )
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        unparsed = parsed.isna().to_numpy() & ~raw.isna().to_numpy()
        if unparsed.any():
            row = _first(frame, unparsed)
            raise ScoringInputError(
                f"row {_shown(row)}, {column}: cannot parse timestamp {_shown(raw.loc[row])}"
            )
    if not allow_missing and parsed.isna().any():
        row = _first(frame, parsed.isna().to_numpy())
        raise ScoringInputError(f"row {_shown(row)}, {column}: missing timestamp")
    return parsed


def _day_parts(moments: pd.Series | pd.Timestamp) -> tuple[IntArray, IntArray]:
    """(whole days since the epoch, nanoseconds into that day) of UTC times, in any unit."""
    index = pd.DatetimeIndex(moments if isinstance(moments, pd.Series) else [moments])
    per_second = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[index.unit]
    days, rest = np.divmod(index.asi8, 86_400 * per_second)
    return days, rest * (10**9 // per_second)


def _whole_days(later: pd.Series | pd.Timestamp, earlier: pd.Series) -> np.ndarray:
    """Whole days from each ``earlier`` to ``later``, floored (NaN where ``earlier`` is empty).

    Counted in days and nanoseconds apart, as :meth:`RequestSchema.parse_one` counts: the
    difference of two nanosecond times from 1678 and 2261 overflows int64 (292 years).
    """
    later_days, later_ns = _day_parts(later)
    earlier_days, earlier_ns = _day_parts(earlier)
    whole = later_days - earlier_days - (later_ns < earlier_ns)
    return np.where(earlier.isna().to_numpy(), np.nan, whole.astype(np.float64))


def _local_weekdays(raw: pd.Series, utc: pd.Series) -> IntArray:
    """Weekday (Monday 0) of each decision time on the wall clock of its own offset.

    A tz-aware column keeps its zone, a naive one is UTC; text and datetimes carry their own
    offsets, row by row (one customer's Sunday evening in New York is not Monday).
    """
    if isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.day_of_week.to_numpy(dtype=np.int64)
    if pd.api.types.infer_dtype(raw, skipna=False) == "string":  # distinct text, few zones
        codes, uniques = pd.factorize(raw)
        offsets = np.array([_offset_ns(v) for v in uniques], dtype=np.int64)[codes]
    else:  # equal instants in different zones are equal datetimes: no factorising
        offsets = raw.map(_offset_ns).to_numpy(dtype=np.int64)
    if not offsets.any():
        return utc.dt.day_of_week.to_numpy(dtype=np.int64)
    shift = pd.to_timedelta(offsets, unit="ns").as_unit(utc.dt.unit)  # whole minutes: exact
    return (utc + shift.to_numpy()).dt.day_of_week.to_numpy(dtype=np.int64)


def _timestamp_or_now(value: datetime | None) -> tuple[pd.Timestamp, int]:
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
            f"as_of: expected a timestamp for the decision time, got {_shown(value)}"
        ) from None
    return utc, stamp.day_of_week
