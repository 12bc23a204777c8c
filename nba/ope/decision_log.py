"""The serving decision log as off-policy evaluation reads it, with outcomes joined as rewards.

The reader lives with the writer, the schema and the timestamp format in
:mod:`nba.serving.decision_log`; these names stay importable from here and from :mod:`nba.ope`.
"""

from __future__ import annotations

from nba.serving.decision_log import (
    OUTCOMES_TABLE,
    DecisionRecords,
    Missing,
    read_decision_log,
    write_outcomes,
)

__all__ = ["OUTCOMES_TABLE", "DecisionRecords", "Missing", "read_decision_log", "write_outcomes"]
