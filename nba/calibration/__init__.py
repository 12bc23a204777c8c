"""A digital twin from real data: event logs in, a calibrated scenario and its audit out."""

from nba.calibration.audit import AuditResult, audit
from nba.calibration.events import EVENT_TYPES, EventLog, EventLogError, load_events, save_events
from nba.calibration.filtering import StateBelief, filter_states
from nba.calibration.fit import CalibrationResult, calibrate
from nba.calibration.forecast import ForecastAudit, forecast_audit

__all__ = [
    "EVENT_TYPES",
    "AuditResult",
    "CalibrationResult",
    "EventLog",
    "EventLogError",
    "ForecastAudit",
    "StateBelief",
    "audit",
    "calibrate",
    "filter_states",
    "forecast_audit",
    "load_events",
    "save_events",
]
