"""The customer state's components, declared once.

Everything that lays the state out reads :data:`COMPONENTS`: the state space (radices, strides,
the response key), the kernel's successor offsets, the rested start state, the feature blocks
and the live request's fields, JSON Schema and documentation. Adding a component is one
:class:`StateComponent` here plus its dynamics (how the day's outcome moves it), and the
space, features and request schema follow.

Index order is the order of :data:`COMPONENTS`: components that outcomes depend on
(``response=True``) come first and the contact-history clocks after, so the response key is
``index // history_size``. The order is part of every exported policy's contract (decision
tables and cached kernels are indexed by it): append new response components after
``opted_out`` and never reorder the existing ones.

Features: one-hot blocks in component order, then flag columns in component order, then the
time blocks (which are not state). That is the layout exports record by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nba.parameters import ScenarioArrays
from nba.types import IntArray

Kind = Literal["category", "level", "flag", "clock"]
Encoding = Literal["one_hot", "flag"]
#: A rested value: one for every column, per-column values from the scenario, or ``None`` when
#: the start distribution draws it (persona, stage) and every caller must give it.
Rested = int | bool | Callable[[ScenarioArrays], IntArray] | None


@dataclass(frozen=True)
class RequestField:
    """How a component appears in a live scoring request (read by :mod:`nba.serving.schema`).

    ``field`` is the request field's name; for a component with one column per scenario item
    (the cap clocks) it holds ``{column}``, replaced by each column's name. The value's type
    follows the component's kind: a category is one of its labels, a level an integer in
    ``0 .. size - 1``, a flag a boolean, a clock whole days ``>= 1`` (values past the window
    count as the window).
    """

    field: str
    doc: str
    required: bool = True

    def names(self, columns: list[str] | None) -> list[str]:
        """The request field name of each column (one name for a scalar component)."""
        if columns is None:
            return [self.field]
        return [self.field.format(column=column) for column in columns]


@dataclass(frozen=True)
class StateComponent:
    """One part of a customer's state: its size, index position, start value and names.

    :param name: the :class:`~nba.state.CustomerState` attribute.
    :param kind: ``category`` (named values), ``level`` (0 .. size - 1), ``flag`` (boolean) or
        ``clock`` (days, stored from ``digit_offset`` up to the radix).
    :param radices: one radix per column, from the scenario arrays.
    :param sources: the scenario field behind each column's radix (named in size errors).
    :param columns: column names of a component with one column per scenario item (the cap
        clocks, one per cap rule); ``None`` for a scalar component (shape ``(N,)``).
    :param rested: the value of a rested customer (see :data:`Rested`).
    :param response: whether outcomes depend on it; response components precede the others.
    :param digit_offset: stored value minus index digit (1 for days counted from 1).
    :param labels: value names of a category (persona and stage names).
    :param outcome: for a flag the day's outcome sets, the :class:`~nba.dynamics.Outcomes`
        attribute holding ``P(flag tomorrow)`` per outcome case (the kernel enumerates both
        values of every such flag).
    :param encoding: ``one_hot`` (a column per value) or ``flag`` (one 0/1 column).
    :param block: the feature block's name (default: ``name``); with ``{column}`` for a
        component with columns.
    :param request: the live request's field, or ``None`` when requests do not carry it.
    :param doc: what it means, for documentation.
    :param silent_when_single: with one value (radix 1) the component carries nothing: no
        feature column and no request field (the individual levels of a scenario without
        heterogeneity, whose features and requests stay as they were).
    """

    name: str
    kind: Kind
    radices: Callable[[ScenarioArrays], list[int]]
    sources: Callable[[ScenarioArrays], list[str]]
    rested: Rested
    response: bool
    doc: str
    encoding: Encoding = "one_hot"
    columns: Callable[[ScenarioArrays], list[str]] | None = None
    digit_offset: int = 0
    labels: Callable[[ScenarioArrays], list[str]] | None = None
    outcome: str | None = None
    block: str | None = None
    request: RequestField | None = None
    silent_when_single: bool = False

    @property
    def dtype(self) -> type[np.generic]:
        return np.bool_ if self.kind == "flag" else np.int64

    def column_names(self, arrays: ScenarioArrays) -> list[str] | None:
        """Column names, or ``None`` for a scalar component (shape ``(N,)``)."""
        return None if self.columns is None else self.columns(arrays)

    def is_silent(self, arrays: ScenarioArrays) -> bool:
        """Whether it has no features and no request field here (see ``silent_when_single``)."""
        return self.silent_when_single and self.radices(arrays) == [1]

    def blocks(self, arrays: ScenarioArrays) -> list[tuple[str, list[str]]]:
        """(feature block, feature names) of each column; none for a silent component."""
        if self.is_silent(arrays):
            return []
        stem = self.block or self.name
        columns = self.column_names(arrays)
        radices = self.radices(arrays)
        if columns is None:
            return [(stem, self._feature_names(stem, radices[0], arrays))]
        return [
            (stem.format(column=column), self._feature_names(stem.format(column=column), r, arrays))
            for column, r in zip(columns, radices, strict=True)
        ]

    def value_labels(self, radix: int, arrays: ScenarioArrays) -> list[str]:
        """Names of a column's values in digit order (labels, else the stored numbers)."""
        if self.labels is not None:
            return self.labels(arrays)
        return [str(digit + self.digit_offset) for digit in range(radix)]

    def rested_values(self, arrays: ScenarioArrays) -> IntArray | None:
        """(columns,) rested value of each column, or ``None`` when the value is drawn."""
        if self.rested is None:
            return None
        if callable(self.rested):
            return np.asarray(self.rested(arrays))
        width = len(self.radices(arrays))
        return np.full(width, self.rested, dtype=self.dtype)

    def _feature_names(self, block: str, radix: int, arrays: ScenarioArrays) -> list[str]:
        if self.encoding == "flag":
            return [block]
        return [f"{block}={label}" for label in self.value_labels(radix, arrays)]


