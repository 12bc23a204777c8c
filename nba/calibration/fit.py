"""Fit a scenario (the twin's parameters) from an event log, every number with an interval.

What the data identifies is fitted; the rest is taken from a prior and marked ``assumed``:

* personas: k-means on attributes and RFM (:mod:`nba.calibration.personas`); shares and
  starting stages are their frequencies at the reference time;
* stages: recency/frequency rules (:mod:`nba.calibration.stages`); daily transitions from a
  purchase panel when customers buy repeatedly, else assumed. Churn from ``aware``,
  ``active`` and ``loyal`` is invisible to the rules (a churned customer just goes quiet): with
  a panel it is fitted by the likelihood of the purchase histories under the twin's own hidden
  Markov model (:mod:`nba.calibration.filtering`);
* organic purchase rate per persona x stage (factorised as the twin's base rate x stage
  multiplier by iterative proportional fitting, i.e. the Poisson log-linear fit): from the
  randomized control group in the response window when there is one, else from the panel;
* rate heterogeneity: with a panel, the gamma variance of each persona's customer rate
  multipliers (:mod:`nba.calibration.heterogeneity`); a persona whose interval excludes zero
  becomes three latent rate tiers in the scenario (``persona_3_low``, ``_mid``, ``_high``);
* basket value per persona: window purchases, else last year's history;
* channel response: attention (``channel_affinity``) from opens, or from the visit uplift of a
  randomized send over its control; purchase lift per offer and persona from the conversion
  uplift over control. Without a randomized control these are assumed (observational uplift
  is confounded by targeting);
* unsubscribe risk from unsubscribes after noticed sends; fatigue (attention lost under
  contact pressure) from how response falls with the number of recent contacts.

Intervals: customer-level Poisson bootstrap (:mod:`nba.calibration.bootstrap`), persona
assignment held fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap, interval, safe_ratio
from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.calibration.filtering import filter_states
from nba.calibration.heterogeneity import RATE_TIERS, overdispersion, tier_multipliers
from nba.calibration.personas import PersonaModel
from nba.calibration.snapshot import Snapshot, contact_counts, take_snapshot
from nba.calibration.stages import (
    ACTIVE,
    CHURNED,
    LAPSED,
    LOYAL,
    STAGES,
    LapseFit,
    StageRules,
    panel_counts,
)
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.types import FloatArray, IntArray

# Priors for what a log cannot identify, taken from the built-in retail scenario's sourced
# values where it has the same quantity (see its YAML for the sources).
PRIOR_DAILY = {
    ("aware", "churned"): 0.003,
    ("active", "lapsed"): 0.015,
    ("active", "churned"): 0.0005,
    ("loyal", "lapsed"): 0.006,
    ("loyal", "churned"): 0.0003,
    ("lapsed", "churned"): 0.012,
}
PRIOR_ON_PURCHASE = {("aware", "active"): 1.0, ("lapsed", "active"): 1.0, ("active", "loyal"): 0.08}
PRIOR_STAGE_MULTIPLIER = {"aware": 0.1, "active": 1.0, "loyal": 1.4, "lapsed": 0.25}
PRIOR_AFFINITY = 0.2
PRIOR_LIFT = 0.02
PRIOR_CHANNEL = {"cost": 0.05, "pressure": 1, "unsubscribe_risk": 0.005}
#: Daily churn that recency rules cannot observe: fitted by likelihood where there are histories.
UNSEEN_CHURN = (("aware", "churned"), ("active", "churned"), ("loyal", "churned"))
CHURN_SCALES = np.concatenate([[0.0], np.geomspace(0.05, 8.0, 12)])
CHURN_FIT_CUSTOMERS = 20_000
TIER_NAMES = ("low", "mid", "high")  # one per RATE_TIERS
THIRDS = np.linspace(0.0, 1.0, RATE_TIERS + 1)[1:-1]  # cut points of equal-share tiers
MIN_GROUP = 30  # customers per cell below which a rate is not trusted
MIN_ATTENTION = 0.01  # below this, lift per noticed message is not identifiable


@dataclass
class CalibrationResult:
    """The fitted scenario and everything needed to review it."""

    scenario: Scenario
    parameters: pd.DataFrame  # name, estimate, low, high, source, method
    persona_model: PersonaModel
    rules: StageRules
    snapshot: Snapshot  # calibration customers with persona and stage columns
    seconds: float
    notes: list[str] = field(default_factory=list)

    def fitted(self) -> pd.DataFrame:
        return self.parameters[self.parameters["source"] == "fitted"]


class _Table:
    """Collects fitted values as rows: (name, estimate, low, high, source, method)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        replicates: FloatArray | float,
        method: str,
        source: str = "fitted",
    ) -> float:
        if np.isscalar(replicates):
            value = float(replicates)  # type: ignore[arg-type]
            self.rows.append(
                {"name": name, "estimate": value, "low": None, "high": None, "source": source}
                | {"method": method}
            )
            return value
        draws = np.asarray(replicates, dtype=float)
        low, high = interval(draws[:, None])
        self.rows.append(
            {
                "name": name,
                "estimate": float(draws[0]),
                "low": float(low[0]),
                "high": float(high[0]),
                "source": source,
                "method": method,
            }
        )
        return float(draws[0])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            self.rows, columns=["name", "estimate", "low", "high", "source", "method"]
        )


