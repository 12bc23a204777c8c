"""Customer state as a struct of arrays, and the finite state space that indexes it.

A customer's state is: persona, journey stage, contact pressure (the leaky-bucket level that
doubles as fatigue), days since the last contact under each cap rule (clipped at the rule's
window: older contacts no longer matter), discount habit and marketing opt-out. Time is kept
by the twin, not here: the exact optimum is time-dependent, the index is not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.types import BoolArray, IntArray

#: Most states a space may index: its index and the products taken with it stay in int64.
MAX_STATES = 2**40
#: Most cells of a table with a row per state (every state's components, a day's decisions):
#: about 32 M, a few hundred MB at the widest. The built-in scenario's largest, the scorer's
#: decision table for a day (7 weekdays x 10,976 states x 13 actions), is 1 M.
MAX_TABLE_CELLS = 2**25


@dataclass
class CustomerState:
    """N customers; every field is an array whose first axis is the customer."""

    persona: IntArray  # (N,)
    stage: IntArray  # (N,)
    pressure: IntArray  # (N,) 0..capacity
    days_since: IntArray  # (N, G) 1..window per cap rule
    habit: BoolArray  # (N,)
    opted_out: BoolArray  # (N,)

    def __len__(self) -> int:
        return int(self.persona.shape[0])

    def take(self, index: IntArray | slice) -> CustomerState:
        """A copy restricted to the given customers."""
        return CustomerState(**{f.name: getattr(self, f.name)[index].copy() for f in fields(self)})

    def copy(self) -> CustomerState:
        return self.take(slice(None))

    def consent(self, arrays: ScenarioArrays) -> BoolArray:
        """(N, C) channels each customer may be contacted on: persona consent minus opt-outs."""
        granted = arrays.persona_consent[self.persona]
        revoked = self.opted_out[:, None] & arrays.rules.requires_consent[None, :]
        return granted & ~revoked


class StateSpace:
    """Mixed-radix index over every reachable combination of state components."""

    def __init__(self, arrays: ScenarioArrays) -> None:
        self.arrays = arrays
        rules = arrays.rules
        caps = arrays.scenario.contact_rules.caps
        #: (scenario field, size) of each component, in index order
        self.factors: list[tuple[str, int]] = [
            ("personas", arrays.n_personas),
            ("stages", arrays.n_stages),
            ("contact_rules.pressure_capacity + 1", rules.pressure_capacity + 1),
            ("discount habit", 2),
            ("opted out", 2),
            *(
                (f"contact_rules.caps[{g}].window_days ({cap.name})", int(w))
                for g, (cap, w) in enumerate(zip(caps, rules.cap_windows, strict=True))
            ),
        ]
        radices = [size for _, size in self.factors]
        exact = math.prod(radices)  # Python ints: numpy's product would wrap around silently
        if exact > MAX_STATES:
            raise NBAValidationError(self._too_large(f"{exact:,} states", MAX_STATES))
        self.radices = np.array(radices, dtype=np.int64)
        # strides for a C-order index: the last component varies fastest
        self.strides = np.concatenate([np.cumprod(self.radices[::-1])[::-1][1:], [1]]).astype(
            np.int64
        )
        self.size = exact
        self._stride_list = [int(x) for x in self.strides]
        #: States per response key: the contact-history clocks, which only the rules read.
        self.history_size = int(np.prod(self.radices[5:]))
        self.response_size = self.size // self.history_size

    def encode(self, state: CustomerState) -> IntArray:
        """(N,) state index of each customer."""
        s = self.strides
        index = (
            state.persona * s[0]
            + state.stage * s[1]
            + state.pressure * s[2]
            + state.habit.astype(np.int64) * s[3]
            + state.opted_out.astype(np.int64) * s[4]
        )
        for g in range(state.days_since.shape[1]):  # a handful of cap rules, not customers
            index = index + (state.days_since[:, g] - 1) * s[5 + g]
        return index

    def encode_one(
        self,
        persona: int,
        stage: int,
        pressure: int,
        habit: bool,
        opted_out: bool,
        days_since: Sequence[int],
    ) -> int:
        """Index of one customer's state from plain values (no arrays on latency paths)."""
        s = self._stride_list
        index = persona * s[0] + stage * s[1] + pressure * s[2] + habit * s[3] + opted_out * s[4]
        for g, days in enumerate(days_since):
            index += (days - 1) * s[5 + g]
        return int(index)

    def response_key(self, state_index: IntArray) -> IntArray:
        """Index over (persona, stage, pressure, habit, opted_out): all that outcomes depend on."""
        return state_index // self.history_size

    def decode(self, index: IntArray) -> CustomerState:
        index = np.asarray(index, dtype=np.int64)
        digits = (index[:, None] // self.strides[None, :]) % self.radices[None, :]
        return CustomerState(
            persona=digits[:, 0].copy(),
            stage=digits[:, 1].copy(),
            pressure=digits[:, 2].copy(),
            habit=digits[:, 3].astype(bool),
            opted_out=digits[:, 4].astype(bool),
            days_since=digits[:, 5:] + 1,
        )

    def all_states(self) -> CustomerState:
        """Every state, in index order."""
        self.require_table(len(self.radices), "every state's components (one row per state)")
        return self.decode(np.arange(self.size, dtype=np.int64))

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
