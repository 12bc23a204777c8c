"""The live-scoring input: one row per customer, validated column by column, vectorised.

Fields (``<channel>``, ``<ch>`` and ``<cap>`` come from the scenario; the state's fields from
its declaration, :data:`nba.state.COMPONENTS`); nothing else is accepted:

{fields_table}

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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from nba.contact_rules import effective_consent
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.serving.request_cells import (
    SHOWN_CHARS,
    ScoringInputError,
    boolean_column,
    cut,
    echo,
    id_column,
    identifier_problem,
    integer_column,
    normalised,
    one_boolean,
    one_integer,
    raise_for_non_scalar,
    refuse_repeated_ids,
)
from nba.serving.request_fields import (
    component_fields,
    fields_table,
    is_contact_clock,
    one_state_reader,
)
from nba.serving.request_history import LAST_CONTACT, ContactHistory
from nba.serving.request_json_schema import request_json_schema
from nba.serving.request_time import (
    DAY_NS,
    TIMESTAMP_PATTERN,
    AskPandas,
    local_weekdays,
    one_moment,
    timestamp_column,
    timestamp_or_now,
    timestamp_schema,
)
from nba.state import COMPONENTS, CustomerState, StateComponent
from nba.types import BoolArray, IntArray

__all__ = [
    "OPTIONAL_SCALARS",
    "REQUIRED",
    "SHOWN_CHARS",
    "TIMESTAMP_PATTERN",
    "OneCustomer",
    "ParsedRequest",
    "RequestSchema",
    "ScoringInputError",
    "timestamp_schema",
]

__doc__ = (__doc__ or "").replace("{fields_table}", fields_table())  # from the declaration

CONSENT = "consent_"
#: the fields every request for today's state must carry (:attr:`RequestSchema.required`)
REQUIRED = (
    "customer_id",
    *(
        c.request.field
        for c in COMPONENTS
        if c.request is not None and c.request.required and c.columns is None
    ),
)
OPTIONAL_SCALARS = ("day", "as_of")
_STATE_NAMES = tuple(c.name for c in COMPONENTS)


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
    state: tuple[Any, ...]  # one value per state component, in declaration order
    consent: tuple[bool, ...]
    default_consent: bool  # the persona's consent (after the opt-out): decision tables apply
    day: int
    weekday: int  # in the decision time's own offset
    as_of: pd.Timestamp  # UTC
    names: tuple[str, ...] = _STATE_NAMES  # of the state's components, in order

    def __getattr__(self, name: str) -> Any:
        """A state component's value by name (``one.persona``, ``one.days_since``)."""
        names = tuple.__getitem__(self, 7)
        if name in names:
            return tuple.__getitem__(self, 1)[names.index(name)]
        raise AttributeError(f"OneCustomer has no field or state component {name!r}")


