"""Type aliases shared across ``nba`` (one place, as in SB3's ``type_aliases``)."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

IntArray: TypeAlias = npt.NDArray[np.int64]
FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
SeedLike: TypeAlias = int | np.random.Generator | None

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BARRIERS: tuple[str, ...] = ("price", "trust", "awareness", "convenience")
