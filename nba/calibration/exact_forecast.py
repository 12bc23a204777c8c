"""Exact expected forecasts: each customer's purchases, spend and P(alive) over a future window.

Simulating the twin gives a forecast with Monte Carlo noise that shrinks only with the square
root of the replicates, and it costs a twin run per replicate. The expectations do not need
sampling: the twin is a Markov chain with a known kernel, so from a customer's filtered belief
``b_0`` (a distribution over states, :func:`~nba.calibration.filtering.filter_states`) the
forward equations ``b_{t+1} = b_t P_{a_t}`` give the exact state distribution on every day of
the window under the plan's actions ``a_t``, and

* expected purchases ``= sum_t b_t . q(a_t)`` with ``q[s, a]`` the chance of a purchase that day;
* expected spend ``= sum_t b_t . m(a_t)`` with ``m[s, a]`` the expected revenue (net of the
  discount a noticed offer gives away), as the twin books it;
* ``P(alive at the end) = 1 - b_H . churned``.

The kernel is the scenario's own (:func:`nba.kernel.build_kernel`), restricted to the states
reachable from the beliefs' support under the plan's actions, so whatever components the state
space declares are carried along. An action the contact rules forbid in a state on that weekday
is executed as no action, as the twin does.

The sums are computed in their adjoint (backward) form, ``b_0 . V_0`` with
``V_t = q(a_t) + P(a_t) V_{t+1}``: the same numbers, but the recursion runs once per distinct
plan rather than once per customer, so "no action" (or one campaign calendar) for 25,000
customers is one vector recursion and one product with the beliefs. Its cost grows with the
number of distinct plans times the states they reach: thousands of individual plans over the
full contact-history space take minutes (measured: 2,000 random plans of 3 sends over 273
days on retail, 89 s on 2 cores). Monte Carlo stays for distributions
(:mod:`nba.calibration.forecast`).

Units: the twin buys at most once a day, so ``expected_purchases`` counts purchase days;
``expected_baskets`` scales them by the history's mean baskets per purchase day (the same
conversion the forecast audit draws at random; its expectation is exactly this product).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.calibration.filtering import (
    DEFAULT_LOOKBACK_DAYS,
    StateBelief,
    daily_actions,
    filter_states,
)
from nba.kernel import build_kernel
from nba.scenario import Scenario
from nba.twin import CustomerTwin, level_shares
from nba.types import BoolArray, FloatArray, IntArray

DAY = pd.Timedelta(days=1)
HORIZON_UNITS = {"d": 1, "w": 7}
#: Value cells (3 x reachable states x distinct plans) held at once by the recursion.
VALUE_CELLS = 4_000_000
COLUMNS = (
    "customer_id",
    "window_start",
    "window_end",
    "expected_purchases",
    "expected_baskets",
    "expected_spend",
    "p_alive_start",
    "p_alive_end",
)


def parse_horizon(value: int | str, name: str = "horizon") -> int:
    """Days in a horizon given as days (``273``, ``"273d"``) or weeks (``"39w"``).

    :param name: the option named in errors.
    """
    if isinstance(value, bool):
        raise EventLogError(f"{name}: expected days ('273d') or weeks ('39w'), got {value!r}")
    if isinstance(value, (int, np.integer)):
        days = int(value)
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", str(value).lower())
        if match is None:
            raise EventLogError(
                f"{name}: expected days ('273d') or weeks ('39w'), got {str(value)[:40]!r}"
            )
        days = int(match.group(1)) * HORIZON_UNITS[match.group(2) or "d"]
    if days < 1:
        raise EventLogError(f"{name}: must be at least one day, got {value!r}")
    return days


@dataclass(frozen=True)
class ForwardModel:
    """The kernel on the states a forecast can reach, with each day's expected outcomes.

    ``states`` are full state-space indices; every array is indexed by position in it.
    """

    states: IntArray  # (R,)
    transition: dict[int, sp.csr_matrix]  # action -> (R, R), rows: from, columns: to
    purchase: FloatArray  # (R, A) P(purchase today | state, executed action)
    revenue: FloatArray  # (R, A) E[revenue today | state, executed action]
    allowed: BoolArray  # (7, R, A) the contact rules' masks per weekday
    alive: FloatArray  # (R,) 1.0 outside the churn stage

    @classmethod
    def build(cls, twin: CustomerTwin, start: IntArray, actions: IntArray) -> ForwardModel:
        """Restrict ``twin``'s kernel to the states reachable from ``start`` under ``actions``
        (and no action, which a forbidden action becomes)."""
        kernel = build_kernel(twin)
        space, n_actions = twin.space, twin.arrays.n_actions
        used = np.union1d([0], actions).astype(np.int64)
        rows = np.arange(space.size) * n_actions
        full = {int(a): kernel.transition[rows + a] for a in used}
        reach = _reachable(np.unique(start), sum(full.values()), space.size)
        keep = np.ix_(reach, reach)
        transition = {a: sp.csr_matrix(matrix[keep]) for a, matrix in full.items()}
        pairs = np.repeat(space.response_key(reach) * n_actions, n_actions) + np.tile(
            np.arange(n_actions), reach.shape[0]
        )
        out = twin.tables.outcomes.take(pairs)
        cases = out.case_probs
        purchase = (cases[:, 1] + cases[:, 3]).reshape(-1, n_actions)
        revenue = (out.spend * (cases[:, 1] + cases[:, 3] * (1.0 - out.discount))).reshape(
            -1, n_actions
        )
        churned = space.decode(reach).stage == twin.arrays.churn_stage
        return cls(
            states=reach,
            transition=transition,
            purchase=purchase,
            revenue=revenue,
            allowed=kernel.masks[:, reach],
            alive=(~churned).astype(np.float64),
        )

    def position(self, states: IntArray) -> IntArray:
        """Position of each full-space state index in :attr:`states`."""
        found: IntArray = np.searchsorted(self.states, states)
        return found


def _reachable(start: IntArray, pattern: sp.csr_matrix, size: int) -> IntArray:
    """Sorted states reachable from ``start`` through the nonzeros of ``pattern``."""
    seen = np.zeros(size, dtype=bool)
    seen[start] = True
    frontier = start
    while frontier.size:
        successors = np.unique(pattern[frontier].indices)
        frontier = successors[~seen[successors]]
        seen[frontier] = True
    return np.flatnonzero(seen)


@dataclass(frozen=True)
class Expectations:
    """(N,) exact expectations over the window."""

    purchases: FloatArray
    spend: FloatArray
    p_alive_start: FloatArray
    p_alive_end: FloatArray


def expected_outcomes(
    scenario: Scenario | CustomerTwin,
    belief: StateBelief,
    horizon_days: int,
    plan: IntArray | None = None,
    *,
    start_weekday: int | None = None,
) -> Expectations:
    """Exact expected purchases, spend and P(alive) of each believed customer over the window.

    :param plan: ``(horizon_days, N)`` twin action of each customer on each day (0: none);
        ``None`` is no action for anyone.
    :param start_weekday: weekday of the window's first day (0 = Monday; default the
        scenario's ``start_weekday``); only the contact rules' quiet days depend on it.
    """
    twin = scenario if isinstance(scenario, CustomerTwin) else CustomerTwin(scenario, tabulate=True)
    n = belief.probs.shape[0]
    plan = _check_plan(plan, horizon_days, n, twin.arrays.n_actions)
    weekday = twin.arrays.weekday_of_start if start_weekday is None else int(start_weekday) % 7
    if plan is None:
        plans, which = np.zeros((horizon_days, 1), dtype=np.int64), np.zeros(n, dtype=np.int64)
    else:  # customers sharing a plan share its per-state values
        plans, which = np.unique(plan, axis=1, return_inverse=True)
        which = which.reshape(-1)
    support, weights = belief_support(twin, belief)
    model = ForwardModel.build(twin, support, np.unique(plans))
    columns = model.position(support)
    out = np.empty((3, n))
    chunk = max(1, VALUE_CELLS // (3 * model.states.shape[0]))
    for lo in range(0, plans.shape[1], chunk):
        hi = min(lo + chunk, plans.shape[1])
        values = _backward(model, plans[:, lo:hi], weekday)  # (3, R, u)
        who = np.flatnonzero((which >= lo) & (which < hi))
        # each customer: their belief times the values of their own plan
        mine = values[:, columns][:, :, which[who] - lo]  # (3, M, n)
        out[:, who] = np.einsum("nm,qmn->qn", weights[who], mine)
    return Expectations(out[0], out[1], 1.0 - belief.churned, out[2])


def belief_support(twin: CustomerTwin, belief: StateBelief) -> tuple[IntArray, FloatArray]:
    """(M,) full state index of each latent cell the belief ranges over, and (N, M) weights.

    The filter holds the observed components at their rested values, so each (persona, rate
    level, dropout level, stage) cell is the rested state of those latent values.

    :raises EventLogError: when the belief's levels are not the scenario's (a belief without
        levels over a scenario with them would forecast every customer at level 0).
    """
    joint = belief.joint
    n, n_personas, n_rate, n_dropout, n_stages = joint.shape
    declared = {name: shares.size for name, shares in level_shares(twin.space).items()}
    wanted = {"rate_level": n_rate, "dropout_level": n_dropout}
    for name, size in wanted.items():
        if declared.get(name, 1) != size:
            raise EventLogError(
                f"belief: has {size} {name} value(s) where the scenario declares "
                f"{declared.get(name, 1)}; filter the history with this scenario"
            )
    persona, rate, dropout, stage = (
        cell.ravel() for cell in np.indices((n_personas, n_rate, n_dropout, n_stages))
    )
    given = {
        name: value
        for name, value in (("rate_level", rate), ("dropout_level", dropout))
        if name in declared
    }
    states = twin.space.encode(twin.space.rested_state(persona, stage, **given))
    weights = joint.reshape(n, -1)
    used = weights.any(axis=0)
    return states[used], weights[:, used]


def _backward(model: ForwardModel, plans: IntArray, weekday: int) -> FloatArray:
    """(3, R, U) expected purchases, spend and P(alive at the end) from each state on day 0
    under each of the ``(days, U)`` plans: ``V_t = q(a_t) + P(a_t) V_{t+1}``, ``V_H = 0``
    (``alive`` for P(alive)), so that ``b_0 . V_0 = sum_t b_t . q(a_t)``."""
    days, u = plans.shape
    n_states = model.states.shape[0]
    values: FloatArray = np.zeros((n_states, 3 * u))  # columns: purchases, spend, alive
    values[:, 2 * u :] = model.alive[:, None]
    step0 = model.transition[0]
    q0, m0 = model.purchase[:, 0], model.revenue[:, 0]
    effective: dict[tuple[int, int], tuple[sp.csr_matrix, FloatArray, FloatArray]] = {}
    for t in range(days - 1, -1, -1):
        day = (weekday + t) % 7
        nxt = step0 @ values
        nxt[:, :u] += q0[:, None]
        nxt[:, u : 2 * u] += m0[:, None]
        for action in np.unique(plans[t]):
            if action == 0:
                continue
            who = np.flatnonzero(plans[t] == action)
            key = (int(action), day)
            if key not in effective:
                effective[key] = _executed(model, int(action), day)
            step, q, m = effective[key]
            cols = np.concatenate([who, who + u, who + 2 * u])
            nxt[:, cols] = step @ values[:, cols]
            nxt[:, who] += q[:, None]
            nxt[:, who + u] += m[:, None]
        values = nxt
    return values.reshape(n_states, 3, u).transpose(1, 0, 2)


def _executed(
    model: ForwardModel, action: int, day: int
) -> tuple[sp.csr_matrix, FloatArray, FloatArray]:
    """Transition, purchase chance and revenue of asking for ``action`` on weekday ``day``:
    where the contact rules forbid it, no action is executed (as in the twin)."""
    allowed = model.allowed[day, :, action]
    on = sp.diags(allowed.astype(np.float64))
    off = sp.diags((~allowed).astype(np.float64))
    step = sp.csr_matrix(on @ model.transition[action] + off @ model.transition[0])
    q = np.where(allowed, model.purchase[:, action], model.purchase[:, 0])
    m = np.where(allowed, model.revenue[:, action], model.revenue[:, 0])
    return step, q, m


def _check_plan(plan: IntArray | None, days: int, n: int, n_actions: int) -> IntArray | None:
    if plan is None:
        return None
    plan = np.asarray(plan)
    if plan.shape != (days, n) or not np.issubdtype(plan.dtype, np.integer):
        raise EventLogError(
            f"plan: expected whole-number actions of shape (days, customers) = {(days, n)}, "
            f"got {plan.dtype} {plan.shape}"
        )
    if plan.size and (plan.min() < 0 or plan.max() >= n_actions):
        raise EventLogError(f"plan: action indices must lie in 0 .. {n_actions - 1}")
    return plan.astype(np.int64)


def forecast_customers(
    scenario: Scenario,
    events: EventLog,
    horizon_days: int | str,
    plan: pd.DataFrame | None = None,
    *,
    cutoff: pd.Timestamp | str | None = None,
    customer_ids: pd.Index | None = None,
    history_start: str | None = None,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
) -> pd.DataFrame:
    """One row per customer: exact expected purchases, baskets, spend and P(alive) in the
    window ``[cutoff, cutoff + horizon)``, from their history before ``cutoff``.

    :param events: the log the filter reads (events from ``cutoff`` on are ignored).
    :param horizon_days: days, or text such as ``"273d"`` or ``"39w"``.
    :param plan: planned sends in the window, one row each: ``customer_id``, ``timestamp``,
        ``channel`` and ``action`` (the campaign, as in the event log); ``None``: no action.
    :param cutoff: the end of the observation window (customers' silence up to it is evidence);
        default midnight (UTC) after the log's last event.
    :param customer_ids: whom to forecast (default every customer with an event in the history
        read); see :func:`~nba.calibration.filtering.filter_states` for ``history_start`` and
        ``lookback_days``.
    """
    days = parse_horizon(horizon_days)
    start = forecast_cutoff(events, cutoff)
    belief = filter_states(
        scenario,
        events,
        start,
        customer_ids,
        lookback_days=lookback_days,
        history_start=history_start,
    )
    ids = belief.customer_ids
    actions = None if plan is None else plan_matrix(scenario, plan, ids, start, days)
    result = expected_outcomes(
        scenario, belief, days, actions, start_weekday=int(start.day_of_week)
    )
    bought = events.events[
        (events.events["event"] == "purchased") & (events.events["timestamp"] < start)
    ]
    return pd.DataFrame(
        {
            "customer_id": ids.astype(str),
            "window_start": start,
            "window_end": start + days * DAY,
            "expected_purchases": result.purchases,
            "expected_baskets": result.purchases * baskets_per_purchase_day(bought),
            "expected_spend": result.spend,
            "p_alive_start": result.p_alive_start,
            "p_alive_end": result.p_alive_end,
        },
        columns=list(COLUMNS),
    )


def baskets_per_purchase_day(bought: pd.DataFrame) -> float:
    """Mean ``purchased`` events per customer-day with one (1.0 without purchases)."""
    if bought.empty:
        return 1.0
    per_day = bought.groupby(["customer_id", bought["timestamp"].dt.floor("D")]).size()
    return float(per_day.mean())


def plan_matrix(
    scenario: Scenario, plan: pd.DataFrame, ids: pd.Index, start: pd.Timestamp, days: int
) -> IntArray:
    """(days, N) twin action per day and customer from a table of planned sends.

    Every send must name a forecast customer, a day inside the window and an action of the
    scenario; a second send to a customer on one day replaces the first (the twin acts once
    a day).
    """
    missing = [c for c in ("customer_id", "timestamp", "channel", "action") if c not in plan]
    if missing:
        raise EventLogError(f"plan: missing column(s) {missing}")
    sends = plan.assign(
        event="sent",
        customer_id=plan["customer_id"].astype(str),
        timestamp=pd.to_datetime(plan["timestamp"], utc=True, errors="coerce", format="ISO8601"),
    )
    if sends["timestamp"].isna().any():
        first = int(np.flatnonzero(sends["timestamp"].isna().to_numpy())[0])
        raise EventLogError(f"plan: row {first}: 'timestamp' is not a date and time")
    labels = sends["channel"].astype(str) + "_" + sends["action"].astype(str)
    unknown = sorted(set(labels) - set(scenario.action_names))
    if unknown:
        raise EventLogError(
            f"plan: action {unknown[0]!r} is not one of the scenario's {scenario.action_names}"
        )
    strangers = ~sends["customer_id"].isin(ids)
    if strangers.any():
        raise EventLogError(
            f"plan: customer {sends['customer_id'][strangers].iloc[0]!r} is not forecast "
            "(no history before the cutoff)"
        )
    outside = (sends["timestamp"] < start) | (sends["timestamp"] >= start + days * DAY)
    if outside.any():
        raise EventLogError(
            f"plan: {int(outside.sum())} send(s) outside the window [{start}, {start + days * DAY})"
        )
    row, when, action = daily_actions(scenario, sends, ids, start, days)
    matrix = np.zeros((days, len(ids)), dtype=np.int64)
    matrix[when, row] = action
    return matrix


def forecast_cutoff(events: EventLog, cutoff: pd.Timestamp | str | None) -> pd.Timestamp:
    """Where the forecast starts: ``cutoff``, else midnight after the log's last event (one for
    the whole log, however it is partitioned)."""
    if cutoff is not None:
        return utc_time(cutoff, "cutoff")
    if events.events.empty:
        raise EventLogError("events: the log is empty")
    last: pd.Timestamp = events.events["timestamp"].max()
    return last.floor("D") + DAY
