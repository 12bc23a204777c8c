"""The one feature builder: customer state + day -> float32 observation, and back.

The envs, the evaluation harness and the live scorer all call :class:`FeatureBuilder`, so a
policy sees the same numbers in training and in serving. Features, in order:

========================  =========================================================  ============
block                     meaning                                                    width
========================  =========================================================  ============
``persona=<name>``        one-hot persona                                            P
``stage=<name>``          one-hot journey stage                                      K
``pressure=<level>``      one-hot contact-pressure level (0 .. capacity)             capacity + 1
``<cap>_days=<d>``        one-hot days since the last contact under each cap rule    window
                          (``d`` = window means "window or more")
``discount_habit``        1 if the customer has a discount habit                     1
``opted_out``             1 if the customer opted out of marketing                   1
``time_left``             share of the horizon still ahead, 1 at day 0, 1/T last day 1
``weekday=<day>``         one-hot weekday (quiet-day rules follow the calendar)      7
``days_left=<k>``         one-hot days left in the horizon, for the last ``k`` <= 7  7
                          days (all zero before)
========================  =========================================================  ============

One-hot blocks beat ordinal scalars for these small categorical states (a prototype closed
0.953 of the optimality gap with one-hot features against 0.895 with scalars at equal time).
The ``days_left`` block exists because the horizon's last days call for different decisions
(nothing later can pay back a contact's cost): from ``time_left`` alone, PPO policies lost
about a quarter of their remaining gap to the optimum on the final day (0.205 of 0.864 per
customer); with the block, 0.024. Live requests plan on day 0 by default, so it is all zero
there. Every value lies in [0, 1].

Exports made before the block existed are read with ``final_days=0``
(:meth:`FeatureBuilder.for_names`), so their networks see the features they were trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.state import CustomerState
from nba.types import WEEKDAYS, FloatArray, IntArray

#: Days at the end of the horizon with a one-hot ``days_left`` feature.
FINAL_DAYS = 7


@dataclass(frozen=True)
class FeatureBuilder:
    """Builds (N, F) float32 observations for a scenario; :meth:`decode` inverts them."""

    arrays: ScenarioArrays
    final_days: int = FINAL_DAYS

    @classmethod
    def for_names(cls, arrays: ScenarioArrays, names: list[str]) -> FeatureBuilder:
        """The builder whose features are ``names`` (an export's, possibly from before a block).

        :raises NBAValidationError: when no layout of this scenario has those features.
        """
        for final_days in (FINAL_DAYS, 0):
            builder = cls(arrays, final_days)
            if builder.names == list(names):
                return builder
        raise NBAValidationError("features: do not match any feature layout of the scenario")

    @cached_property
    def blocks(self) -> list[tuple[str, list[str]]]:
        """(block name, feature names) in order."""
        sc = self.arrays.scenario
        rules = sc.contact_rules
        blocks = [
            ("persona", [f"persona={p}" for p in sc.persona_names]),
            ("stage", [f"stage={s}" for s in sc.stage_names]),
            ("pressure", [f"pressure={i}" for i in range(rules.pressure_capacity + 1)]),
        ]
        for cap in rules.caps:
            days = [f"{cap.name}_days={d}" for d in range(1, cap.window_days + 1)]
            blocks.append((f"{cap.name}_days", days))
        blocks += [
            ("discount_habit", ["discount_habit"]),
            ("opted_out", ["opted_out"]),
            ("time_left", ["time_left"]),
            ("weekday", [f"weekday={d}" for d in WEEKDAYS]),
        ]
        if self.final_days:
            blocks.append(("days_left", [f"days_left={k}" for k in range(1, self.final_days + 1)]))
        return blocks

    @cached_property
    def names(self) -> list[str]:
        return [name for _, names in self.blocks for name in names]

    @cached_property
    def offsets(self) -> dict[str, int]:
        offsets, position = {}, 0
        for block, names in self.blocks:
            offsets[block] = position
            position += len(names)
        return offsets

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def horizon(self) -> int:
        return self.arrays.scenario.horizon_days

    def build(
        self,
        state: CustomerState,
        day: IntArray,
        out: FloatArray | None = None,
        weekday: IntArray | None = None,
    ) -> FloatArray:
        """(N, F) float32 observations of customers on the given day of their episode.

        ``weekday`` (0 = Monday) defaults to the scenario calendar (start weekday + day); live
        scoring passes the real one.
        """
        n = len(state)
        obs = np.zeros((n, self.size), dtype=np.float32) if out is None else out
        if out is not None:
            obs.fill(0.0)
        rows = np.arange(n)
        o = self.offsets
        obs[rows, o["persona"] + state.persona] = 1.0
        obs[rows, o["stage"] + state.stage] = 1.0
        obs[rows, o["pressure"] + state.pressure] = 1.0
        for g, cap in enumerate(self.arrays.scenario.contact_rules.caps):
            obs[rows, o[f"{cap.name}_days"] + state.days_since[:, g] - 1] = 1.0
        obs[:, o["discount_habit"]] = state.habit
        obs[:, o["opted_out"]] = state.opted_out
        obs[:, o["time_left"]] = (self.horizon - day) / self.horizon
        if weekday is None:
            weekday = (self.arrays.weekday_of_start + day) % 7
        obs[rows, o["weekday"] + weekday] = 1.0
        if self.final_days:
            left = self.horizon - np.broadcast_to(np.asarray(day, dtype=np.int64), (n,))
            final = np.flatnonzero((left >= 1) & (left <= self.final_days))  # 0: episode end
            obs[final, o["days_left"] + left[final] - 1] = 1.0
        return obs

    def decode(self, obs: FloatArray) -> tuple[CustomerState, IntArray]:
        """The customer state and day an observation was built from (exact for valid input)."""
        obs = np.asarray(obs)
        if obs.ndim != 2 or obs.shape[1] != self.size:
            raise NBAValidationError(f"obs: expected shape (N, {self.size}), got {obs.shape}")

        def block(name: str) -> IntArray:
            start = self.offsets[name]
            width = len(dict(self.blocks)[name])
            return np.argmax(obs[:, start : start + width], axis=1).astype(np.int64)

        caps = self.arrays.scenario.contact_rules.caps
        days_since = (
            np.stack([block(f"{c.name}_days") + 1 for c in caps], axis=1)
            if caps
            else (np.zeros((obs.shape[0], 0), dtype=np.int64))
        )
        state = CustomerState(
            persona=block("persona"),
            stage=block("stage"),
            pressure=block("pressure"),
            days_since=days_since.astype(np.int64),
            habit=obs[:, self.offsets["discount_habit"]] > 0.5,
            opted_out=obs[:, self.offsets["opted_out"]] > 0.5,
        )
        time_left = obs[:, self.offsets["time_left"]].astype(np.float64)
        day = np.rint(self.horizon * (1.0 - time_left)).astype(np.int64)
        return state, day