def calibrate(
    log: EventLog,
    *,
    reference_time: pd.Timestamp | str | None = None,
    window_days: int = 14,
    holdout_after: pd.Timestamp | str | None = None,
    name: str = "calibrated",
    k_range: range = range(2, 13),
    n_bootstrap: int = 200,
    seed: int = 0,
    margin_rate: float = 0.35,
    horizon_days: int | None = None,
    data_label: str = "event log",
) -> CalibrationResult:
    """Fit a scenario from ``log``; events at or after ``holdout_after`` are never read."""
    started = time.perf_counter()
    _check_settings(window_days, k_range, n_bootstrap, margin_rate)
    rng = np.random.default_rng(seed)
    if holdout_after is not None:
        log = log.between(None, utc_time(holdout_after, "holdout_after"))
    if log.events.empty:
        raise EventLogError("events: nothing left before holdout_after")
    reference = _reference_time(log, reference_time, holdout_after, window_days)
    snapshot = take_snapshot(log, reference, window_days)
    table = snapshot.customers
    notes: list[str] = []
    if log.dropped_duplicates:
        notes.append(f"{log.dropped_duplicates} duplicate event rows were dropped")

    rules = StageRules.fit(log, reference)
    stage = rules.assign(table["recency_days"].to_numpy(), table["frequency"].to_numpy())
    attributes = _persona_attributes(table)
    contact = table["contact"].fillna("none").to_numpy()
    randomized = bool((contact == "held_out").any())
    outcomes = None
    if randomized:  # cluster on predicted response to each randomized arm
        outcomes = pd.DataFrame(
            {
                "arm": np.where(contact == "sent", table["action"].astype("string"), contact),
                "bought": (table["purchases"].to_numpy() > 0).astype(int),
                "visited": table["visited"].to_numpy().astype(int),
            }
        )
        outcomes = outcomes.loc[:, outcomes.nunique() > 1]
    personas = PersonaModel.fit(attributes, k_range=k_range, seed=seed, outcomes=outcomes)
    persona = personas.assign(attributes)
    table = table.assign(persona=persona, stage=stage)
    snapshot = Snapshot(snapshot.reference, snapshot.window_days, table)
    n_personas, n_stages = personas.k, len(STAGES)
    boot = Bootstrap.draw(len(table), n_bootstrap, rng)
    out = _Table()

    # ---- shares and starting stages
    sizes = boot.group_sums(np.eye(n_stages)[stage], persona, n_personas)  # (B+1, P, K)
    per_persona = sizes.sum(axis=2)
    shares = per_persona / per_persona.sum(axis=1, keepdims=True)
    initial = safe_ratio(sizes, per_persona[:, :, None])
    for p in range(n_personas):
        out.add(f"personas[{p}].share", shares[:, p], "k-means cluster frequency")

    # ---- organic purchase rates per persona x stage
    repeat_buyers = rules.loyal_purchases is not None
    panel = None
    if randomized:
        source = "randomized control group in the response window"
        numerator, denominator = _window_counts(
            table, contact == "held_out", stage, persona, n_personas, window_days, boot
        )
    elif repeat_buyers:
        # a year of panel: persona rates from more than the recent window the personas were
        # clustered on (recency, frequency), which biases rates of the quiet personas to zero
        lookback = pd.Timedelta(days=365)
        panel = panel_counts(log, rules, table.index, reference - lookback, reference)
        source = f"daily purchase panel over the {lookback.days} days before the reference time"
        numerator = boot.group_sums(panel.stage_purchases, persona, n_personas)
        # lapsed customers who have churned unseen do not buy: where their return rate decays
        # with time lapsed, the lapsed rate is per day alive (LapseFit), not per lapsed day
        lapse = LapseFit.fit(panel, persona, boot)
        exposure = panel.stage_days if lapse is None else lapse.alive_days(panel, persona)
        panel = panel if lapse is None else lapse.attach(panel)
        denominator = boot.group_sums(exposure, persona, n_personas)
    else:
        source = "uncontacted customers in the response window (observational)"
        numerator, denominator = _window_counts(
            table, contact == "none", stage, persona, n_personas, window_days, boot
        )
    base, multiplier, identified = _factorise(numerator, denominator)
    for p in range(n_personas):
        out.add(f"personas[{p}].base_purchase_rate", base[:, p], f"per day; {source}")
    tiers: list[FloatArray] = [np.ones(1)] * n_personas
    tier_cuts: list[list[float]] = [[] for _ in range(n_personas)]
    if panel is not None:  # a year per customer: enough to see rates differ within a persona
        purchases = panel.stage_purchases.sum(axis=1)
        expected = base[0, persona] * (exposure[:, :CHURNED] @ multiplier[0])
        frequency = table["frequency"].to_numpy()
        tiers, tier_cuts = _rate_tiers(
            purchases, expected, frequency, persona, n_personas, boot, out
        )
    stage_multiplier: dict[str, float] = {}
    for k, stage_name in enumerate(STAGES[:CHURNED]):
        if identified[k] and k != ACTIVE:
            stage_multiplier[stage_name] = out.add(
                f"stages[{stage_name}].purchase_multiplier",
                multiplier[:, k],
                f"relative to active; {source}",
            )
        elif k == ACTIVE:
            stage_multiplier[stage_name] = 1.0
        else:
            stage_multiplier[stage_name] = out.add(
                f"stages[{stage_name}].purchase_multiplier",
                PRIOR_STAGE_MULTIPLIER[stage_name],
                "prior (retail scenario): no customer-days in this stage",
                source="assumed",
            )

    # ---- basket value per persona
    window_purchases = table["purchases"].to_numpy()
    if window_purchases.sum() >= MIN_GROUP:
        spend = boot.group_sums(
            np.stack([table["spend"].to_numpy(), window_purchases], 1), persona, n_personas
        )
        basket_method = "mean purchase value in the response window"
    else:
        history = np.stack([table["monetary"].to_numpy(), table["frequency"].to_numpy()], 1)
        spend = boot.group_sums(history, persona, n_personas)
        basket_method = "mean purchase value over the past year"
    basket = safe_ratio(spend[:, :, 0], spend[:, :, 1])
    overall_basket = float(np.nansum(spend[0, :, 0]) / max(np.nansum(spend[0, :, 1]), 1.0))
    baskets = []
    for p in range(n_personas):
        if np.isfinite(basket[0, p]) and spend[0, p, 1] >= MIN_GROUP / 3:
            baskets.append(out.add(f"personas[{p}].basket_value", basket[:, p], basket_method))
        else:
            baskets.append(
                out.add(
                    f"personas[{p}].basket_value",
                    overall_basket if overall_basket > 0 else 1.0,
                    "overall mean purchase value (too few purchases in this persona)",
                    source="assumed",
                )
            )

    # ---- channels, offers and response
    sent = log.events[log.events["event"] == "sent"]
    channels = sorted(sent["channel"].dropna().unique().tolist())
    if not channels:
        raise EventLogError("events: no 'sent' events, so no channel to calibrate")
    actions = (
        sent.dropna(subset=["channel"])
        .assign(action=lambda f: f["action"].fillna("message"))
        .groupby(["channel", "action"], observed=True)
        .size()
        .index.tolist()
    )
    response = _response(table, boot, persona, n_personas, channels, actions, randomized, out)

    # ---- transitions
    daily, on_purchase = _transitions(panel, boot, persona, out)

    # ---- unsubscribes and fatigue
    unsubscribe = _unsubscribe(table, boot, persona, channels, response["affinity"], out)
    notice_drop = _fatigue(log, out, rng)

    assembly = dict(
        name=name,
        data_label=data_label,
        reference=reference,
        window_days=window_days,
        horizon_days=horizon_days or window_days,
        margin_rate=margin_rate,
        personas=personas,
        describe=personas.describe(attributes, persona),
        shares=shares[0],
        initial=initial[0],
        base=base[0],
        baskets=baskets,
        tiers=tiers,
        tier_cuts=tier_cuts,
        stage_multiplier=stage_multiplier,
        daily=daily,
        on_purchase=on_purchase,
        channels=channels,
        actions=actions,
        response=response,
        unsubscribe=unsubscribe,
        notice_drop=notice_drop,
        rules=rules,
        customers=len(table),
    )
    scenario = _assemble(**assembly, parameters=out.frame())
    if panel is not None:  # histories to weigh: churn the rules cannot see, by likelihood
        daily = _unseen_churn(scenario, log, reference, table.index, boot, daily, out, rng)
        scenario = _assemble(**assembly | {"daily": daily}, parameters=out.frame())
    return CalibrationResult(
        scenario=scenario,
        parameters=out.frame(),
        persona_model=personas,
        rules=rules,
        snapshot=snapshot,
        seconds=time.perf_counter() - started,
        notes=notes,
    )


