"""Hillstrom calibrated once per session: the fixture most calibration tests read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nba.calibration import CalibrationResult, EventLog, calibrate
from nba.calibration.adapters import hillstrom


@dataclass(frozen=True)
class HillstromSplit:
    calibration: EventLog
    holdout: EventLog
    result: CalibrationResult


@pytest.fixture(scope="session")
def hillstrom_log(shared_data: Path) -> EventLog:
    return hillstrom(shared_data / "hillstrom" / "hillstrom.csv")


@pytest.fixture(scope="session")
def hillstrom_split(hillstrom_log: EventLog) -> HillstromSplit:
    """Customers split in halves by the CLI's rule (seed 0); calibrated on the first."""
    ids = hillstrom_log.customer_ids
    held = np.random.default_rng(0).random(len(ids)) < 0.5
    calibration = hillstrom_log.for_customers(ids[~held])
    holdout = hillstrom_log.for_customers(ids[held])
    result = calibrate(calibration, n_bootstrap=100, seed=0, data_label="hillstrom")
    return HillstromSplit(calibration, holdout, result)
