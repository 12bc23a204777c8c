"""Where each customer stands in the twin, inferred from their own history by the twin itself.

Rules place a customer by thresholds on recency and frequency: every customer of a persona and
stage then gets the same forecast. But persona and stage are the twin's latent state, and the
twin is a hidden Markov model of them: it says how likely each day's purchase (or none) is in
each state under the day's action, and how the stage moves. :func:`filter_states` runs the
forward algorithm of that model over each customer's daily history, so the belief at the cutoff
is the exact posterior ``P(persona, stage | history)`` under the twin's own numbers. A heavy
buyer is placed among the high-rate personas, a long silence moves weight to ``churned``; the
same arithmetic as BG/NBD's "probability alive", with the twin's stages instead of a formula.

What the filter conditions on: purchase days and the logged sends the scenario knows (other
sends count as no action). Contact pressure, discount habit and opt-outs are held at their
rested values (:func:`nba.state.rested_state`, as in :meth:`ObservedCustomers.initial_state`).
The prior on the first day read (the log's, or with ``history_start="first_event"`` each
customer's own) is the scenario's persona shares and starting stages.

Individual levels: a scenario with a ``heterogeneity`` block gives each customer a static
purchase-rate and dropout level. Like persona they never change, so the filter treats persona x
rate level x dropout level as one fixed "type" axis (prior: the product of their shares) and
the recursion is the same; the belief keeps the joint over levels (:attr:`StateBelief.joint`)
and its (persona, stage) view sums them out.

The recursion is the product's one belief tracker, :class:`nba.belief.BeliefTracker`; this module
reads the event log into its (customers x days) purchase and send matrices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.belief import BeliefTracker, ImpossibleHistoryError, StateBelief
from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.scenario import Scenario
from nba.types import IntArray

__all__ = ["HISTORY_STARTS", "StateBelief", "daily_actions", "filter_states", "history_start_of"]

DAY = pd.Timedelta(days=1)
DEFAULT_LOOKBACK_DAYS = 365
HISTORY_STARTS = ("log", "first_event", "first_purchase")


def filter_states(
    scenario: Scenario,
    log: EventLog,
    cutoff: pd.Timestamp | str,
    customer_ids: pd.Index | None = None,
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    history_start: str | None = None,
    chunk: int = 4_096,
    record_start: pd.Timestamp | None = None,
    consent: pd.DataFrame | None = None,
) -> StateBelief:
    """Posterior (persona, stage) of each customer at ``cutoff`` from their history before it.

    Days are the 24-hour periods ending at ``cutoff``, so the belief hands over to a twin run
    that starts at the cutoff whatever its time of day.

    :param customer_ids: whom to place (default: every customer with an event in the days
        read); a customer without events there is placed by the twin's odds of a silent history.
    :param lookback_days: days of history read, from the log's first purchase at the earliest
        (before it the log does not record purchases, so quiet days there are no evidence).
    :param history_start: ``"log"``: a panel that records everyone from the log's first
        purchase on (Complete Journey); ``"first_event"``: each customer is observed from
        their own first event (a sign-up, a first purchase), so a customer who arrived later
        is not read as quiet before arriving; until then their belief is the prior.
        ``"first_purchase"``: each customer is observed from their own first purchase, which
        is their start, not evidence of how often they buy (BG/NBD's convention: a log of
        purchases only holds customers *because* they bought, so reading that purchase as
        evidence would place everyone among the heavy buyers). That day moves the customer
        from the journey's entry stage (the scenario's first) as a purchase does, and adds
        nothing to the likelihood. ``None``: the scenario's own (:func:`history_start_of`).
    :param chunk: customers per block of the recursion (bounds memory: chunk x days booleans,
        and each event's kernels, chunk x types x stages^2 numbers).
    :param record_start: when the purchase record starts (default: the log's first purchase);
        give it when ``log`` is part of a larger record (a store's batch of customers), so a
        customer's belief does not depend on whom they share the batch with.
    :param consent: what each listed customer granted marketing consent on: booleans indexed
        by customer id, one column per scenario channel (an absent channel is not granted; one
        that needs no consent counts as granted, as the twin's personas have it). A listed
        customer's prior is conditioned on it, as :meth:`BeliefTracker.prior` does for the
        envs' customers at sign-up (persona is a fixed trait, so this is exact at any cutoff);
        customers not listed keep the unconditioned prior. A pattern no persona grants is
        refused by customer id (callers that prefer the unconditioned prior leave them out).
    """
    end = utc_time(cutoff, "cutoff")
    history_start = history_start or history_start_of(scenario)
    check_filter_settings(lookback_days, history_start, chunk)
    history = log.events[log.events["timestamp"] < end]
    if history.empty and record_start is None:
        raise EventLogError(f"events: nothing before the cutoff {end}")
    begins = record_start_of(history, end, record_start)  # no evidence before it
    days = min(max(int(np.ceil((end - begins) / DAY)), 1), lookback_days)
    start = end - days * DAY
    before_cutoff, history = history, history[history["timestamp"] >= start]
    ids = filtered_customers(history, customer_ids)
    tracker = BeliefTracker(scenario)

    bought = history[history["event"] == "purchased"]
    buy_row = ids.get_indexer(bought["customer_id"].astype(str))
    buy_day = _day_index(bought["timestamp"], start)
    plan_rows, plan_days, plan_actions = daily_actions(scenario, history, ids, start, days)

    n = len(ids)
    first_day, given_day = _first_days(before_cutoff, ids, start, days, history_start)
    probs, log_likelihood = np.empty((n, tracker.n_types, tracker.n_stages)), np.zeros(n)
    for lo in range(0, n, chunk):
        rows = slice(lo, min(n, lo + chunk))
        purchase = np.zeros((rows.stop - lo, days), dtype=bool)
        mine = (buy_row >= lo) & (buy_row < rows.stop)
        purchase[buy_row[mine] - lo, buy_day[mine]] = True
        action = np.zeros((rows.stop - lo, days), dtype=np.int64)
        mine = (plan_rows >= lo) & (plan_rows < rows.stop)
        action[plan_rows[mine] - lo, plan_days[mine]] = plan_actions[mine]
        probs[rows], log_likelihood[rows] = _run(
            tracker, purchase, action, first_day, given_day, rows, ids
        )
    if consent is not None:
        _condition_on_consent(scenario, tracker, probs, log_likelihood, ids, consent)
    return tracker.state_belief(probs, ids, log_likelihood, start, days)


def _run(
    tracker: BeliefTracker,
    purchase: np.ndarray,
    action: np.ndarray,
    first_day: np.ndarray,
    given_day: np.ndarray,
    rows: slice,
    ids: pd.Index,
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`BeliefTracker.run` on one block of customers, an impossible history named by id."""
    try:
        return tracker.run(purchase, action, first_day[rows], given_day[rows], chunk=len(purchase))
    except ImpossibleHistoryError as error:
        raise EventLogError(
            f"events: the twin gives customer {ids[rows.start + error.row]!r}'s history by day "
            f"{error.day} probability zero (a purchase in a state that cannot buy); check "
            "the scenario"
        ) from error


def _condition_on_consent(
    scenario: Scenario,
    tracker: BeliefTracker,
    probs: np.ndarray,
    log_likelihood: np.ndarray,
    ids: pd.Index,
    consent: pd.DataFrame,
) -> None:
    """``filter_states``'s ``consent``, in place. Persona never changes, so conditioning the
    prior on it is the unconditioned posterior times the consent's 0/1 weight per type,
    renormalised; the log likelihood gains log P(consent | history) - log P(consent)."""
    if not isinstance(consent, pd.DataFrame):
        raise EventLogError(f"consent: expected a DataFrame, got {type(consent).__name__}")
    channels = list(scenario.channel_names)
    unknown = [c for c in consent.columns if c not in channels]
    if unknown:
        raise EventLogError(f"consent: unknown channel(s) {unknown}; expected {channels}")
    if not all(pd.api.types.is_bool_dtype(consent[c]) for c in consent.columns):
        raise EventLogError("consent: expected boolean columns")
    listed = consent.index.astype(str)
    if listed.has_duplicates:
        raise EventLogError(f"consent: customer {listed[listed.duplicated()][0]!r} listed twice")
    rows = ids.get_indexer(listed)
    keep = rows >= 0
    rows = rows[keep]
    if rows.size == 0:
        return
    arrays = tracker.arrays
    needs = np.array([c.requires_consent for c in scenario.channels], dtype=bool)
    granted = consent.reindex(columns=channels, fill_value=False).to_numpy(dtype=bool)[keep]
    granted |= ~needs
    fits = (granted[:, None, :] == arrays.persona_consent[None]).all(axis=2)  # (m, P)
    if not fits.any(axis=1).all():
        who = ids[rows[int(np.flatnonzero(~fits.any(axis=1))[0])]]
        raise EventLogError(
            f"consent: customer {who!r}'s consent fits no persona of scenario {scenario.name!r}"
        )
    weight = np.repeat(fits.astype(float), tracker.n_types // arrays.n_personas, axis=1)
    belief = probs[rows] * weight[:, :, None]
    mass = belief.sum(axis=(1, 2))
    if not (mass > 0).all():
        who = ids[rows[int(np.flatnonzero(~(mass > 0))[0])]]
        raise EventLogError(
            f"events: the twin gives customer {who!r}'s history probability zero under their "
            "consent (no persona with that consent could have had it); check the scenario"
        )
    probs[rows] = belief / mass[:, None, None]
    prior_mass = (weight * tracker.type_prior.sum(axis=1)[None, :]).sum(axis=1)
    log_likelihood[rows] += np.log(mass) - np.log(prior_mass)


def filtered_customers(history: pd.DataFrame, customer_ids: pd.Index | None) -> pd.Index:
    """Whom to place: as given (each once), else everyone with an event in the days read."""
    ids = (
        pd.Index(history["customer_id"].astype(str).unique())
        if customer_ids is None
        else pd.Index(customer_ids).astype(str)
    )
    if not ids.is_unique:
        raise EventLogError(f"customer_ids: {ids[ids.duplicated()][0]!r} is listed twice")
    return ids


def record_start_of(
    history: pd.DataFrame, end: pd.Timestamp, given: pd.Timestamp | None
) -> pd.Timestamp:
    """When the purchase record starts: ``given``, else the first purchase before ``end``."""
    if given is not None:
        begins = utc_time(given, "record_start")
        if begins >= end:
            raise EventLogError(f"record_start: {begins} is not before the cutoff {end}")
        return begins
    recorded = history.loc[history["event"] == "purchased", "timestamp"]
    if recorded.empty:
        raise EventLogError(f"events: no 'purchased' event before the cutoff {end}")
    return pd.Timestamp(recorded.min())


def history_start_of(scenario: Scenario) -> str:
    """How the scenario's customers are read: as its calibration recorded (a twin with each
    customer's own levels reads them from their first purchase), else ``"log"``."""
    calibration = scenario.calibration
    recorded = calibration.observables.get("history_start") if calibration else None
    return str(recorded) if recorded in HISTORY_STARTS else "log"


def _first_days(
    events: pd.DataFrame, ids: pd.Index, start: pd.Timestamp, days: int, history_start: str
) -> tuple[IntArray, IntArray]:
    """(N,) the day each customer is observed from (``days``: never, the prior stands), and
    (N,) the day of the purchase that is their start (-1: none, with ``"first_purchase"``
    only, and only where that purchase is in the days read)."""
    first_day = np.zeros(len(ids), dtype=np.int64)
    given_day = np.full(len(ids), -1, dtype=np.int64)
    if history_start != "log":
        if history_start == "first_purchase":
            events = events[events["event"] == "purchased"]
        who = events["customer_id"].astype(str)
        stamps = events.groupby(who)["timestamp"].min().reindex(ids)
        observed = stamps.notna().to_numpy()
        first_day[~observed] = days  # no event at all: never observed
        day = _day_index(stamps[observed], start)
        first_day[observed] = np.maximum(day, 0)
        if history_start == "first_purchase":
            given_day[np.flatnonzero(observed)[day >= 0]] = day[day >= 0]
    return first_day, given_day


def check_filter_settings(lookback_days: int, history_start: str, chunk: int) -> None:
    """Refuse a filter setting out of range, naming it (also checked by the Ray driver)."""
    for name, value in (("lookback_days", lookback_days), ("chunk", chunk)):
        if not isinstance(value, int) or value < 1:
            raise EventLogError(f"{name}: expected a positive whole number, got {value!r}")
    if history_start not in HISTORY_STARTS:
        raise EventLogError(
            f"history_start: {history_start!r} is not one of {list(HISTORY_STARTS)}"
        )


def daily_actions(
    scenario: Scenario, events: pd.DataFrame, ids: pd.Index, start: pd.Timestamp, days: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Customer row, day and twin action index of each logged send the scenario knows.

    A send is the action named ``<channel>_<action>`` or, failing that, the action of its
    channel and offer. Sends of customers outside ``ids``, outside ``[start, start + days)`` or
    of a campaign the scenario does not have are left out (the twin sees no action that day).
    """
    sent = events[events["event"] == "sent"]
    names = {name: i for i, name in enumerate(scenario.action_names)}
    channel, offer = sent["channel"].astype("string"), sent["action"].astype("string")
    # a send names its twin action as ``<channel>_<action>`` (calibrated twins' campaigns), or
    # by its channel and offer (what the twin's own events and most CRMs log)
    pairs = {f"{a.channel}\x00{a.offer}": i + 1 for i, a in enumerate(scenario.actions)}
    action = (channel + "_" + offer.fillna("message")).map(names)
    action = action.fillna((channel + "\x00" + offer).map(pairs))
    action = action.to_numpy(dtype=float, na_value=np.nan)
    row = ids.get_indexer(sent["customer_id"].astype(str))
    day = _day_index(sent["timestamp"], start)
    ok = ~np.isnan(action) & (row >= 0) & (day >= 0) & (day < days)
    return row[ok], day[ok], action[ok].astype(np.int64)


def _day_index(stamps: pd.Series, start: pd.Timestamp) -> IntArray:
    return ((stamps - start).dt.total_seconds() // 86_400).to_numpy().astype(np.int64)