# ------------------------------------------------------------------------------------ pieces
def _check_settings(window_days: int, k_range: range, n_bootstrap: int, margin_rate: float) -> None:
    if not isinstance(window_days, int) or window_days < 1:
        raise EventLogError(f"window_days: expected a positive whole number, got {window_days!r}")
    if len(k_range) == 0 or min(k_range) < 2:
        raise EventLogError(f"k_range: expected persona counts of at least 2, got {k_range!r}")
    if n_bootstrap < 20:
        raise EventLogError(f"n_bootstrap: {n_bootstrap} replicates cannot give 95% intervals")
    if not 0.0 < margin_rate <= 1.0:
        raise EventLogError(f"margin_rate: {margin_rate} is outside (0, 1]")


def _reference_time(
    log: EventLog,
    reference_time: pd.Timestamp | str | None,
    holdout_after: pd.Timestamp | str | None,
    window_days: int,
) -> pd.Timestamp:
    """Explicit; else the first contact decision; else the holdout cutoff; else the log's end."""
    if reference_time is not None:
        return utc_time(reference_time, "reference_time")
    contacts = log.events[log.events["event"].isin(["sent", "held_out"])]
    randomized = contacts["propensity"].notna()
    if randomized.any():
        return contacts.loc[randomized, "timestamp"].min()
    if holdout_after is not None:
        return utc_time(holdout_after, "holdout_after")
    return log.events["timestamp"].max().floor("D") + pd.Timedelta(days=1)


