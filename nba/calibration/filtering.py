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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.dynamics import outcome_model
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.state import rested_state
from nba.types import BoolArray, FloatArray, IntArray

DAY = pd.Timedelta(days=1)
DEFAULT_LOOKBACK_DAYS = 365
HISTORY_STARTS = ("log", "first_event", "first_purchase")


@dataclass(frozen=True)
class StateBelief:
    """Posterior over (persona, stage) per customer at the cutoff, and over their own levels.

    ``probs`` is (N, P, K) and sums to one per customer; ``log_likelihood`` (N,) is the log
    probability the twin gives each customer's history (higher: the twin explains them better).
    ``levels`` is the joint (N, P, Lr, Ld, K) over persona, rate level, dropout level and stage
    (``None``: one level each, ``probs`` is the whole belief); ``rate_multipliers`` (Lr,) are
    the rate levels' multipliers, for :attr:`rate_multiplier`.
    """

    customer_ids: pd.Index
    probs: FloatArray
    log_likelihood: FloatArray
    start: pd.Timestamp
    days: int
    churn_stage: int
    levels: FloatArray | None = None
    rate_multipliers: FloatArray | None = None

    @property
    def joint(self) -> FloatArray:
        """(N, P, Lr, Ld, K) posterior over persona, rate level, dropout level and stage."""
        if self.levels is None:
            return self.probs[:, :, None, None, :]
        return self.levels

    @property
    def rate_level(self) -> FloatArray:
        """(N, Lr) posterior over each customer's own purchase-rate level."""
        return self.joint.sum(axis=(1, 3, 4))

    @property
    def dropout_level(self) -> FloatArray:
        """(N, Ld) posterior over each customer's own dropout level."""
        return self.joint.sum(axis=(1, 2, 4))

    @property
    def rate_multiplier(self) -> FloatArray:
        """(N,) posterior mean of each customer's own rate multiplier (1.0 without levels)."""
        if self.rate_multipliers is None:
            return np.ones(self.probs.shape[0])
        mean: FloatArray = self.rate_level @ self.rate_multipliers
        return mean

    @property
    def churned(self) -> FloatArray:
        """(N,) posterior probability of having churned unseen."""
        return self.probs[:, :, self.churn_stage].sum(axis=1)

    @property
    def persona(self) -> FloatArray:
        """(N, P) posterior over personas."""
        return self.probs.sum(axis=2)

    @property
    def stage(self) -> FloatArray:
        """(N, K) posterior over stages."""
        return self.probs.sum(axis=1)

    def most_likely(self) -> tuple[IntArray, IntArray]:
        """(N,) persona and stage of each customer's most probable joint state."""
        n, _, k = self.probs.shape
        best = self.probs.reshape(n, -1).argmax(axis=1)
        return best // k, best % k

    def sample(self, copies: int, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
        """(copies * N,) persona and stage draws, copy-major (row ``c * N + i`` is customer i);
        :meth:`draw` gives the levels of the same draws."""
        drawn = self.draw(copies, rng)
        return drawn["persona"], drawn["stage"]

    def draw(self, copies: int, rng: np.random.Generator) -> dict[str, IntArray]:
        """(copies * N,) draws of persona, stage, rate_level and dropout_level, copy-major.

        Systematic sampling per customer: the ``copies`` draws of one customer sit at evenly
        spaced points of its CDF with one random offset, so each state gets its share of the
        copies to within one and a forecast averaged over copies carries no placement noise
        beyond that rounding.
        """
        if copies < 1:
            raise EventLogError(f"copies: {copies} must be at least 1")
        joint = self.joint
        n, shape = joint.shape[0], joint.shape[1:]
        cdf = np.cumsum(joint.reshape(n, -1), axis=1)
        cdf[:, -1] = 1.0
        points = (np.arange(copies)[:, None] + rng.random(n)[None, :]) / copies  # (copies, N)
        flat = np.empty((copies, n), dtype=np.int64)
        for c in range(copies):  # one pass per copy, each vectorised over customers
            flat[c] = (cdf < points[c][:, None]).sum(axis=1)
        persona, rate, dropout, stage = np.unravel_index(flat.ravel(), shape)
        return {"persona": persona, "stage": stage, "rate_level": rate, "dropout_level": dropout}


def filter_states(
    scenario: Scenario,
    log: EventLog,
    cutoff: pd.Timestamp | str,
    customer_ids: pd.Index | None = None,
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    history_start: str | None = None,
    chunk: int = 4_096,
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
    """
    end = utc_time(cutoff, "cutoff")
    history_start = history_start or history_start_of(scenario)
    _check_settings(lookback_days, history_start, chunk)
    history = log.events[log.events["timestamp"] < end]
    if history.empty:
        raise EventLogError(f"events: nothing before the cutoff {end}")
    recorded = history.loc[history["event"] == "purchased", "timestamp"]
    if recorded.empty:
        raise EventLogError(f"events: no 'purchased' event before the cutoff {end}")
    # the purchase record starts at its first purchase: no evidence before
    days = min(int(np.ceil((end - recorded.min()) / DAY)), lookback_days)
    start = end - days * DAY
    before_cutoff, history = history, history[history["timestamp"] >= start]
    ids = (
        pd.Index(history["customer_id"].astype(str).unique())
        if customer_ids is None
        else pd.Index(customer_ids).astype(str)
    )
    if not ids.is_unique:
        raise EventLogError(f"customer_ids: {ids[ids.duplicated()][0]!r} is listed twice")
    arrays = ScenarioArrays.from_scenario(scenario)
    bought_kernel, quiet_kernel = _kernels(arrays)

    bought = history[history["event"] == "purchased"]
    buy_row = ids.get_indexer(bought["customer_id"].astype(str))
    buy_day = _day_index(bought["timestamp"], start)
    plan_rows, plan_days, plan_actions = daily_actions(scenario, history, ids, start, days)

    n = len(ids)
    first_day, given_day = _first_days(before_cutoff, ids, start, days, history_start)
    prior = _type_prior(arrays)  # (T, K): types are persona x rate level x dropout level
    probs = np.empty((n, prior.shape[0], arrays.n_stages))
    log_likelihood = np.zeros(n)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        purchase = np.zeros((hi - lo, days), dtype=bool)
        mine = (buy_row >= lo) & (buy_row < hi)
        purchase[buy_row[mine] - lo, buy_day[mine]] = True
        action = np.zeros((hi - lo, days), dtype=np.int64)
        mine = (plan_rows >= lo) & (plan_rows < hi)
        action[plan_rows[mine] - lo, plan_days[mine]] = plan_actions[mine]
        probs[lo:hi], log_likelihood[lo:hi] = _forward(
            prior,
            purchase,
            action,
            (first_day[lo:hi], given_day[lo:hi]),
            (bought_kernel, quiet_kernel),
            ids[lo:hi],
        )
    return _belief(arrays, ids, probs, log_likelihood, start, days)


def history_start_of(scenario: Scenario) -> str:
    """How the scenario's customers are read: as its calibration recorded (a twin with each
    customer's own levels reads them from their first purchase), else ``"log"``."""
    calibration = scenario.calibration
    recorded = calibration.observables.get("history_start") if calibration else None
    return str(recorded) if recorded in HISTORY_STARTS else "log"


def _belief(
    arrays: ScenarioArrays,
    ids: pd.Index,
    probs: FloatArray,
    log_likelihood: FloatArray,
    start: pd.Timestamp,
    days: int,
) -> StateBelief:
    """The belief from the filter's (N, T, K) posterior: the joint over levels where the
    scenario has them, else (N, P, K) as it is."""
    if (arrays.n_rate_levels, arrays.n_dropout_levels) == (1, 1):
        return StateBelief(ids, probs, log_likelihood, start, days, arrays.churn_stage)
    joint = probs.reshape(
        len(ids), arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels, -1
    )
    return StateBelief(
        ids,
        joint.sum(axis=(2, 3)),
        log_likelihood,
        start,
        days,
        arrays.churn_stage,
        levels=joint,
        rate_multipliers=arrays.rate_level_multiplier.copy(),
    )


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


def _check_settings(lookback_days: int, history_start: str, chunk: int) -> None:
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

    Sends of customers outside ``ids``, outside ``[start, start + days)`` or of a campaign the
    scenario does not have are left out (the twin sees no action that day).
    """
    sent = events[events["event"] == "sent"]
    names = {name: i for i, name in enumerate(scenario.action_names)}
    labels = (
        sent["channel"].astype("string") + "_" + sent["action"].astype("string").fillna("message")
    )
    action = labels.map(names).to_numpy(dtype=float, na_value=np.nan)
    row = ids.get_indexer(sent["customer_id"].astype(str))
    day = _day_index(sent["timestamp"], start)
    ok = ~np.isnan(action) & (row >= 0) & (day >= 0) & (day < days)
    return row[ok], day[ok], action[ok].astype(np.int64)


# ------------------------------------------------------------------------------ internals
def _type_prior(arrays: ScenarioArrays) -> FloatArray:
    """(T, K) prior over (type, first stage); types persona-major, then rate, then dropout
    level, each level drawn independently of persona from its shares (as the twin does)."""
    prior: FloatArray = np.einsum(
        "p,r,d,pk->prdk",
        arrays.persona_share,
        arrays.rate_level_share,
        arrays.dropout_level_share,
        arrays.persona_initial_stage,
    ).reshape(-1, arrays.n_stages)
    return prior


def _kernels(arrays: ScenarioArrays) -> tuple[FloatArray, FloatArray]:
    """(A, T, K, K) joint probabilities of (purchase today, next stage) from each (type,
    stage) under each action; one array for a purchase day, one for a quiet day."""
    n_stages, n_actions = arrays.n_stages, arrays.n_actions
    dims = (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels)
    n_types = int(np.prod(dims))
    pairs = n_types * n_stages
    persona, rate, dropout = (np.repeat(d, n_stages) for d in np.indices(dims).reshape(3, -1))
    state = rested_state(
        arrays,
        np.tile(persona, n_actions),
        np.tile(np.tile(np.arange(n_stages), n_types), n_actions),
        rate_level=np.tile(rate, n_actions),
        dropout_level=np.tile(dropout, n_actions),
    )
    outcomes = outcome_model(arrays, state, np.repeat(np.arange(n_actions), pairs))
    cases, moves = outcomes.case_probs, outcomes.next_stage  # (size, 4), (size, 4, K)
    shape = (n_actions, n_types, n_stages, n_stages)
    bought = cases[:, 1, None] * moves[:, 1] + cases[:, 3, None] * moves[:, 3]
    quiet = cases[:, 0, None] * moves[:, 0] + cases[:, 2, None] * moves[:, 2]
    return bought.reshape(shape), quiet.reshape(shape)


def _forward(
    prior: FloatArray,
    purchase: BoolArray,
    action: IntArray,
    observed_from: tuple[IntArray, IntArray],
    kernels: tuple[FloatArray, FloatArray],
    names: pd.Index,
) -> tuple[FloatArray, FloatArray]:
    """Normalised forward recursion; returns the (n, T, K) belief and (n, ) log-likelihood.

    Event-driven: most of a customer's days are quiet and uncontacted, and a run of ``g`` such
    days is one product with the no-action quiet kernel's ``g``-th power (precomputed per
    type), so the work is per event (a purchase or a send), not per day. The normalisers
    multiply to the same evidence as day by day, so the result is the same posterior.
    ``observed_from`` is each customer's first observed day and the day of the purchase that
    starts them (-1: none); that purchase is conditioned on: the customer moves from the
    journey's entry stage (the scenario's first) as after a purchase, the types keep their
    prior odds and the likelihood gains nothing.
    """
    first_day, given_day = observed_from
    bought_kernel, quiet_kernel = kernels
    n, days = purchase.shape
    given = _given_purchase(bought_kernel) if (given_day >= 0).any() else bought_kernel
    entry = np.zeros_like(prior)
    entry[:, 0] = prior.sum(axis=1)
    powers = _quiet_powers(quiet_kernel[0], days)
    eventful = (purchase | (action != 0)) & (np.arange(days)[None, :] >= first_day[:, None])
    rows, event_day = np.nonzero(eventful)  # by customer, then day
    counts = np.bincount(rows, minlength=n)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    belief = np.broadcast_to(prior, (n, *prior.shape)).copy()
    log_likelihood = np.zeros(n)
    now = np.minimum(first_day, days)  # the day each belief stands at the start of
    for j in range(int(counts.max(initial=0))):
        who = np.flatnonzero(counts > j)
        day = event_day[offsets[who] + j]
        log_likelihood[who] += _advance(belief, who, powers[day - now[who]], names, day)
        bought, chosen = purchase[who, day], action[who, day]
        kernel = np.where(bought[:, None, None, None], bought_kernel[chosen], quiet_kernel[chosen])
        start = given_day[who] == day
        if start.any():  # from the entry stage, as a customer before buying
            kernel[start] = given[chosen[start]]
            belief[who[start]] = entry
        gained = _advance(belief, who, kernel, names, day)
        log_likelihood[who] += np.where(start, 0.0, gained)
        now[who] = day + 1
    rest = np.flatnonzero(now < days)  # quiet to the cutoff
    log_likelihood[rest] += _advance(
        belief, rest, powers[days - now[rest]], names, np.full(len(rest), days - 1)
    )
    return belief, log_likelihood


def _quiet_powers(quiet: FloatArray, days: int) -> FloatArray:
    """(days + 1, T, K, K): the no-action quiet kernel of each type to the powers 0..days."""
    powers = np.empty((days + 1, *quiet.shape))
    powers[0] = np.eye(quiet.shape[-1])
    for g in range(1, days + 1):
        np.matmul(powers[g - 1], quiet, out=powers[g])
    return powers


def _advance(
    belief: FloatArray, who: IntArray, kernel: FloatArray, names: pd.Index, day: IntArray
) -> FloatArray:
    """Move ``belief[who]`` (m, T, K) by each one's (m, T, K, K) kernel and normalise, in
    place; returns the (m,) log of the probability mass kept (the step's evidence)."""
    moved = np.matmul(belief[who][:, :, None, :], kernel)[:, :, 0, :]
    total = moved.sum(axis=(1, 2))
    if (total <= 0).any():
        bad = int(np.flatnonzero(total <= 0)[0])
        raise EventLogError(
            f"events: the twin gives customer {names[who[bad]]!r}'s history by day "
            f"{int(day[bad])} probability zero (a purchase in a state that cannot buy); check "
            "the scenario"
        )
    belief[who] = moved / total[:, None, None]
    logs: FloatArray = np.log(total)
    return logs


def _given_purchase(bought_kernel: FloatArray) -> FloatArray:
    """(A, T, K, K) the stage moves given a purchase from each (type, stage): the purchase
    kernel's rows divided by the purchase probability (zero rows where none can buy)."""
    odds = bought_kernel.sum(axis=-1, keepdims=True)
    given: FloatArray = np.divide(
        bought_kernel, odds, out=np.zeros_like(bought_kernel), where=odds > 0
    )
    return given


def _day_index(stamps: pd.Series, start: pd.Timestamp) -> IntArray:
    return ((stamps - start).dt.total_seconds() // 86_400).to_numpy().astype(np.int64)
