"""Hillstrom calibrated once per session: the fixture most calibration tests read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.calibration import CalibrationResult, EventLog, calibrate
from nba.datasets import fetch_hillstrom


@dataclass(frozen=True)
class HillstromSplit:
    calibration: EventLog
    holdout: EventLog
    result: CalibrationResult


@pytest.fixture(scope="session")
def hillstrom_log(data_home: Path) -> EventLog:
    return fetch_hillstrom(data_home=data_home, download_if_missing=False)


@pytest.fixture(scope="session")
def hillstrom_split(hillstrom_log: EventLog) -> HillstromSplit:
    """Customers split in halves by the CLI's rule (seed 0); calibrated on the first."""
    ids = hillstrom_log.customer_ids
    held = np.random.default_rng(0).random(len(ids)) < 0.5
    calibration = hillstrom_log.for_customers(ids[~held])
    holdout = hillstrom_log.for_customers(ids[held])
    result = calibrate(calibration, n_bootstrap=100, seed=0, data_label="hillstrom")
    return HillstromSplit(calibration, holdout, result)


def purchase_log(
    bought: np.ndarray,
    start: pd.Timestamp,
    *,
    hours: np.ndarray | float,
    values: np.ndarray | float,
    mailed: np.ndarray,
    send_day: int,
) -> EventLog:
    """An event log from a (customers, days) purchase matrix, plus one newsletter e-mail to
    ``mailed`` on ``send_day`` (calibration needs a channel to exist)."""
    who, day = np.nonzero(bought)
    purchases = pd.DataFrame(
        {
            "customer_id": who.astype(str),
            "timestamp": start + pd.to_timedelta(day, unit="D") + pd.to_timedelta(hours, unit="h"),
            "event": "purchased",
            "value": values,
        }
    )
    sends = pd.DataFrame(
        {
            "customer_id": np.asarray(mailed).astype(str),
            "timestamp": start + pd.Timedelta(days=send_day),
            "event": "sent",
            "channel": "email",
            "action": "newsletter",
        }
    )
    return EventLog.from_frames(pd.concat([purchases, sends], ignore_index=True))