def _persona_attributes(table: pd.DataFrame) -> pd.DataFrame:
    """Attributes for clustering: RFM and tenure plus the customer table's columns.

    Tenure (days since the first purchase) turns frequency into a rate for customers known
    only briefly. A customer-table attribute missing for most customers is left out: its
    "missing" level would split the population by data coverage, not behaviour (Complete
    Journey has demographics for a third of the households; on an internal split of its
    calibration window, behaviour-only personas forecast purchase counts better).
    """
    rfm = pd.DataFrame(
        {
            "recency_days": table["recency_days"],
            "frequency": table["frequency"],
            "monetary": table["monetary"],
            "tenure_days": table["tenure_days"],
        },
        index=table.index,
    )
    skip = {
        "recency_days", "frequency", "monetary", "tenure_days", "contact", "channel", "action",
        "propensity", "sends_in_window", "purchases", "spend", "visited", "opened", "clicked",
        "redeemed", "unsubscribed",
    }  # fmt: skip
    extra = table[[c for c in table.columns if c not in skip and table[c].notna().mean() >= 0.5]]
    usable = [c for c in rfm.columns if rfm[c].nunique(dropna=True) > 1]
    return pd.concat([rfm[usable], extra], axis=1).reset_index()


def _window_counts(
    table: pd.DataFrame,
    members: np.ndarray,
    stage: IntArray,
    persona: IntArray,
    n_personas: int,
    window_days: int,
    boot: Bootstrap,
) -> tuple[FloatArray, FloatArray]:
    """(B+1, P, K) purchases and customer-days of ``members`` in the response window."""
    in_stage = np.eye(len(STAGES))[stage] * members[:, None]
    purchases = in_stage * table["purchases"].to_numpy()[:, None]
    return (
        boot.group_sums(purchases, persona, n_personas),
        boot.group_sums(in_stage * float(window_days), persona, n_personas),
    )


def _factorise(
    numerator: FloatArray, denominator: FloatArray, iterations: int = 100
) -> tuple[FloatArray, FloatArray, np.ndarray]:
    """Rates n/d ~ base[p] x multiplier[k] (Poisson log-linear fit), multiplier[active] = 1."""
    numerator, denominator = numerator[:, :, :CHURNED], denominator[:, :, :CHURNED]
    identified = denominator[0].sum(axis=0) > 0
    b, p, k = numerator.shape
    base = np.full((b, p), 1e-3)
    mult = np.ones((b, k))
    for _ in range(iterations):
        base = safe_ratio(numerator.sum(2), (denominator * mult[:, None, :]).sum(2))
        base = np.nan_to_num(base, nan=0.0)
        mult = safe_ratio(numerator.sum(1), (denominator * base[:, :, None]).sum(1))
        mult = np.nan_to_num(mult, nan=1.0)
    anchor = mult[:, ACTIVE] if identified[ACTIVE] else mult[:, identified].max(axis=1)
    anchor = np.where(anchor > 0, anchor, 1.0)
    mult = mult / anchor[:, None]
    base = np.clip(base * anchor[:, None], 0.0, 1.0)
    return base, mult, identified


