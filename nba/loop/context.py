"""What a cycle of the loop is made of: its settings, each step's result, the context steps
share, and the exit codes a scheduler reads (:mod:`nba.loop.cycle` runs them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import pandas as pd

from nba.errors import NBAValidationError
from nba.loop.ledger import Ledger

CYCLE_EXPERIMENT = "nba-cycle"
STEPS = ("ingest", "audit", "train", "evaluate", "gate", "decide")
OUTCOME_TAG = "nba.cycle.outcome"
DAY = pd.Timedelta(days=1)


class ExitCode(IntEnum):
    """What a scheduler reads: 0 done with the challenger promoted, 2 bad input, 3 the gate
    refused the challenger (the champion is kept and still decides), 4 the audit found drift
    and recalibration failed (nothing trained or decided)."""

    DONE = 0
    BAD_INPUT = 2
    GATE_REFUSED = 3
    AUDIT_FAILED = 4


class CycleError(NBAValidationError):
    """A cycle's input is unusable (names the option)."""


@dataclass(frozen=True)
class CycleSettings:
    """Everything one cycle needs; ``train_options`` go to :func:`nba.training.train`."""

    store: Path
    events: Path
    model: str
    as_of: str | None = None
    holdout_share: float | None = None
    holdout_salt: str | None = None
    holdout_control: str = "no_action"
    drift_threshold: float = 4.0
    train_steps: int = 200_000
    train_seed: int = 0
    train_config: Path | None = None  # hyper-parameter YAML (default: the packaged one)
    train_options: dict[str, Any] = field(default_factory=dict)
    decisions: Path | None = None
    out: Path | None = None
    tracking_uri: str | None = None
    epsilon: float = 0.0
    capacity: dict[str, int | None] = field(default_factory=dict)
    twin_customers: int = 2_000
    bootstrap: int = 200
    state_dir: Path | None = None


@dataclass
class CycleResult:
    """The cycle's end: outcome, exit code, parent run, steps done now, and the ledger file."""

    key: str
    outcome: str
    exit_code: int
    parent_run_id: str | None
    ran: list[str]
    ledger: Path
    seconds: float
    steps: dict[str, Any]


@dataclass
class StepResult:
    outcome: str
    values: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    stop: int | None = None  # an exit code ends the cycle after this step


@dataclass
class Context:
    settings: CycleSettings
    ledger: Ledger
    uri: str
    as_of: pd.Timestamp

    def values(self, step: str) -> dict[str, Any]:
        record = self.ledger.step(step)
        return {} if record is None else record["values"]

    @property
    def work(self) -> Path:
        return self.ledger.work_dir