class RequestSchema:
    """Validation and JSON Schema of scoring requests for one scenario."""

    def __init__(
        self, arrays: ScenarioArrays, components: tuple[StateComponent, ...] = COMPONENTS
    ) -> None:
        self.arrays = arrays
        self.components = components
        sc = arrays.scenario
        clocks = [c for c in components if is_contact_clock(c)]
        if len(clocks) != 1:
            raise NBAValidationError(
                f"request schema: expected one contact clock among the state components "
                f"{[c.name for c in components]}, got {[c.name for c in clocks]}"
            )
        self.history = ContactHistory(arrays, clocks[0])
        #: how each other component is read, in declaration order
        self.component_fields = component_fields(arrays, components)
        self.caps = self.history.caps
        self.capped_channels = self.history.capped_channels
        self.days_columns = self.history.days_columns
        self.last_contact_columns = self.history.last_contact_columns
        self.consent_columns = [f"{CONSENT}{c}" for c in sc.channel_names]
        state_fields = [name for f in self.component_fields for name in f.names]
        #: fields every request must carry
        self.required: tuple[str, ...] = (
            "customer_id",
            *(name for f in self.component_fields if f.required for name in f.names),
        )
        #: every field a request may carry, in the order the JSON Schema lists them
        self.fields: list[str] = [
            "customer_id",
            *state_fields,
            *OPTIONAL_SCALARS,
            *self.consent_columns,
            *self.last_contact_columns,
            *self.days_columns,
        ]
        self._fields = frozenset(self.fields)
        self._normalised = {normalised(name): name for name in self.fields}
        columned = [f.prefix for f in self.component_fields if not f.scalar and f.names]
        #: field-name prefixes of per-channel, per-cap and per-column fields (error hints)
        self._prefixes = (CONSENT, LAST_CONTACT, self.history.days_prefix, *columned)
        self._last_day = sc.horizon_days - 1
        self._setup_one_path(components)

    def _setup_one_path(self, components: tuple[StateComponent, ...]) -> None:
        """Plain-Python copies and readers for the single-customer path."""
        names = [c.name for c in components]
        self._names = tuple(names)
        self._read_state = one_state_reader(self.component_fields)
        self._clock_at = names.index(self.history.component.name)
        self._persona_at = names.index("persona")
        self._opted_out_at = names.index("opted_out") if "opted_out" in names else None
        self._consent_set = frozenset(self.consent_columns)
        self._plain_fields = self._fields - self._consent_set
        self._requires_consent = self.arrays.rules.requires_consent.tolist()
        self._persona_consent = self.arrays.persona_consent.tolist()
        self._default_consent = [
            (tuple(granted), self._revoke(granted)) for granted in self._persona_consent
        ]

    def json_schema(self) -> dict[str, Any]:
        """The request as JSON Schema 2020-12: never looser than the validator, so that every
        request it admits is scored (but for what it cannot state: see the module doc)."""
        return request_json_schema(self)

    # ------------------------------------------------------------------ batches
    def parse(self, frame: pd.DataFrame, as_of: datetime | None = None) -> ParsedRequest:
        """Validate a batch; every problem raises :class:`ScoringInputError`, nothing else."""
        try:
            return self._parse(frame, as_of)
        except ScoringInputError:
            raise
        except Exception as exc:  # exotic cells or labels the converters choke on: name them
            try:
                raise_for_non_scalar(frame)
            except ScoringInputError:
                raise
            except Exception:
                pass  # the generic message below says what we know
            raise ScoringInputError(
                f"input: cannot read the request ({type(exc).__name__}: {cut(str(exc))})"
            ) from None

    def _parse(self, frame: pd.DataFrame, as_of: datetime | None) -> ParsedRequest:
        if not isinstance(frame, pd.DataFrame):
            raise ScoringInputError(
                f"input: expected a pandas DataFrame, got {type(frame).__name__}"
            )
        self._check_columns(frame.columns)
        if len(frame) == 0:
            raise ScoringInputError("input: no rows to score")
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise ScoringInputError(f"input: missing field(s) {missing}")
        n = len(frame)
        customer_id = id_column(frame)
        values = {f.component.name: f.read_column(frame) for f in self.component_fields}
        day = (
            integer_column(frame, "day", 0, self._last_day)
            if "day" in frame.columns
            else np.zeros(n, dtype=np.int64)
        )
        decision_time: pd.Series | pd.Timestamp
        if "as_of" in frame.columns:
            decision_time = timestamp_column(frame, "as_of", allow_missing=False)
            weekday = local_weekdays(frame["as_of"], decision_time)
        else:
            decision_time, local_weekday = timestamp_or_now(as_of)
            weekday = np.full(n, local_weekday, dtype=np.int64)
        values[self.history.component.name] = self.history.days_since(frame, decision_time)
        consent = self.arrays.persona_consent[values["persona"]].copy()
        for c, column in enumerate(self.consent_columns):
            if column in frame.columns:
                consent[:, c] = boolean_column(frame, column)
        opted_out = values.get("opted_out", np.zeros(n, dtype=bool))
        consent = effective_consent(consent, opted_out, self.arrays.rules.requires_consent)
        refuse_repeated_ids(frame, customer_id)
        state = CustomerState(self.components, **values)
        return ParsedRequest(customer_id, state, consent, day, weekday, decision_time)

    def _check_columns(self, columns: pd.Index) -> None:
        """One plain name per column, each a field of the schema, each once."""
        if isinstance(columns, pd.MultiIndex):
            raise ScoringInputError(
                f"input: expected one field name per column, got {columns.nlevels}-level "
                f"column labels such as {echo(columns[0]) if len(columns) else '()'}"
            )
        repeated = columns[columns.duplicated()]
        if len(repeated):
            name = repeated[0]
            count = sum(1 for c in columns if c is name or c == name)
            raise ScoringInputError(
                f"input: field {echo(name)} appears {count} times; give each field once"
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
            parts.append(echo(name) + hint)
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        noun = "field" if len(unknown) == 1 else "fields"
        listed = ""
        if isinstance(unknown[0], str) and unknown[0].startswith(self._prefixes):
            prefix = next(p for p in self._prefixes if unknown[0].startswith(p))
            listed = f"; {prefix}* fields are {[f for f in self.fields if f.startswith(prefix)]}"
        return ScoringInputError(f"input: unknown {noun} {', '.join(parts)}{more}{listed}")

    def _closest(self, name: Any) -> list[str]:
        try:
            key = normalised(name if isinstance(name, str) else str(name))[:100]
        except Exception:
            return []
        exact = self._normalised.get(key)
        if exact is not None:
            return [exact]
        near = difflib.get_close_matches(key, list(self._normalised), n=3, cutoff=0.6)
        return [self._normalised[k] for k in near]

    # ------------------------------------------------------------------ one customer
    def _revoke(self, consent: list[bool]) -> tuple[bool, ...]:
        """Consent left after a marketing opt-out (the rules' one consent function)."""
        return effective_consent(consent, True, self._requires_consent)

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
        missing = [c for c in self.required if c not in row]
        if missing:
            raise ScoringInputError(f"input: missing field(s) {missing}")
        customer_id = row["customer_id"]
        if type(customer_id) is not str or not customer_id:
            problem = identifier_problem(customer_id)
            if problem:
                raise ScoringInputError(f"row 0, customer_id: {problem}")
        state = self._read_state(row)
        day = one_integer(row, "day", 0, self._last_day) if "day" in row else 0
        try:
            if "as_of" in row:  # the row's own decision time wins, as in :meth:`parse`
                moment = one_moment(row["as_of"])
                if moment is None:
                    raise AskPandas  # pandas words "missing timestamp"
                now, offset = moment
                when = pd.Timestamp(now, tz="UTC")
                weekday = ((now + offset) // DAY_NS + 3) % 7  # 1970-01-01 was a Thursday
            else:
                when, weekday = timestamp_or_now(as_of)
                now = when.value
            state.insert(self._clock_at, self.history.one_days_since(row, now))
        except AskPandas:
            return None
        persona = state[self._persona_at]
        opted_out = state[self._opted_out_at] if self._opted_out_at is not None else False
        consent = self._default_consent[persona][opted_out]
        default_consent = True
        if unfamiliar:
            given = [
                one_boolean(row, column) if column in row else granted
                for column, granted in zip(
                    self.consent_columns, self._persona_consent[persona], strict=True
                )
            ]
            given_consent = self._revoke(given) if opted_out else tuple(given)
            default_consent = given_consent == consent
            consent = given_consent
        return OneCustomer(
            customer_id, tuple(state), consent, default_consent, day, weekday, when, self._names
        )

    def parse_mapping(self, row: Mapping[str, Any], as_of: datetime | None = None) -> ParsedRequest:
        """One customer given as a mapping, validated into the arrays :meth:`parse` returns."""
        one = self.parse_one(row, as_of=as_of)
        if one is None:
            try:
                frame = pd.DataFrame([dict(row)])
            except Exception as exc:
                raise ScoringInputError(
                    f"input: cannot read the request ({type(exc).__name__}: {cut(str(exc))})"
                ) from None
            return self.parse(frame, as_of=as_of)
        values = {
            c.name: np.array([value], dtype=c.dtype).reshape(1, -1)
            if c.columns is not None
            else np.array([value], dtype=c.dtype)
            for c, value in zip(self.components, one.state, strict=True)
        }
        state = CustomerState(self.components, **values)
        return ParsedRequest(
            customer_id=np.array([one.customer_id], dtype=object),
            state=state,
            consent=np.array([one.consent], dtype=bool),
            day=np.array([one.day]),
            weekday=np.array([one.weekday]),
            as_of=one.as_of,
        )