def _response(
    table: pd.DataFrame,
    boot: Bootstrap,
    persona: IntArray,
    n_personas: int,
    channels: list[str],
    actions: list[tuple[str, str]],
    randomized: bool,
    out: _Table,
) -> dict[str, Any]:
    """Attention per persona x channel and lift per persona x action from randomized arms.

    Attention is the open rate when the log has opens; otherwise the largest visit uplift of
    the channel's arms, 1-(1-v_arm)/(1-v_control) (the best message is clicked by everyone
    who notices it), and each arm's click-through is its uplift over that. Purchase lift per
    noticed send is the conversion uplift 1-(1-P_arm)/(1-P_control) over attention.
    """
    contact = table["contact"].fillna("none").to_numpy()
    channel = table["channel"].astype("string").fillna("").to_numpy()
    action = table["action"].astype("string").fillna("message").to_numpy()
    bought = (table["purchases"].to_numpy() > 0).astype(float)
    visited = table["visited"].to_numpy().astype(float)
    opened = table["opened"].to_numpy().astype(float)
    has_opens, has_visits = bool(opened.any()), bool(visited.any())
    outcome = np.stack([bought, visited, opened, np.ones(len(table))], axis=1)
    affinity = np.full((n_personas, len(channels)), PRIOR_AFFINITY)
    lift = np.full((n_personas, len(actions)), PRIOR_LIFT)
    lift_source = np.full((n_personas, len(actions)), "assumed", dtype=object)
    pooled_lift = np.full(len(actions), PRIOR_LIFT)
    click = np.ones((n_personas, len(actions)))
    organic_visit = np.zeros(n_personas)

    for c, name in enumerate(channels):
        control = (contact == "held_out") & (channel == name)
        mine = [a for a, (ch, _) in enumerate(actions) if ch == name]
        if not (randomized and control.sum() >= MIN_GROUP):
            for p in range(n_personas):
                out.add(
                    f"personas[{p}].channel_affinity.{name}",
                    PRIOR_AFFINITY,
                    "prior: no randomized control for this channel (targeted sends are confounded)",
                    source="assumed",
                )
            for a in mine:
                out.add(
                    f"offers[{actions[a][1]}].purchase_lift",
                    PRIOR_LIFT,
                    "prior: no randomized control for this channel",
                    source="assumed",
                )
            continue
        ctrl = boot.group_sums(outcome * control[:, None], persona, n_personas)
        ctrl_rate = safe_ratio(ctrl[..., :3], ctrl[..., 3:4])  # (B+1, P, 3)
        organic_visit = np.nan_to_num(ctrl_rate[0, :, 1])
        arm_sums, arm_rate = {}, {}
        for a in mine:
            arm = (contact == "sent") & (channel == name) & (action == actions[a][1])
            arm_sums[a] = boot.group_sums(outcome * arm[:, None], persona, n_personas)
            arm_rate[a] = safe_ratio(arm_sums[a][..., :3], arm_sums[a][..., 3:4])
        sent_n = sum(arm_sums[a][..., 3] for a in mine)  # (B+1, P)
        visit_uplift = {
            a: np.clip(1.0 - safe_ratio(1.0 - arm_rate[a][..., 1], 1.0 - ctrl_rate[..., 1]), 0, 1)
            for a in mine
        }
        if has_opens:
            opens = sum(arm_sums[a][..., 2] for a in mine)
            notice, how = safe_ratio(opens, sent_n), "open rate of sends"
        elif has_visits:
            notice = np.nanmax(np.stack([visit_uplift[a] for a in mine]), axis=0)
            how = "largest visit uplift of the channel's randomized arms over control"
        else:
            notice, how = None, ""
        attention = np.full(sent_n.shape, PRIOR_AFFINITY)
        for p in range(n_personas):
            if notice is not None and sent_n[0, p] >= MIN_GROUP and np.isfinite(notice[0, p]):
                attention[:, p] = np.clip(np.nan_to_num(notice[:, p]), 1e-6, 1.0)
                affinity[p, c] = out.add(
                    f"personas[{p}].channel_affinity.{name}", notice[:, p], how
                )
            else:
                out.add(
                    f"personas[{p}].channel_affinity.{name}",
                    PRIOR_AFFINITY,
                    "prior: no opens or visits to measure attention",
                    source="assumed",
                )
        for a in mine:
            offer = actions[a][1]
            size = arm_sums[a][..., 3]
            uplift = np.nan_to_num(
                np.clip(1.0 - safe_ratio(1.0 - arm_rate[a][..., 0], 1.0 - ctrl_rate[..., 0]), -1, 1)
            )
            # a lift is a probability; where attention is near zero the ratio is noise
            per_noticed = np.clip(uplift / np.maximum(attention, MIN_ATTENTION), 0.0, 1.0)
            # pooled: a ratio of sums, not a mean of ratios (stable for small personas)
            pooled = safe_ratio((uplift * size).sum(axis=1), (attention * size).sum(axis=1))
            pooled = np.clip(np.nan_to_num(pooled), 0.0, 1.0)
            pooled_lift[a] = out.add(
                f"offers[{offer}].purchase_lift",
                np.clip(pooled, 0.0, 1.0),
                "conversion uplift over control per noticed send, pooled over personas",
            )
            shrunk = _shrink(per_noticed, pooled, size[0] >= MIN_GROUP)
            for p in range(n_personas):
                if size[0, p] < MIN_GROUP:
                    continue
                lift[p, a] = out.add(
                    f"personas[{p}].offer_lift.{offer}",
                    np.clip(shrunk[:, p], 0.0, 1.0),
                    "1-(1-P_arm)/(1-P_control) conversion uplift over attention, "
                    "empirical-Bayes shrunk towards the pooled lift",
                )
                lift_source[p, a] = "fitted"
                if has_visits and not has_opens:
                    ratio = safe_ratio(visit_uplift[a][:, p], attention[:, p])
                    click[p, a] = out.add(
                        f"personas[{p}].click_through.{offer}",
                        np.clip(ratio, 0.0, 1.0),
                        "visit uplift of this arm over attention (observable, not dynamics)",
                    )
    return {
        "affinity": affinity,
        "lift": lift,
        "pooled_lift": pooled_lift,
        "lift_source": lift_source,
        "organic_visit": organic_visit,
        "click": click,
    }


def _shrink(per_persona: FloatArray, pooled: FloatArray, usable: np.ndarray) -> FloatArray:
    """Empirical-Bayes shrinkage of (B+1, P) persona estimates towards the (B+1,) pooled one.

    Each persona keeps the share tau^2 / (tau^2 + se_p^2) of its gap to the pooled value,
    tau^2 being the spread between personas beyond their sampling noise: noisy small
    personas lean on the pool, clearly different ones keep their own value. Decisions made
    on raw per-persona lifts chase noise.
    """
    if usable.sum() < 3:
        return per_persona
    estimate = per_persona[0]
    noise = np.nanvar(per_persona[1:], axis=0, ddof=1)
    spread = np.nanvar(estimate[usable], ddof=1) - np.nanmean(noise[usable])
    between = max(float(spread), 0.0)
    keep = np.where(noise + between > 0, between / np.maximum(noise + between, 1e-300), 1.0)
    return pooled[:, None] + keep[None, :] * (per_persona - pooled[:, None])


