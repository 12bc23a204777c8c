"""A digital twin from real data: event logs in, a calibrated scenario and its audit out."""

from nba.calibration.audit import AuditResult, audit
from nba.calibration.events import EVENT_TYPES, EventLog, EventLogError, load_events, save_events
from nba.calibration.fit import CalibrationResult, calibrate

__all__ = [
    "EVENT_TYPES",
    "AuditResult",
    "CalibrationResult",
    "EventLog",
    "EventLogError",
    "audit",
    "calibrate",
    "load_events",
    "save_events",
]
