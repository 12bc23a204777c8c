"""The belief over each customer's latent parts, from their full history, through the filter.

The store calls :func:`nba.calibration.filtering.filter_states` (the twin's forward filter) on
the affected customers' whole history, so a late event is simply part of the history the next
time. The filter reads history from where the purchase record starts (capped at its
look-back); a batch is not the whole log, so the store gives it the store's own first purchase
(``record_start``): every batch then reads from the same start, and a customer's belief does
not depend on whom they share a batch with. A store without any purchase before the cutoff
(sends only, say) starts its record just before the cutoff: the belief is the prior moved by
one quiet day.

The prior is conditioned on each customer's consent as of the cutoff where they have a record
that some persona fits (:func:`nba.store.consent.belief_consent`), as the training envs'
observer conditions a new customer's: persona is a fixed trait, so the belief is the same
whenever the consent arrived.

Beliefs are stored as the joint (persona, rate level, dropout level, stage) in float32, in each
customer's record (:mod:`nba.store.records`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.belief import BeliefTracker
from nba.calibration.filtering import DEFAULT_LOOKBACK_DAYS, filter_states, history_start_of
from nba.scenario import Scenario
from nba.store.consent import belief_consent
from nba.store.rows import to_log
from nba.types import FloatArray


def belief_shape(scenario: Scenario) -> tuple[int, int, int, int]:
    """(personas, rate levels, dropout levels, stages): the axes of a stored belief."""
    from nba.parameters import ScenarioArrays

    arrays = ScenarioArrays.from_scenario(scenario)
    return (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels, arrays.n_stages)


def beliefs(
    scenario: Scenario,
    history: pd.DataFrame,
    ids: pd.Index,
    cutoff: int,
    record_start: int | None,
) -> tuple[np.ndarray, FloatArray]:
    """(N, P, Lr, Ld, K) float32 joint belief at ``cutoff`` (UTC ns) and (N,) log-likelihood.

    :param history: every stored event of ``ids`` (stored form); events at or after the cutoff
        are left out by the filter.
    :param record_start: the store's first purchase (UTC ns), or ``None`` when it has none.
    """
    start = cutoff - 1 if record_start is None else min(record_start, cutoff - 1)
    when = pd.Timestamp(cutoff, unit="ns", tz="UTC")
    belief = filter_states(
        scenario,
        to_log(history),
        when,
        customer_ids=ids,
        record_start=pd.Timestamp(start, unit="ns", tz="UTC"),
        consent=belief_consent(scenario, history, ids, cutoff),
    )
    joint = np.ascontiguousarray(belief.joint, dtype=np.float32)
    return joint, np.asarray(belief.log_likelihood, dtype=np.float64)


DAY_NS = 86_400 * 10**9


def advance_quiet(
    tracker: BeliefTracker,
    joint: np.ndarray,
    rows: np.ndarray,
    since: tuple[np.ndarray, np.ndarray],
    when: int,
    record_start: int | None,
) -> np.ndarray:
    """Move ``joint[rows]`` (stored beliefs) to ``when`` by quiet days where that is exact, in
    place; returns which of ``rows`` moved (the rest need a recompute from history).

    ``since`` is each row's (belief time, last event time), UTC ns. Exact (up to the float32 of
    storage) where nothing happened after the belief time, the gap is whole days (the filter's
    days are 24-hour periods ending at the cutoff, so the day grid stays), the filter's
    look-back does not cut the history, and the scenario reads customers as a panel or from
    their first event (read from their first purchase, one who has not bought is not observed
    yet, so quiet days are no evidence for them).
    """
    belief_ts, last_ts = since[0][rows], since[1][rows]
    gap = when - belief_ts
    ok = (gap > 0) & (gap % DAY_NS == 0) & (last_ts < belief_ts)
    read_whole = record_start is not None and when - record_start <= DEFAULT_LOOKBACK_DAYS * DAY_NS
    if not read_whole or history_start_of(tracker.arrays.scenario) == "first_purchase":
        ok[:] = False
    moved = rows[ok]
    if moved.size:
        shape = joint.shape
        belief = joint[moved].astype(np.float64).reshape(moved.size, -1, shape[-1])
        tracker.quiet(belief, (gap[ok] // DAY_NS).astype(np.int64))
        joint[moved] = belief.reshape(moved.size, *shape[1:]).astype(np.float32)
    return ok