def _transitions(
    panel: Any, boot: Bootstrap, persona: IntArray, out: _Table
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]]:
    """Daily and on-purchase stage moves: from the panel when there is one, else priors."""
    daily = dict(PRIOR_DAILY)
    on_purchase = dict(PRIOR_ON_PURCHASE)
    if panel is None:
        for (src, dst), value in PRIOR_DAILY.items():
            out.add(f"stages[{src}].daily.{dst}", value, "prior (retail scenario)", "assumed")
        for (src, dst), value in PRIOR_ON_PURCHASE.items():
            out.add(f"stages[{src}].on_purchase.{dst}", value, "prior (retail scenario)", "assumed")
        return daily, on_purchase
    everyone = np.zeros(len(persona), dtype=np.int64)
    quiet = boot.group_sums(panel.moves_quiet, everyone, 1)[:, 0]  # (B+1, K, K)
    bought = boot.group_sums(panel.moves_bought, everyone, 1)[:, 0]
    observed = {(ACTIVE, LAPSED), (LOYAL, LAPSED)}
    for (src, dst), value in PRIOR_DAILY.items():
        i, j = STAGES.index(src), STAGES.index(dst)
        rate = safe_ratio(quiet[:, i, j], quiet[:, i].sum(axis=1))
        if (i, j) in observed and quiet[0, i].sum() > 0:
            daily[(src, dst)] = out.add(f"stages[{src}].daily.{dst}", rate, "daily panel")
        elif (src, dst) == ("lapsed", "churned") and panel.lapse is not None:
            daily[(src, dst)] = out.add(
                f"stages[{src}].daily.{dst}",
                panel.lapse.churn,
                "daily panel: decay of the lapsed return rate with time since lapsing (MLE, "
                f"{panel.lapse.returns} returns)",
            )
        else:
            out.add(
                f"stages[{src}].daily.{dst}",
                value,
                "prior: not observable by recency rules",
                "assumed",
            )
    for src in ("aware", "active", "loyal", "lapsed"):
        i = STAGES.index(src)
        days = bought[:, i].sum(axis=1)
        if days[0] == 0:
            continue
        for dst in ("active", "loyal"):
            j = STAGES.index(dst)
            if i == j or (src, dst) == ("loyal", "active"):
                continue
            share = safe_ratio(bought[:, i, j], days)
            on_purchase[(src, dst)] = out.add(
                f"stages[{src}].on_purchase.{dst}", share, "daily panel"
            )
    return daily, on_purchase


def _tiered(persona: dict[str, Any], multipliers: FloatArray) -> list[dict[str, Any]]:
    """The persona, or its equal-share rate tiers (``persona_3_low``, ``_mid``, ``_high``)."""
    if len(multipliers) == 1:
        return [persona]
    return [
        persona
        | {
            "name": f"{persona['name']}_{name}",
            "description": f"{persona['description']} (rate tier {name}: x{m:.2f})",
            "share": persona["share"] / len(multipliers),
            "base_purchase_rate": min(persona["base_purchase_rate"] * float(m), 1.0),
        }
        for name, m in zip(TIER_NAMES, multipliers, strict=True)
    ]


def _rate_tiers(
    purchases: FloatArray,
    expected: FloatArray,
    frequency: FloatArray,
    persona: IntArray,
    n_personas: int,
    boot: Bootstrap,
    out: _Table,
) -> tuple[list[FloatArray], list[list[float]]]:
    """Rate multipliers per persona, and the yearly purchase counts that cut its tiers.

    The spread is the gamma variance of the rate multiplier (:mod:`heterogeneity`), fitted on
    the panel's purchase counts with a bootstrap interval; a persona gets tiers only when the
    interval excludes zero (Poisson noise alone explains the rest). The cuts, its customers'
    thirds of ``frequency``, let rules place a customer in a tier.
    """
    phi = overdispersion(purchases, expected, persona, n_personas, boot)
    tiers, cuts = [], []
    for p in range(n_personas):
        value = out.add(
            f"personas[{p}].rate_heterogeneity",
            phi[:, p],
            "variance of the customers' rate multiplier (gamma), moments of the panel's "
            f"purchase counts; > 0 significantly: {RATE_TIERS} latent rate tiers",
        )
        low = float(np.percentile(phi[1:, p], 2.5)) if phi.shape[0] > 1 else value
        split = low > 0.0
        tiers.append(tier_multipliers(value) if split else np.ones(1))
        cuts.append(np.quantile(frequency[persona == p], THIRDS).tolist() if split else [])
    return tiers, cuts