def _cap_names(arrays: ScenarioArrays) -> list[str]:
    return [cap.name for cap in arrays.scenario.contact_rules.caps]


PERSONA = StateComponent(
    name="persona",
    kind="category",
    radices=lambda a: [a.n_personas],
    sources=lambda a: ["personas"],
    labels=lambda a: list(a.scenario.persona_names),
    rested=None,
    response=True,
    request=RequestField("persona", "persona name"),
    doc="persona (latent: companies infer it from events)",
)
STAGE = StateComponent(
    name="stage",
    kind="category",
    radices=lambda a: [a.n_stages],
    sources=lambda a: ["stages"],
    labels=lambda a: list(a.scenario.stage_names),
    rested=None,
    response=True,
    request=RequestField("stage", "journey-stage name"),
    doc="journey stage",
)
PRESSURE = StateComponent(
    name="pressure",
    kind="level",
    radices=lambda a: [a.rules.pressure_capacity + 1],
    sources=lambda a: ["contact_rules.pressure_capacity + 1"],
    rested=0,
    response=True,
    request=RequestField("pressure", "contact-pressure level, 0 .. capacity (the leaky bucket)"),
    doc="contact-pressure level (0 .. capacity), the leaky bucket that doubles as fatigue",
)
HABIT = StateComponent(
    name="habit",
    kind="flag",
    radices=lambda a: [2],
    sources=lambda a: ["discount habit"],
    rested=False,
    response=True,
    outcome="habit_next",
    encoding="flag",
    block="discount_habit",
    request=RequestField("discount_habit", "true if the customer buys mostly on discount"),
    doc="1 if the customer has a discount habit",
)
OPTED_OUT = StateComponent(
    name="opted_out",
    kind="flag",
    radices=lambda a: [2],
    sources=lambda a: ["opted out"],
    rested=False,
    response=True,
    outcome="opt_out_next",
    encoding="flag",
    request=RequestField("opted_out", "true if the customer opted out of marketing"),
    doc="1 if the customer opted out of marketing",
)
RATE_LEVEL = StateComponent(
    name="rate_level",
    kind="level",
    radices=lambda a: [a.n_rate_levels],
    sources=lambda a: ["heterogeneity.rate_levels"],
    rested=0,  # the twin draws it from the shares; a request without it reads level 0
    response=True,
    silent_when_single=True,
    request=RequestField(
        "rate_level",
        "the customer's purchase-rate level, 0 .. levels - 1 (only with more than one level)",
        required=False,
    ),
    doc="the customer's own purchase-rate level (latent, static: heterogeneity.rate_levels)",
)
DROPOUT_LEVEL = StateComponent(
    name="dropout_level",
    kind="level",
    radices=lambda a: [a.n_dropout_levels],
    sources=lambda a: ["heterogeneity.dropout_levels"],
    rested=0,  # the twin draws it from the shares; a request without it reads level 0
    response=True,
    silent_when_single=True,
    request=RequestField(
        "dropout_level",
        "the customer's dropout-propensity level, 0 .. levels - 1 (only with more than one level)",
        required=False,
    ),
    doc="the customer's own dropout-propensity level (latent, static: "
    "heterogeneity.dropout_levels)",
)
DAYS_SINCE = StateComponent(
    name="days_since",
    kind="clock",
    radices=lambda a: [int(w) for w in a.rules.cap_windows],
    sources=lambda a: [
        f"contact_rules.caps[{g}].window_days ({cap.name})"
        for g, cap in enumerate(a.scenario.contact_rules.caps)
    ],
    columns=_cap_names,
    digit_offset=1,
    rested=lambda a: a.rules.cap_windows,
    response=False,
    block="{column}_days",
    request=RequestField(
        "days_since_{column}",
        "whole days since the last contact under each cap rule (>= 1)",
    ),
    doc=(
        "days since the last contact under each cap rule, clipped at the rule's window "
        "(older contacts no longer matter; the window means 'window or more')"
    ),
)

#: The customer state, in index order (see the module docstring before changing it).
COMPONENTS: tuple[StateComponent, ...] = (
    PERSONA,
    STAGE,
    PRESSURE,
    HABIT,
    OPTED_OUT,
    RATE_LEVEL,
    DROPOUT_LEVEL,
    DAYS_SINCE,
)
