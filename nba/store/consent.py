"""Consent in the store: which channels each customer granted, as the scorer and the filter read it.

A company always knows consent, so the store keeps it from ``consented`` events (one per channel
granted; the first one per channel counts, from its time on; the ``unsubscribed`` opt-out
withdraws every channel that needs consent, as in the twin and the scorer).

Two readers:

- the scoring request (:func:`consent_columns`): ``consent_<channel>`` booleans for every
  channel, so the scorer applies the customer's own consent, never a persona's default;
- the belief (:func:`belief_consent`): the twin's personas carry their consent, so a customer's
  consent pattern says which personas they can be (on ``retail`` exactly one), and the stored
  belief's prior is conditioned on it as the training envs' observer conditions a new
  customer's (:meth:`nba.belief.BeliefTracker.prior`).

A customer with no ``consented`` event before the time asked has no consent record. By default
(``consent_required=True``, a store setting) that means no consent on any channel that needs
it: contacting someone on a channel they never granted is the compliance failure this module
exists to prevent, and a missing record is far likelier a customer who did not grant than a
grant the company lost. A store created with ``consent_required=False`` gives such customers
the MOST LIKELY PERSONA'S DEFAULT CONSENT instead (what the scorer applies to a request without
consent columns): only for a twin's simulated customers or a company whose consent lives
elsewhere. Either way their belief keeps the unconditioned prior (there is nothing to condition
on).

A consent pattern no persona of the scenario has (real customers mix channels freely; the
twin's personas are a coarse model) does not stop a batch: that customer's belief keeps the
unconditioned prior, the state's ``belief_consent`` column says ``"fits_no_persona"``, and the
scorer still applies the consent itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.calibration.events import EventLogError
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.store.observed import ObservedRules
from nba.store.rows import CODE
from nba.types import BoolArray

CONSENT = "consent_"  # the scoring request's prefix (nba.serving.schema.CONSENT)
#: ``belief_consent`` values: the belief's prior is conditioned on the customer's consent, or
#: not because there is no record, or not because no persona has that consent pattern
CONDITIONED, NO_RECORD, FITS_NO_PERSONA = "conditioned", "no_record", "fits_no_persona"


def open_channels(scenario: Scenario) -> BoolArray:
    """(C,) channels that need no consent (paid social audiences): open to every customer."""
    return np.array([not c.requires_consent for c in scenario.channels], dtype=bool)


def fits_persona(arrays: ScenarioArrays, granted: BoolArray) -> BoolArray:
    """(N,) whether some persona has exactly the consent ``granted`` (N, C) (channels needing
    no consent included as granted, as the personas have them)."""
    return np.asarray((granted[:, None, :] == arrays.persona_consent[None]).all(axis=2).any(axis=1))


def refuse_unknown_channels(batch: pd.DataFrame, rules: ObservedRules, scenario: Scenario) -> None:
    """A ``consented`` event on a channel the scenario does not have, refused by row and field
    (``batch`` in the stored form, rows in the event log's order)."""
    consented = batch["event"].to_numpy() == CODE["consented"]
    if not consented.any():
        return
    channel = batch["channel"].to_numpy(dtype=object)
    unknown = consented & ~np.isin(channel, np.array(rules.channels, dtype=object))
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise EventLogError(
            f"events row {row}, channel: {channel[row]!r} on a 'consented' event is not a channel "
            f"of scenario {scenario.name!r}; expected one of {list(rules.channels)}"
        )


def granted_before(
    history: pd.DataFrame, ids: pd.Index, channels: tuple[str, ...], cutoff: int
) -> tuple[BoolArray, BoolArray]:
    """((N,) has a consent record, (N, C) channels granted) from ``consented`` events of the
    stored-form ``history`` before ``cutoff`` (UTC ns)."""
    granted = np.zeros((len(ids), len(channels)), dtype=bool)
    mine = (history["event"].to_numpy() == CODE["consented"]) & (
        history["ts"].to_numpy(dtype=np.int64) < cutoff
    )
    rows = ids.get_indexer(pd.Index(history["customer_id"].to_numpy()[mine]))
    column = pd.Index(channels).get_indexer(pd.Index(history["channel"].to_numpy()[mine]))
    ok = (rows >= 0) & (column >= 0)
    granted[rows[ok], column[ok]] = True
    recorded = np.zeros(len(ids), dtype=bool)
    recorded[rows[rows >= 0]] = True
    return recorded, granted


def belief_consent(
    scenario: Scenario, history: pd.DataFrame, ids: pd.Index, cutoff: int
) -> pd.DataFrame:
    """The consent :func:`nba.calibration.filtering.filter_states` conditions the beliefs of
    ``ids`` on at ``cutoff``: customers with a record whose pattern some persona has (the rest
    keep the unconditioned prior; see the module docstring)."""
    channels = tuple(scenario.channel_names)
    recorded, granted = granted_before(history, ids, channels, cutoff)
    granted |= open_channels(scenario)
    usable = recorded & fits_persona(ScenarioArrays.from_scenario(scenario), granted)
    return pd.DataFrame(granted[usable], index=ids[usable], columns=list(channels))


def consent_columns(
    arrays: ScenarioArrays,
    scenario: Scenario,
    consented: BoolArray,
    likely_persona: np.ndarray,
    consent_required: bool,
) -> dict[str, np.ndarray]:
    """``consent_<channel>`` booleans of every channel and the ``belief_consent`` verdict, from
    the (N, C) channels granted as of the time asked (:func:`nba.store.observed.state_at`)."""
    recorded: BoolArray = np.asarray(consented.any(axis=1))
    granted = consented | open_channels(scenario)
    fits = fits_persona(arrays, granted)
    if consent_required:
        unrecorded = np.broadcast_to(open_channels(scenario), granted.shape)
    else:  # the scorer's own default: the most likely persona's consent
        unrecorded = arrays.persona_consent[likely_persona]
    granted = np.where(recorded[:, None], granted, unrecorded)
    columns = {
        f"{CONSENT}{name}": granted[:, c].copy() for c, name in enumerate(scenario.channel_names)
    }
    verdict = np.where(fits, CONDITIONED, FITS_NO_PERSONA).astype(object)
    verdict[~recorded] = NO_RECORD
    columns["belief_consent"] = verdict
    return columns


__all__ = [
    "CONDITIONED",
    "CONSENT",
    "FITS_NO_PERSONA",
    "NO_RECORD",
    "belief_consent",
    "consent_columns",
    "fits_persona",
    "granted_before",
    "open_channels",
    "refuse_unknown_channels",
]