def _unseen_churn(
    scenario: Scenario,
    log: EventLog,
    reference: pd.Timestamp,
    ids: pd.Index,
    boot: Bootstrap,
    daily: dict[tuple[str, str], float],
    out: _Table,
    rng: np.random.Generator,
) -> dict[tuple[str, str], float]:
    """Daily churn of the stages whose churn recency rules cannot see, by likelihood.

    A customer who churns from ``active`` simply goes quiet, so the rule-based panel never
    shows the move. The twin as a hidden Markov model does weigh it: a long silence is likelier
    if customers churn. One scale on the priors' ratios is chosen by the summed log-likelihood
    of every purchase history under the twin (:func:`filter_states`), per bootstrap replicate.
    Above ``CHURN_FIT_CUSTOMERS`` customers a seeded random subset is weighed: one number needs
    no more, and each grid point is a filter pass over every history.
    """
    rows = np.arange(len(ids))
    if len(ids) > CHURN_FIT_CUSTOMERS:
        rows = np.sort(rng.choice(len(ids), size=CHURN_FIT_CUSTOMERS, replace=False))
    lls = np.empty((len(rows), len(CHURN_SCALES)))
    for g, scale in enumerate(CHURN_SCALES):
        trial = _with_daily(scenario, {key: PRIOR_DAILY[key] * scale for key in UNSEEN_CHURN})
        lls[:, g] = filter_states(trial, log, reference, ids[rows]).log_likelihood
    fit = boot.weights[:, rows].astype(float) @ lls  # (B + 1, scales)
    best = np.argmax(fit, axis=1)
    scale = CHURN_SCALES[best]
    edge = " (the grid's largest: churn may be higher)" if best[0] == len(CHURN_SCALES) - 1 else ""
    names = {f"stages[{src}].daily.{dst}" for src, dst in UNSEEN_CHURN}
    out.rows = [row for row in out.rows if row["name"] not in names]  # the priors: replaced
    fitted = dict(daily)
    for key in UNSEEN_CHURN:
        fitted[key] = out.add(
            f"stages[{key[0]}].daily.{key[1]}",
            PRIOR_DAILY[key] * scale,
            f"maximum likelihood of {len(rows)} purchase histories under the twin (forward "
            f"filter): one scale, {scale[0]:.2g}, on the prior{edge}",
        )
    return fitted


def _with_daily(scenario: Scenario, values: dict[tuple[str, str], float]) -> Scenario:
    stages = []
    for stage in scenario.stages:
        moves = dict(stage.daily)
        moves.update({dst: v for (src, dst), v in values.items() if src == stage.name})
        stages.append(stage.model_copy(update={"daily": moves}))
    return scenario.model_copy(update={"stages": stages})


def _unsubscribe(
    table: pd.DataFrame,
    boot: Bootstrap,
    persona: IntArray,
    channels: list[str],
    affinity: FloatArray,
    out: _Table,
) -> dict[str, float]:
    """Opt-out risk of a noticed contact per channel: unsubscribes over noticed sends.

    Noticed sends are the opens where the log has them, else each send weighted by its
    persona's attention.
    """
    result = {}
    contact = table["contact"].fillna("none").to_numpy()
    channel = table["channel"].astype("string").fillna("").to_numpy()
    unsub = table["unsubscribed"].to_numpy().astype(float)
    opened = table["opened"].to_numpy().astype(float)
    everyone = np.zeros(len(table), dtype=np.int64)
    for c, name in enumerate(channels):
        sent = ((contact == "sent") & (channel == name)).astype(float)
        if unsub.any() and sent.sum() >= MIN_GROUP:
            noticed = opened * sent if opened.any() else affinity[persona, c] * sent
            sums = boot.group_sums(np.stack([unsub * sent, noticed], 1), everyone, 1)[:, 0]
            result[name] = out.add(
                f"channels[{name}].unsubscribe_risk",
                np.clip(safe_ratio(sums[:, 0], sums[:, 1]), 0, 1),
                "unsubscribes in the window per noticed send",
            )
        else:
            result[name] = out.add(
                f"channels[{name}].unsubscribe_risk",
                PRIOR_CHANNEL["unsubscribe_risk"],
                "prior: no unsubscribe events",
                source="assumed",
            )
    return result


def _fatigue(
    log: EventLog, out: _Table, rng: np.random.Generator, days: int = 30, window: int = 14
) -> float:
    """Attention lost under pressure: response to a send by the number of recent sends."""
    sends = contact_counts(log, days)
    prior = 0.6
    if sends.empty or sends["prior_sends"].max() < 1:
        return out.add(
            "fatigue.notice_drop", prior, "prior (retail): contact counts do not vary", "assumed"
        )
    bought = log.events[log.events["event"] == "purchased"][["customer_id", "timestamp"]]
    merged = pd.merge_asof(
        sends.sort_values("timestamp"),
        bought.sort_values("timestamp").rename(columns={"timestamp": "bought_at"}),
        left_on="timestamp",
        right_on="bought_at",
        by="customer_id",
        direction="forward",
        tolerance=pd.Timedelta(days=window),
    )
    responded = merged["bought_at"].notna().to_numpy().astype(float)
    bucket = np.minimum(merged["prior_sends"].to_numpy(), 3)
    counts = np.bincount(bucket, minlength=4)
    if counts[0] < 100 or (counts[1:] >= 100).sum() == 0:
        return out.add(
            "fatigue.notice_drop", prior, "prior (retail): too few repeated contacts", "assumed"
        )
    top = int(np.flatnonzero(counts >= 100).max())
    boot = Bootstrap.draw(len(bucket), 200, rng)
    sums = boot.group_sums(np.stack([responded, np.ones_like(responded)], 1), bucket, 4)
    rate = safe_ratio(sums[..., 0], sums[..., 1])
    load = min(top / 6.0, 1.0)  # one contact adds about one pressure unit of six
    drop = np.clip(
        safe_ratio(1.0 - safe_ratio(rate[:, top], rate[:, 0]), np.full(len(rate), load)), 0, 1
    )
    return out.add(
        "fatigue.notice_drop",
        drop,
        f"response after {top} recent contacts vs none, per unit of pressure (observational)",
    )


