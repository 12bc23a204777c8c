"""Customer state as a struct of arrays, and the finite state space that indexes it.

A customer's state is one array per component of :data:`~nba.state_components.COMPONENTS`
(persona, journey stage, contact pressure, discount habit, marketing opt-out, the customer's own
purchase-rate and dropout levels, and the days since the last contact under each cap rule,
clipped at the rule's window). Time is kept by the twin,
not here: the exact optimum is time-dependent, the index is not. The layout (index order,
strides, rested values) is derived from the declaration, never spelt out by position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from nba.contact_rules import effective_consent
from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.state_components import COMPONENTS, RequestField, StateComponent
from nba.types import BoolArray, IntArray

__all__ = [
    "COMPONENTS",
    "MAX_STATES",
    "MAX_TABLE_CELLS",
    "CustomerState",
    "RequestField",
    "StateComponent",
    "StateSpace",
    "rested_state",
]

#: Most states a space may index: its index and the products taken with it stay in int64.
MAX_STATES = 2**40
#: Most cells of a table with a row per state (every state's components, a day's decisions):
#: about 32 M, a few hundred MB at the widest. The built-in scenario's largest, the scorer's
#: decision table for a day (7 weekdays x 10,976 states x 13 actions), is 1 M.
MAX_TABLE_CELLS = 2**25


class CustomerState:
    """N customers; one array per state component, whose first axis is the customer.

    Built from keywords (``CustomerState(persona=..., stage=..., ...)``) or a mapping
    (:meth:`of`), for :data:`COMPONENTS` unless ``components`` says otherwise; a missing or
    unknown component is refused. Components are plain attributes (``state.persona``), at plain
    attribute speed; assigning one that is not a component is refused too.
    """

    components: tuple[StateComponent, ...]
    persona: IntArray  # (N,)
    stage: IntArray  # (N,)
    pressure: IntArray  # (N,) 0..capacity
    habit: BoolArray  # (N,)
    opted_out: BoolArray  # (N,)
    rate_level: IntArray  # (N,) 0..levels-1, the customer's own purchase-rate level
    dropout_level: IntArray  # (N,) 0..levels-1, the customer's own dropout level
    days_since: IntArray  # (N, G) 1..window per cap rule

    def __init__(
        self, components: tuple[StateComponent, ...] = COMPONENTS, **arrays: np.ndarray
    ) -> None:
        names = [c.name for c in components]
        missing = [name for name in names if name not in arrays]
        unknown = sorted(set(arrays) - set(names))
        if missing or unknown:
            problems = [f"missing {missing}"] * bool(missing) + [f"unknown {unknown}"] * bool(
                unknown
            )
            raise NBAValidationError(f"customer state: {'; '.join(problems)} component(s)")
        object.__setattr__(self, "components", components)
        for name in names:  # declaration order, whatever the keyword order
            object.__setattr__(self, name, arrays[name])

    @classmethod
    def of(
        cls, arrays: Mapping[str, np.ndarray], components: tuple[StateComponent, ...] = COMPONENTS
    ) -> CustomerState:
        """The state whose components are ``arrays`` (component name -> array)."""
        return cls(components, **arrays)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__dict__:
            raise NBAValidationError(f"customer state: {name!r} is not a state component")
        object.__setattr__(self, name, value)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        """(component name, array) in declaration order."""
        for component in self.components:
            yield component.name, self.__dict__[component.name]

    def __len__(self) -> int:
        return int(self.__dict__[self.components[0].name].shape[0])

    def __repr__(self) -> str:
        return f"CustomerState(n={len(self)}, components={list(self.names)})"

    def take(self, index: IntArray | slice) -> CustomerState:
        """A copy restricted to the given customers."""
        return CustomerState(
            self.components, **{name: array[index].copy() for name, array in self.items()}
        )

    def copy(self) -> CustomerState:
        return self.take(slice(None))

    def consent(self, arrays: ScenarioArrays) -> BoolArray:
        """(N, C) channels each customer may be contacted on: persona consent minus opt-outs."""
        granted: BoolArray = arrays.persona_consent[self.persona]
        return effective_consent(granted, self.opted_out, arrays.rules.requires_consent)


def rested_state(
    arrays: ScenarioArrays,
    persona: IntArray,
    stage: IntArray,
    /,
    components: tuple[StateComponent, ...] = COMPONENTS,
    **given: np.ndarray,
) -> CustomerState:
    """Customers of the given persona and stage, every other component at its rested value.

    The one definition of a fresh customer (twin start, kernel start distribution, calibration
    populations, the filter's prior, synthetic logs). ``given`` overrides other components
    (the twin's drawn discount habit); a component without a rested value must be given.

    :raises NBAValidationError: naming a component that has no rested value and is not given.
    """
    values: dict[str, np.ndarray] = {"persona": np.asarray(persona), "stage": np.asarray(stage)}
    values.update(given)
    n = int(values["persona"].shape[0])
    for component in components:
        if component.name in values:
            continue
        rested = component.rested_values(arrays)
        if rested is None:
            raise NBAValidationError(
                f"customer state: {component.name!r} has no rested value; give it"
            )
        if component.columns is None:
            values[component.name] = np.full(n, rested[0], dtype=component.dtype)
        else:
            width = rested.shape[0]
            values[component.name] = np.broadcast_to(rested, (n, width)).astype(component.dtype)
    return CustomerState(components, **values)


class StateSpace:
    """Mixed-radix index over every reachable combination of state components.

    Radices, strides and the response key come from the components' declaration: one digit
    per column, the last column varying fastest. Callers ask for a component's position by
    name (:meth:`stride`, :meth:`strides_of`), never by index.
    """

    def __init__(
        self, arrays: ScenarioArrays, components: tuple[StateComponent, ...] = COMPONENTS
    ) -> None:
        self.arrays = arrays
        self.components = components
        _check_order(components)
        #: (scenario field, size) of each column, in index order
        self.factors: list[tuple[str, int]] = []
        self._columns: dict[str, slice] = {}
        for component in components:
            radices, sources = component.radices(arrays), component.sources(arrays)
            if len(radices) != len(sources):
                raise NBAValidationError(
                    f"state component {component.name!r}: {len(radices)} radices but "
                    f"{len(sources)} sources"
                )
            start = len(self.factors)
            self.factors += list(zip(sources, radices, strict=True))
            self._columns[component.name] = slice(start, len(self.factors))
        radix_list = [size for _, size in self.factors]
        exact = math.prod(radix_list)  # Python ints: numpy's product would wrap around silently
        if exact > MAX_STATES:
            raise NBAValidationError(self._too_large(f"{exact:,} states", MAX_STATES))
        self.radices = np.array(radix_list, dtype=np.int64)
        # strides for a C-order index: the last component varies fastest
        self.strides = np.concatenate([np.cumprod(self.radices[::-1])[::-1][1:], [1]]).astype(
            np.int64
        )
        self.size = exact
        history = [self._columns[c.name] for c in components if not c.response]
        #: States per response key: the contact-history clocks, which only the rules read.
        self.history_size = math.prod(radix_list[history[0].start :]) if history else 1
        self.response_size = self.size // self.history_size
        self._encode_one = _plain_encoder(self, components)
        self._names = [c.name for c in components]
        self._encode_plan = [
            (
                c.name,
                c.digit_offset,
                self.strides[self._columns[c.name].start] if c.columns is None else None,
                None if c.columns is None else list(self.strides_of(c.name)),
            )
            for c in components
        ]

    # ------------------------------------------------------------------ layout
    def component(self, name: str) -> StateComponent:
        for component in self.components:
            if component.name == name:
                return component
        raise NBAValidationError(f"state space: no component {name!r}; have {self._names}")

    def columns(self, name: str) -> slice:
        """The index digits (positions in :attr:`radices`) of a component's columns."""
        if name not in self._columns:
            raise NBAValidationError(f"state space: no component {name!r}; have {self._names}")
        return self._columns[name]

    def strides_of(self, name: str) -> IntArray:
        """(columns,) index strides of a component's columns."""
        strides: IntArray = self.strides[self.columns(name)]
        return strides

    def stride(self, name: str) -> int:
        """Index stride of a scalar component (one column)."""
        strides = self.strides_of(name)
        if strides.shape[0] != 1 or self.component(name).columns is not None:
            raise NBAValidationError(f"state space: {name!r} has one stride per column")
        return int(strides[0])

    # ------------------------------------------------------------------ indexing
    def encode(self, state: CustomerState) -> IntArray:
        """(N,) state index of each customer."""
        index: IntArray | None = None
        for name, offset, stride, column_strides in self._encode_plan:
            values = state.__dict__[name]
            if column_strides is None:
                term = (values - offset if offset else values) * stride
                index = term if index is None else index + term
                continue
            for g, column_stride in enumerate(column_strides):  # a handful of cap rules
                column = values[:, g]
                term = (column - offset if offset else column) * column_stride
                index = term if index is None else index + term
        assert index is not None  # a space has at least the persona
        return index

    def encode_one(self, *values: Any, **named: Any) -> int:
        """Index of one customer's state from plain values (no arrays on latency paths).

        Values in component order (persona, stage, pressure, habit, opted_out, rate_level,
        dropout_level, days_since) or by component name; a component with columns takes a
        sequence.
        """
        if named or len(values) != len(self._names):
            values = self._ordered(values, named)
        return self._encode_one(values)

    def _ordered(self, values: Sequence[Any], named: Mapping[str, Any]) -> tuple[Any, ...]:
        given = dict(zip(self._names, values, strict=False))
        clash = sorted(set(given) & set(named))
        unknown = sorted(set(named) - set(self._names))
        if clash or unknown:
            raise NBAValidationError(
                f"state: components given twice {clash} or unknown {unknown}; have {self._names}"
            )
        given.update(named)
        if len(values) > len(self._names):
            raise NBAValidationError(
                f"state: expected {len(self._names)} components {self._names}, got {len(values)}"
            )
        missing = [name for name in self._names if name not in given]
        if missing:
            raise NBAValidationError(f"state: missing component(s) {missing}")
        return tuple(given[name] for name in self._names)

    def response_key(self, state_index: IntArray) -> IntArray:
        """Index over the response components (all that outcomes depend on)."""
        return state_index // self.history_size

    def decode(self, index: IntArray) -> CustomerState:
        index = np.asarray(index, dtype=np.int64)
        digits = (index[:, None] // self.strides[None, :]) % self.radices[None, :]
        values: dict[str, np.ndarray] = {}
        for component in self.components:
            part = digits[:, self._columns[component.name]]
            if component.columns is None:
                part = part[:, 0]
            if component.kind == "flag":
                values[component.name] = part.astype(bool)
            elif component.digit_offset:
                values[component.name] = part + component.digit_offset
            else:
                values[component.name] = part.copy()
        return CustomerState(self.components, **values)

    def all_states(self) -> CustomerState:
        """Every state, in index order."""
        self.require_table(len(self.radices), "every state's components (one row per state)")
        return self.decode(np.arange(self.size, dtype=np.int64))

    def rested_state(
        self, persona: IntArray, stage: IntArray, **given: np.ndarray
    ) -> CustomerState:
        """:func:`rested_state` of this space's scenario and components."""
        return rested_state(self.arrays, persona, stage, components=self.components, **given)

    # ------------------------------------------------------------------ limits
    def require_table(self, cells_per_state: int, what: str) -> None:
        """Refuse, before allocating it, a table of ``cells_per_state`` cells per state.

        :raises NBAValidationError: past :data:`MAX_TABLE_CELLS`, naming the scenario fields
            whose sizes multiply into the state space, largest first.
        """
        cells = self.size * int(cells_per_state)
        if cells > MAX_TABLE_CELLS:
            raise NBAValidationError(
                self._too_large(
                    f"{self.size:,} states; {what} needs {cells:,} cells", MAX_TABLE_CELLS
                )
            )

    def _too_large(self, amount: str, limit: int) -> str:
        product = " x ".join(str(size) for _, size in self.factors)
        largest = sorted((f for f in self.factors if f[1] > 2), key=lambda f: -f[1])
        named = ", ".join(f"{name} = {size:,}" for name, size in largest[:4])
        more = f" and {len(largest) - 4} more" if len(largest) > 4 else ""
        return (
            f"scenario {self.arrays.scenario.name!r}: state space too large: {product} = "
            f"{amount}, over the limit of {limit:,}; the largest factors are {named}{more}"
        )


def _check_order(components: tuple[StateComponent, ...]) -> None:
    """Names unique, persona first, response components before the history ones."""
    names = [c.name for c in components]
    if len(set(names)) != len(names) or not names or names[0] != "persona":
        raise NBAValidationError(
            f"state components: expected unique names starting with 'persona', got {names}"
        )
    flags = [c.response for c in components]
    if flags != sorted(flags, reverse=True):
        raise NBAValidationError(
            f"state components: response components must precede the others, got {names}"
        )


def _plain_encoder(
    space: StateSpace, components: tuple[StateComponent, ...]
) -> Callable[[Sequence[Any]], int]:
    """``encode_one``'s arithmetic as one expression over the values, built once per space.

    The scorer's one-customer path calls it per request; a generic loop over components cost
    about 1.5 us more than the hand-written sum it replaces (a few % of a decision), so the sum
    is generated from the declaration, as :func:`collections.namedtuple` does. Only integers we
    computed (positions, strides) enter the source.
    """
    terms, checks = [], []
    offset = 0
    for position, component in enumerate(components):
        strides = [int(x) for x in space.strides_of(component.name)]
        offset += component.digit_offset * sum(strides)
        if component.columns is None:
            terms.append(f"v[{position}] * {strides[0]}")
            continue
        checks.append(f"len(v[{position}]) != {len(strides)}")
        terms += [f"v[{position}][{g}] * {stride}" for g, stride in enumerate(strides)]
    source = (
        "def encode_one(v):\n"
        f"    if {' or '.join(checks) or 'False'}:\n"
        "        raise error('state: expected one value per column of ' + repr(names))\n"
        f"    return int({' + '.join(terms)} - {offset})\n"
    )
    namespace: dict[str, Any] = {
        "error": NBAValidationError,
        "names": [c.name for c in components if c.columns is not None],
    }
    exec(compile(source, "<nba.state encode_one>", "exec"), namespace)
    encoder: Callable[[Sequence[Any]], int] = namespace["encode_one"]
    return encoder
