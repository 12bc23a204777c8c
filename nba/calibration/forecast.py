"""Forecast audit: the calibrated twin's per-customer purchase counts in a later window.

Every customer of the log is placed in the twin at ``holdout_start`` and simulated day by day
through ``[holdout_start, holdout_end)``, ``replicates`` times. Placement is ``filtered`` by
default: each replicate starts from a draw of the customer's posterior persona and stage given
their own history before ``holdout_start`` under the twin's dynamics
(:mod:`nba.calibration.filtering`), so a customer's forecast reflects their own purchase record
and not only their segment's. ``rules`` places everyone by the stored persona model and the
recency/frequency stage rules instead (one state per customer, a rate tier by yearly
purchases, as the per-arm audit does).
Actions are the sends logged inside the window where their campaign is one of the scenario's
actions (a campaign first seen in the window is unknown to the twin and counts as no action;
the audit reports how many sends were mapped). The forecast of a customer is the mean count
over replicates.

A BG/NBD model (:mod:`nba.calibration.bgnbd`) fitted on the same history is the baseline; both
are scored by mean absolute error (and RMSE) on the customers BG/NBD can score (a purchase
before the cutoff), with paired customer-bootstrap intervals of the differences.

Units: a ``purchased`` event is a basket. The twin buys at most once a day, so its purchase
days are turned into baskets with the baskets-per-purchase-day distribution of the history
before the cutoff. Where a log only samples purchases (Complete Journey's transaction file is a
random sample of lines), counts are thinned alike on both sides and both models see the
thinned history.

Distribution checks, each a distance between twin and reality, a 95% interval of that distance
(customer bootstrap of the observed side) and the distance the observed data has from its own
bootstrap resamples (the sampling-noise reference, 95th percentile): a check passes when the
twin is no farther from reality than a resample of reality is.

* ``count_distribution``: total variation over count bins ``0, 1, ..., >= k``;
* ``inter_purchase_days``: Kolmogorov-Smirnov distance between the gaps (days, >= 1) between
  consecutive purchase days inside the window;
* ``lapse_curve``: max over days of the gap between the shares of customers with no purchase
  yet, by day since the cutoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.bgnbd import expected_by_customer
from nba.calibration.bootstrap import Bootstrap, interval
from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.calibration.filtering import HISTORY_STARTS, daily_actions, filter_states
from nba.calibration.population import observe
from nba.scenario import Scenario
from nba.state import CustomerState
from nba.twin import CustomerTwin
from nba.types import FloatArray, IntArray

DAY = pd.Timedelta(days=1)
PLACEMENTS = ("filtered", "rules")


@dataclass(frozen=True)
class ForecastAudit:
    """Accuracy rows (MAE, RMSE) and distribution checks in one tidy table.

    ``table`` has one row per (check, model, customers): ``value`` with its interval
    (``lower``, ``upper`` at ``confidence``, 0.95), ``reference`` (BG/NBD's value for
    accuracy rows; the observed sampling-noise distance for distribution rows) and
    ``passed``. ``customers`` holds the per-customer observed counts and both forecasts.
    """

    table: pd.DataFrame
    customers: pd.DataFrame
    replicates: int
    holdout_days: int
    mapped_sends: int
    unmapped_sends: int

    @property
    def passed(self) -> bool:
        return bool(self.table["passed"].dropna().astype(bool).all())

    def value(self, check: str, model: str = "twin", customers: str = "scored") -> float:
        """One number of the table, e.g. ``value("mae", "bgnbd")``."""
        rows = self.table[
            (self.table["check"] == check)
            & (self.table["model"] == model)
            & (self.table["customers"] == customers)
        ]
        if rows.empty:
            raise KeyError(f"no row check={check!r}, model={model!r}, customers={customers!r}")
        return float(rows["value"].iloc[0])

    def summary(self) -> dict[str, float | int | bool]:
        t = self.table
        difference = t[(t["check"] == "mae_difference")].iloc[0]
        scored = self.customers["bgnbd"].notna()
        out: dict[str, float | int | bool] = {
            "customers": len(self.customers),
            "scored": int(scored.sum()),
            "holdout_days": self.holdout_days,
            "replicates": self.replicates,
            "mapped_sends": self.mapped_sends,
            "unmapped_sends": self.unmapped_sends,
            "observed_mean": float(self.customers.loc[scored, "observed"].mean()),
            "mae_twin": self.value("mae"),
            "mae_bgnbd": self.value("mae", "bgnbd"),
            "mae_twin_all": self.value("mae", customers="all"),
            "mae_difference": float(difference["value"]),
            "mae_difference_lower": float(difference["lower"]),
            "mae_difference_upper": float(difference["upper"]),
            "rmse_twin": self.value("rmse"),
            "rmse_bgnbd": self.value("rmse", "bgnbd"),
        }
        for check in ("count_distribution", "inter_purchase_days", "lapse_curve"):
            row = t[t["check"] == check].iloc[0]
            out[f"{check}_distance"] = float(row["value"])
            out[f"{check}_noise"] = float(row["reference"])
            out[f"{check}_passed"] = bool(row["passed"])
        out["mae_no_worse"] = bool(difference["passed"])
        out["all_passed"] = self.passed
        return out


@dataclass(frozen=True)
class _Simulated:
    """(R, N) basket counts and first purchase day (H: none), and (H,) purchase-day gaps."""

    counts: FloatArray
    first_day: IntArray
    gaps: FloatArray


def forecast_audit(
    scenario: Scenario,
    log: EventLog,
    holdout_start: pd.Timestamp | str,
    holdout_end: pd.Timestamp | str,
    *,
    replicates: int = 200,
    n_bootstrap: int = 400,
    count_bins: int | None = None,
    actions: str = "logged",
    placement: str = "filtered",
    history_start: str | None = None,
    seed: int = 0,
) -> ForecastAudit:
    """Forecast every customer's purchases in ``[holdout_start, holdout_end)``; compare.

    :param log: events before and inside the window (later events are ignored).
    :param count_bins: ``k`` of the count bins ``0..k-1, >= k``; default the observed 95th
        percentile of the counts.
    :param actions: ``"logged"`` (sends in the window whose campaign the scenario knows) or
        ``"none"``.
    :param placement: ``"filtered"`` (each replicate starts from a draw of the customer's
        posterior persona and stage given their history, :mod:`nba.calibration.filtering`) or
        ``"rules"`` (the persona model and the recency/frequency stage rules).
    :param history_start: where the filter starts reading each customer: ``"log"`` (a panel,
        everyone from the log's first purchase), ``"first_event"`` (their own first event) or
        ``"first_purchase"``; default the scenario's own; see :func:`filter_states`.
    """
    start, end = utc_time(holdout_start, "holdout_start"), utc_time(holdout_end, "holdout_end")
    days = _check_settings(start, end, replicates, actions, placement, history_start)
    history = log.between(None, start)
    bought_before = history.events[history.events["event"] == "purchased"]
    if bought_before.empty:
        raise EventLogError(f"events: no 'purchased' event before holdout_start ({start})")
    people = observe(_at(scenario, start), history)
    ids = people.table.index
    window = log.between(start, end).events
    row, day = _holdout_purchases(window, ids, start)
    observed = np.bincount(row, minlength=len(ids)).astype(float)

    plan, mapped, unmapped = _action_plan(scenario, window, ids, start, days, actions)
    seeds = np.random.SeedSequence(seed).spawn(4)
    start_state = people.initial_state(scenario, copies=replicates)
    persona, stage, churned = people.persona, people.stage, np.full(len(ids), np.nan)
    if placement == "filtered":
        belief = filter_states(scenario, history, start, ids, history_start=history_start)
        # persona, stage and each customer's own levels, from one draw of the posterior
        for name, values in belief.draw(replicates, np.random.default_rng(seeds[3])).items():
            setattr(start_state, name, values)
        persona, stage = belief.most_likely()
        churned = belief.churned
    extra = _extra_baskets(bought_before)
    sim = _simulate(scenario, start_state, plan, extra, seeds[0], seeds[1])
    forecast = sim.counts.mean(axis=0)

    bgnbd = expected_by_customer(history.events, start, days, ids)
    scored = ~np.isnan(bgnbd)
    if not scored.any():
        raise EventLogError("events: no customer of the log has a purchase to score BG/NBD on")

    rng = np.random.default_rng(seeds[2])
    rows = _accuracy(observed, forecast, bgnbd, scored, n_bootstrap, rng)
    boot = Bootstrap.draw(len(ids), n_bootstrap, rng)
    k = count_bins or max(int(np.ceil(np.percentile(observed, 95))), 1)
    rows.append(_count_check(observed, sim.counts, k, boot))
    rows.append(_gap_check(row, day, len(ids), days, sim.gaps, boot))
    rows.append(_lapse_check(row, day, len(ids), days, sim.first_day, boot))
    customers = pd.DataFrame(
        {
            "persona": np.asarray(scenario.persona_names)[persona],
            "stage": np.asarray(scenario.stage_names)[stage],
            "p_churned": churned,
            "observed": observed,
            "twin": forecast,
            "twin_sd": sim.counts.std(axis=0, ddof=1),
            "bgnbd": bgnbd,
        },
        index=ids,
    )
    return ForecastAudit(pd.DataFrame(rows), customers, replicates, days, mapped, unmapped)


def _check_settings(
    start: pd.Timestamp,
    end: pd.Timestamp,
    replicates: int,
    actions: str,
    placement: str,
    history_start: str,
) -> int:
    """The window's length in days, once every setting is valid."""
    days = int((end - start) / DAY)
    if days < 1 or start + days * DAY != end:
        raise EventLogError(
            f"holdout_end: must be a whole number (>= 1) of days after holdout_start ({start})"
        )
    if replicates < 2:
        raise EventLogError(f"replicates: {replicates} must be at least 2")
    if actions not in ("logged", "none"):
        raise EventLogError(f"actions: {actions!r} is neither 'logged' nor 'none'")
    if placement not in PLACEMENTS:
        raise EventLogError(f"placement: {placement!r} is not one of {list(PLACEMENTS)}")
    if history_start is not None and history_start not in HISTORY_STARTS:
        raise EventLogError(
            f"history_start: {history_start!r} is not one of {list(HISTORY_STARTS)}"
        )
    return days


def _holdout_purchases(
    window: pd.DataFrame, ids: pd.Index, start: pd.Timestamp
) -> tuple[IntArray, IntArray]:
    """Customer row and window day of each purchase in the window by a known customer."""
    purchases = window[window["event"] == "purchased"]
    row = ids.get_indexer(purchases["customer_id"])
    day = ((purchases["timestamp"] - start) // DAY).to_numpy().astype(np.int64)
    known = row >= 0
    return row[known], day[known]


# ------------------------------------------------------------------------------ simulation
def _at(scenario: Scenario, start: pd.Timestamp) -> Scenario:
    """The scenario with its reference time moved to ``start``: personas and stages are read
    from the history before the window, whatever cutoff the scenario was calibrated at."""
    calibration = scenario.calibration
    if calibration is None:
        raise EventLogError("scenario: has no calibration block; run `nba calibrate` first")
    if utc_time(calibration.reference_time, "reference_time") == start:
        return scenario
    moved = calibration.model_dump(mode="json") | {"reference_time": start.isoformat()}
    return scenario.updated({"calibration": moved})


def _action_plan(
    scenario: Scenario,
    window: pd.DataFrame,
    ids: pd.Index,
    start: pd.Timestamp,
    days: int,
    mode: str,
) -> tuple[IntArray, int, int]:
    """(days, N) twin action per customer and day: logged sends the scenario knows, else 0."""
    plan = np.zeros((days, len(ids)), dtype=np.int64)
    sent = int((window["event"] == "sent").sum())
    if sent == 0 or mode == "none":
        return plan, 0, sent
    row, day, action = daily_actions(scenario, window, ids, start, days)
    plan[day, row] = action  # a second send that day: the last
    return plan, len(action), sent - len(action)


def _extra_baskets(bought: pd.DataFrame) -> FloatArray:
    """Distribution of baskets beyond the first on a customer's purchase day (history)."""
    per_day = bought.groupby(["customer_id", bought["timestamp"].dt.floor("D")]).size()
    counts = np.bincount(per_day.to_numpy() - 1).astype(float)
    return counts / counts.sum()


def _simulate(
    scenario: Scenario,
    start_state: CustomerState,
    plan: IntArray,
    extra: FloatArray,
    twin_seed: np.random.SeedSequence,
    basket_seed: np.random.SeedSequence,
) -> _Simulated:
    """Step the customers x replicates through the window; baskets per customer and gaps."""
    days, n = plan.shape
    replicates = len(start_state) // n
    twin = CustomerTwin(scenario, seed=np.random.default_rng(twin_seed))
    twin.set_state(start_state)
    last = np.full(n * replicates, -1, dtype=np.int64)
    first = np.full(n * replicates, days, dtype=np.int64)
    gaps = np.zeros(days)
    for d in range(days):
        bought = twin.step(np.tile(plan[d], replicates)).bought
        repeat = bought & (last >= 0)
        gaps += np.bincount(d - last[repeat], minlength=days)[:days]
        first = np.where(bought & (first == days), d, first)
        last = np.where(bought, d, last)
    purchase_days = twin.kpis.purchases
    # extra baskets on those days, drawn from the history's baskets-per-day distribution
    rng = np.random.default_rng(basket_seed)
    owner = np.repeat(np.arange(n * replicates), purchase_days)
    more = rng.choice(len(extra), size=len(owner), p=extra)
    baskets = purchase_days + np.bincount(owner, weights=more, minlength=n * replicates)
    return _Simulated(
        counts=baskets.reshape(replicates, n),
        first_day=first.reshape(replicates, n),
        gaps=gaps,
    )


# ------------------------------------------------------------------------------ scoring
def _accuracy(
    observed: FloatArray,
    twin: FloatArray,
    bgnbd: FloatArray,
    scored: np.ndarray,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> list[dict[str, object]]:
    """MAE and RMSE of both models with customer-bootstrap intervals, paired differences."""
    rows: list[dict[str, object]] = []
    everyone = np.ones(len(observed), dtype=bool)
    for subset, label in ((scored, "scored"), (everyone, "all")):
        boot = Bootstrap.draw(int(subset.sum()), n_bootstrap, rng)
        truth = observed[subset]
        errors = {"twin": twin[subset] - truth}
        if label == "scored":
            errors["bgnbd"] = bgnbd[subset] - truth
        losses = {}
        for model, error in errors.items():
            weights = boot.weights.astype(float)
            total = weights.sum(axis=1)
            losses[model] = (
                weights @ np.abs(error) / total,
                np.sqrt(weights @ error**2 / total),
            )
        for m, check in enumerate(("mae", "rmse")):
            for model, pair in losses.items():
                lower, upper = interval(pair[m][:, None])
                reference = losses["bgnbd"][m][0] if "bgnbd" in losses else np.nan
                rows.append(
                    _row(check, model, label, truth.size, pair[m][0], lower[0], upper[0], reference)
                )
            if "bgnbd" in losses:
                difference = losses["twin"][m] - losses["bgnbd"][m]
                lower, upper = interval(difference[:, None])
                rows.append(
                    _row(
                        f"{check}_difference",
                        "twin - bgnbd",
                        label,
                        truth.size,
                        difference[0],
                        lower[0],
                        upper[0],
                        0.0,
                        passed=bool(difference[0] <= 0.0) if check == "mae" else None,
                    )
                )
    return rows


def _count_check(observed: FloatArray, simulated: FloatArray, k: int, boot: Bootstrap) -> dict:
    """Total variation between count distributions over bins 0..k-1, >= k."""
    bins = np.minimum(observed, k).astype(np.int64)
    onehot = np.eye(k + 1)[bins]
    real = _weighted_shares(boot, onehot)
    twin = np.bincount(np.minimum(simulated, k).astype(np.int64).ravel(), minlength=k + 1)
    twin = twin / twin.sum()
    return _distance_row(
        "count_distribution",
        f"total variation, bins 0..{k - 1}, >={k}",
        real,
        twin,
        _tv,
        len(observed),
    )


def _gap_check(
    row: IntArray, day: IntArray, n: int, days: int, simulated: FloatArray, boot: Bootstrap
) -> dict:
    """KS distance between the gaps (days) between consecutive purchase days in the window."""
    visits = np.unique(row * days + day)  # purchase days of each customer, sorted
    owner, when = visits // days, visits % days
    same = owner[1:] == owner[:-1]
    gap = np.diff(when)[same]
    per_customer = np.zeros((n, days))
    np.add.at(per_customer, (owner[1:][same], gap), 1.0)
    real = np.cumsum(_weighted_shares(boot, per_customer, pooled=True), axis=1)
    twin = np.cumsum(simulated / max(simulated.sum(), 1.0))
    return _distance_row(
        "inter_purchase_days",
        "Kolmogorov-Smirnov, gaps between purchase days",
        real,
        twin,
        _sup,
        n,
    )


def _lapse_check(
    row: IntArray, day: IntArray, n: int, days: int, first_day: IntArray, boot: Bootstrap
) -> dict:
    """Max gap between the shares of customers with no purchase yet, day by day."""
    first = np.full(n, days, dtype=np.int64)
    np.minimum.at(first, row, day)
    waiting = (first[:, None] > np.arange(days)[None, :]).astype(float)  # none by end of day d
    real = _weighted_shares(boot, waiting)
    twin = (first_day.ravel()[:, None] > np.arange(days)[None, :]).mean(axis=0)
    return _distance_row(
        "lapse_curve",
        "max gap in share without a purchase, by day since cutoff",
        real,
        twin,
        _sup,
        n,
    )


def _weighted_shares(boot: Bootstrap, values: FloatArray, pooled: bool = False) -> FloatArray:
    """(B + 1, columns) bootstrap-weighted means of ``values`` (N, columns) over customers;
    ``pooled``: shares of the weighted column totals instead (a histogram of events)."""
    weights = boot.weights.astype(float)
    sums = weights @ values
    total = sums.sum(axis=1, keepdims=True) if pooled else weights.sum(axis=1, keepdims=True)
    return sums / np.where(total > 0, total, 1.0)


def _distance_row(
    check: str,
    method: str,
    real: FloatArray,
    twin: FloatArray,
    distance: Callable[[FloatArray, FloatArray], FloatArray],
    n: int,
) -> dict[str, object]:
    """Distance twin-reality, its interval over resamples, and reality's own noise level."""
    to_twin = distance(real, twin[None, :])
    noise = distance(real[1:], real[:1])
    lower, upper = interval(to_twin[:, None])
    reference = float(np.percentile(noise, 95))
    row = _row(check, "twin", "all", n, to_twin[0], lower[0], upper[0], reference)
    row["method"] = method
    row["passed"] = bool(to_twin[0] <= reference)
    return row


def _tv(a: FloatArray, b: FloatArray) -> FloatArray:
    return 0.5 * np.abs(a - b).sum(axis=-1)


def _sup(a: FloatArray, b: FloatArray) -> FloatArray:
    return np.abs(a - b).max(axis=-1)


def _row(
    check: str,
    model: str,
    customers: str,
    n: int,
    value: float,
    lower: float,
    upper: float,
    reference: float,
    passed: bool | None = None,
) -> dict[str, object]:
    return {
        "check": check,
        "model": model,
        "customers": customers,
        "n": int(n),
        "value": float(value),
        "lower": float(lower),
        "upper": float(upper),
        "confidence": 0.95,
        "reference": float(reference),
        "method": "",
        "passed": passed,
    }