def _assemble(**kw: Any) -> Scenario:
    """Build and validate the scenario from the fitted pieces."""
    retail = load_scenario("retail")
    retail_channels = {c.name: c for c in retail.channels}
    channels = []
    for name in kw["channels"]:
        known = retail_channels.get(name)
        channels.append(
            {
                "name": name,
                "description": "calibrated from the event log",
                "cost": known.cost if known else PRIOR_CHANNEL["cost"],
                "pressure": known.pressure if known else PRIOR_CHANNEL["pressure"],
                "unsubscribe_risk": kw["unsubscribe"][name],
            }
        )
    response = kw["response"]
    offers, actions = [], []
    for a, (channel, action) in enumerate(kw["actions"]):
        offers.append(
            {
                "name": action,
                "description": f"what the log calls '{action}'",
                "purchase_lift": float(response["pooled_lift"][a]),
            }
        )
        actions.append({"name": f"{channel}_{action}", "channel": channel, "offer": action})
    stage_multiplier = kw["stage_multiplier"]
    daily, on_purchase = kw["daily"], kw["on_purchase"]

    def moves(table: dict[tuple[str, str], float], src: str) -> dict[str, float]:
        return {dst: round(float(v), 6) for (s, dst), v in table.items() if s == src and v > 0}

    stages = [
        {
            "name": name,
            "purchase_multiplier": round(float(stage_multiplier.get(name, 0.0)), 6),
            "on_purchase": moves(on_purchase, name),
            "daily": moves(daily, name),
        }
        for name in STAGES[:CHURNED]
    ]
    stages.append({"name": "churned", "purchase_multiplier": 0.0, "absorbing": True})
    personas = []
    for p in range(kw["personas"].k):
        start = {STAGES[k]: float(np.nan_to_num(kw["initial"][p, k])) for k in range(CHURNED)}
        total = sum(start.values()) or 1.0
        start = {k: v / total for k, v in start.items()}
        lifts = response["lift"][p]
        offer_response = {}
        for a, (_, action) in enumerate(kw["actions"]):
            pooled = response["pooled_lift"][a]
            if response["lift_source"][p, a] == "fitted" and pooled > 0:
                offer_response[action] = round(float(lifts[a] / pooled), 6)
        persona = {
            "name": f"persona_{p}",
            "description": kw["describe"][p],
            "share": float(kw["shares"][p]),
            "price_sensitivity": 0.5,
            "base_purchase_rate": float(kw["base"][p]),
            "basket_value": max(float(kw["baskets"][p]), 0.01),
            "channel_affinity": {
                name: float(kw["response"]["affinity"][p, c])
                for c, name in enumerate(kw["channels"])
            },
            "consent": list(kw["channels"]),
            "initial_stages": start,
            "offer_response": offer_response,
        }
        personas.extend(_tiered(persona, kw["tiers"][p]))
    shares = np.array([p["share"] for p in personas])
    for p, share in zip(personas, shares / shares.sum(), strict=True):
        p["share"] = float(share)
    parameters = kw["parameters"]
    data = {
        "name": kw["name"],
        "description": f"Calibrated from {kw['data_label']} at {kw['reference'].isoformat()}.",
        "horizon_days": int(kw["horizon_days"]),
        "discount_factor": 0.995,
        "margin_rate": float(kw["margin_rate"]),
        "churn_stage": "churned",
        "stages": stages,
        "channels": channels,
        "offers": offers,
        "actions": actions,
        "personas": personas,
        "response": {"barrier_match_boost": 0.0, "source": "per-persona offer_response instead"},
        "fatigue": {
            "notice_drop": float(kw["notice_drop"]),
            "unsubscribe_multiplier": retail.fatigue.unsubscribe_multiplier,
            "churn_at_full_pressure": retail.fatigue.churn_at_full_pressure,
            "source": "notice_drop per the calibration table; the rest is the retail prior",
        },
        "discount_habit": {
            "gain": 0.0,
            "decay": 0.0,
            "full_price_penalty": 0.0,
            "discount_response_bonus": 0.0,
            "source": "no discount information in the log",
        },
        "contact_rules": {"pressure_capacity": 6, "pressure_drain": 1},
        "calibration": {
            "data": kw["data_label"],
            "reference_time": kw["reference"].isoformat(),
            "response_window_days": int(kw["window_days"]),
            "persona_model": kw["personas"].to_dict(),
            "persona_tiers": [len(m) for m in kw["tiers"]],
            "persona_tier_cuts": kw["tier_cuts"],
            "stage_rules": kw["rules"].to_dict(),
            "observables": {
                "calibration_customers": int(kw["customers"]),
                "organic_visit_rate": [float(v) for v in response["organic_visit"]],
                "click_through": {
                    f"{channel}_{action}": [float(v) for v in response["click"][:, a]]
                    for a, (channel, action) in enumerate(kw["actions"])
                },
            },
            "parameters": [
                {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
                for row in parameters.to_dict(orient="records")
            ],
        },
    }
    return Scenario.from_dict(data)
