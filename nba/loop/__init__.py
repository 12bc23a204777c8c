"""The continuous loop: one cycle (:func:`run_cycle`, ``nba cycle``) and its resumable ledger."""

from __future__ import annotations

from nba.loop.cycle import CycleResult, CycleSettings, ExitCode, run_cycle
from nba.loop.ledger import Ledger, cycle_key

__all__ = ["CycleResult", "CycleSettings", "ExitCode", "Ledger", "cycle_key", "run_cycle"]
