"""What a company's systems would record of the twin's customers: events in the log schema.

The twin knows persona and stage; a company logs only what happened at its touchpoints. One
simulated day (a :class:`~nba.twin.StepResult`) becomes the rows of the calibration event
schema (:mod:`nba.calibration.events`): the send of each executed contact (channel and offer),
its open where the channel reports opens (``reports_opens``: a noticed email, not a noticed
letter), each purchase with its value net of discount, a ``redeemed`` row beside a purchase
made with a noticed discount offer (its value the discount given), and each marketing opt-out.
A store, a calibration or a closed loop then reads the twin exactly as it reads a real system.
Times within the day keep a day's order: sends, opens, opt-outs, then purchases.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.errors import NBAValidationError
from nba.parameters import ScenarioArrays
from nba.twin import StepResult

#: hour of the day each event type is stamped at (a day's events keep this order)
EVENT_HOURS = {"sent": 9, "opened": 10, "unsubscribed": 11, "purchased": 15, "redeemed": 15}
COLUMNS = ("customer_id", "timestamp", "event", "channel", "action", "value")


def day_events(
    arrays: ScenarioArrays,
    result: StepResult,
    customer_ids: npt.ArrayLike,
    day_start: pd.Timestamp,
) -> pd.DataFrame:
    """The event rows of one simulated day of N customers (``customer_ids`` in twin order).

    :param day_start: midnight (UTC) of the simulated day.
    """
    ids = np.asarray(customer_ids).astype(str)
    n = len(result.executed)
    if ids.shape != (n,):
        raise NBAValidationError(f"customer_ids: expected {n} ids, got shape {ids.shape}")
    start = pd.Timestamp(day_start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    scenario = arrays.scenario
    channel_names = np.array(scenario.channel_names, dtype=object)
    offer_names = np.array(scenario.offer_names, dtype=object)
    reports = np.array([c.reports_opens for c in scenario.channels])
    channel = arrays.rules.action_channel[result.executed]
    offer = arrays.action_offer[result.executed]
    sent = np.flatnonzero(result.contacted)
    opened = sent[reports[channel[sent]] & result.noticed[sent]]
    bought = np.flatnonzero(result.bought)
    redeemed = np.flatnonzero(result.bought & (result.discount_cost > 0))
    parts = [
        _rows(ids, sent, "sent", channel_names[channel[sent]], offer_names[offer[sent]]),
        _rows(ids, opened, "opened", channel_names[channel[opened]], offer_names[offer[opened]]),
        _rows(ids, np.flatnonzero(result.opted_out), "unsubscribed"),
        _rows(ids, bought, "purchased", value=result.revenue[bought]),
        _rows(ids, redeemed, "redeemed", value=result.discount_cost[redeemed]),
    ]
    frame = pd.concat([p for p in parts if len(p)] or [parts[0]], ignore_index=True)
    hours = frame["event"].map(EVENT_HOURS).to_numpy(dtype=np.int64)
    frame["timestamp"] = start + pd.to_timedelta(hours, unit="h")
    return frame.loc[:, list(COLUMNS)]


def _rows(
    ids: npt.NDArray[np.str_],
    who: npt.NDArray[np.intp],
    event: str,
    channel: npt.NDArray[np.object_] | None = None,
    action: npt.NDArray[np.object_] | None = None,
    value: npt.NDArray[np.float64] | None = None,
) -> pd.DataFrame:
    """One event type's rows (timestamps are set by the caller)."""
    m = len(who)
    empty = np.full(m, None, dtype=object)
    return pd.DataFrame(
        {
            "customer_id": ids[who],
            "timestamp": pd.NaT,
            "event": np.full(m, event, dtype=object),
            "channel": empty if channel is None else channel,
            "action": empty if action is None else action,
            "value": np.full(m, np.nan) if value is None else value,
        }
    )
