"""Contact history in a request: the one state component a request may give in two forms.

A customer's clocks (days since the last contact under each cap rule) arrive either as the time
of the last contact on every capped channel (``last_contact_<channel>``, empty = never) or as
whole days under every cap (``days_since_<cap>``). Part of a form is refused; when both forms are
complete the timestamps decide (the counts must still be valid). Both parse paths read the
history here, so they accept, refuse and count alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.serving.request_cells import (
    MAX_WHOLE,
    ScoringInputError,
    echo,
    integer_column,
    one_integer,
)
from nba.serving.request_time import (
    DAY_NS,
    AskPandas,
    one_instant,
    timestamp_column,
    timestamp_schema,
    whole_days,
)
from nba.state_components import DAYS_SINCE as CONTACT_CLOCK
from nba.state_components import StateComponent
from nba.types import IntArray

LAST_CONTACT = "last_contact_"


class ContactHistory:
    """The two request forms of a scenario's contact clocks, and how each is read."""

    def __init__(self, arrays: ScenarioArrays, clock: StateComponent = CONTACT_CLOCK) -> None:
        """``clock`` is the state's contact clock: one column per cap rule, in their order."""
        self.component = clock
        self.caps = arrays.scenario.contact_rules.caps
        self.capped_channels = sorted({c for cap in self.caps for c in cap.channels})
        columns = clock.column_names(arrays)
        if clock.request is None or columns != [cap.name for cap in self.caps]:
            raise NBAValidationError(
                f"state component {clock.name!r}: the contact clock needs a request field "
                "and one column per cap rule"
            )
        self.days_columns = clock.request.names(columns)
        #: the counts' common prefix (``days_since_``), as messages name the form
        self.days_prefix = clock.request.field.split("{column}")[0]
        self.last_contact_columns = [f"{LAST_CONTACT}{c}" for c in self.capped_channels]
        #: every history field, timestamps first
        self.fields = [*self.last_contact_columns, *self.days_columns]
        self._last_contact_set = frozenset(self.last_contact_columns)
        self._days_set = frozenset(self.days_columns)
        self._cap_channels = [tuple(cap.channels) for cap in self.caps]
        self.windows = [int(w) for w in arrays.rules.cap_windows]

    def json_properties(self, zone: str) -> dict[str, Any]:
        """JSON Schema of each history field (``zone`` says how offsets are read)."""
        timestamp = timestamp_schema(
            "Last contact on the channel (null = never), not after the decision time. Give "
            f"every {LAST_CONTACT}* field or none; elapsed days count between UTC instants. "
            f"{zone}",
            nullable=True,
        )
        properties: dict[str, Any] = {c: dict(timestamp) for c in self.last_contact_columns}
        for column, cap in zip(self.days_columns, self.caps, strict=True):
            properties[column] = {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_WHOLE,
                "description": f"Whole days since the last contact on {cap.channels}. Give "
                f"every {self.days_prefix}* field or none; with every {LAST_CONTACT}* field "
                "too, the timestamps decide.",
            }
        return properties

    def json_constraints(self) -> dict[str, Any]:
        """One form or the other, each complete: ``anyOf`` and ``dependentRequired``."""
        history = [{"required": self.last_contact_columns}, {"required": self.days_columns}]
        return {
            "anyOf": history if self.caps else [{}],
            "dependentRequired": {
                **{c: self.last_contact_columns for c in self.last_contact_columns},
                **{c: self.days_columns for c in self.days_columns},
            },
        }

    def form(self, present: AbstractSet[str]) -> bool:
        """Which form of contact history a request uses: True for timestamps, False for counts.

        ``present`` holds the request's field names. Part of a form is an error naming what is
        missing; with both forms complete the timestamps decide (the counts are still checked).
        """
        has_stamps = not self._last_contact_set.isdisjoint(present)
        has_days = not self._days_set.isdisjoint(present)
        if has_stamps and not self._last_contact_set <= present:
            missing = [c for c in self.last_contact_columns if c not in present]
            raise ScoringInputError(
                f"input: {LAST_CONTACT}* fields incomplete, missing {missing}; give every one "
                "(empty for never contacted)"
            )
        if has_days and not self._days_set <= present:
            missing = [c for c in self.days_columns if c not in present]
            raise ScoringInputError(
                f"input: {self.days_prefix}* fields incomplete, missing {missing}; give every one"
            )
        if not (has_stamps or has_days):
            raise ScoringInputError(
                f"input: contact history needs {self.last_contact_columns} or {self.days_columns}"
            )
        return has_stamps

    # ------------------------------------------------------------------ batches
    def days_since(self, frame: pd.DataFrame, decision_time: pd.Series | pd.Timestamp) -> IntArray:
        """(N, G) days since the last contact per cap: whole days elapsed, floored, never
        contacted = the window, clipped to [1, window]."""
        if not self.caps:
            return np.zeros((len(frame), 0), dtype=np.int64)
        present = frozenset(c for c in frame.columns if isinstance(c, str))
        result = self._stamped_days(frame, decision_time) if self.form(present) else None
        if self._days_set <= present:
            counts = [
                np.minimum(integer_column(frame, column, 1, None), window)
                for column, window in zip(self.days_columns, self.windows, strict=True)
            ]
            if result is None:
                result = np.stack(counts, axis=1)
        assert result is not None
        return result

    def _stamped_days(
        self, frame: pd.DataFrame, decision_time: pd.Series | pd.Timestamp
    ) -> IntArray:
        last = {}
        for channel, column in zip(self.capped_channels, self.last_contact_columns, strict=True):
            stamps = timestamp_column(frame, column, allow_missing=True)
            late = (stamps > decision_time).to_numpy()
            if late.any():
                row = frame.index[int(np.flatnonzero(late)[0])]
                when = decision_time
                if isinstance(decision_time, pd.Series):
                    when = decision_time.loc[row]
                raise ScoringInputError(
                    f"row {echo(row)}, {column}: {echo(frame[column].loc[row])} is in "
                    f"the future (decision time {when})"
                )
            last[channel] = stamps
        columns = []
        for cap, window in zip(self.caps, self.windows, strict=True):
            latest = last[cap.channels[0]]
            for channel in cap.channels[1:]:  # the latest contact, empty if none
                other = last[channel]
                latest = other.where(latest.isna() | (other > latest), latest)
            elapsed = whole_days(decision_time, latest)
            days = np.where(np.isnan(elapsed), window, elapsed)
            columns.append(np.clip(days, 1, window).astype(np.int64))
        return np.stack(columns, axis=1)

    # ------------------------------------------------------------------ one customer
    def one_days_since(self, row: Mapping[str, Any], now: int) -> tuple[int, ...]:
        """Days since the last contact per cap for one row, as :meth:`days_since` computes.

        ``now`` is the decision time in nanoseconds since the epoch (UTC). Raises
        :class:`AskPandas` for a timestamp only the frame path reads or words.
        """
        if not self.caps:
            return ()
        fields = row.keys()
        if fields >= self._last_contact_set:  # every timestamp (the usual case: no set maths)
            if not self._days_set.isdisjoint(fields):
                self.form(frozenset(fields))
            last: dict[str, int | None] = {}
            for channel, column in zip(
                self.capped_channels, self.last_contact_columns, strict=True
            ):
                instant = one_instant(row[column])
                if instant is not None and instant > now:
                    raise AskPandas  # in the future: pandas words the error
                last[channel] = instant
            days = []
            for channels, window in zip(self._cap_channels, self.windows, strict=True):
                seen = [last[c] for c in channels if last[c] is not None]
                elapsed = window if not seen else (now - max(seen)) // DAY_NS
                days.append(min(max(elapsed, 1), window))
            if fields >= self._days_set:  # both forms: the counts must be valid too
                for column in self.days_columns:
                    one_integer(row, column, 1, None)
            return tuple(days)
        if fields >= self._days_set and self._last_contact_set.isdisjoint(fields):
            return tuple(
                [
                    min(one_integer(row, column, 1, None), window)
                    for column, window in zip(self.days_columns, self.windows, strict=True)
                ]
            )
        self.form(frozenset(fields))
        raise AssertionError("unreachable: form() refuses every other shape")
