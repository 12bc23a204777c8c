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

What the log cannot identify comes from a template scenario of the same business
(:mod:`nba.calibration.priors`; by default the built-in ``retail``), which also names the
calibrated stages. Each job has its module: rates and baskets (:mod:`~nba.calibration.rates`),
response (:mod:`~nba.calibration.response`), transitions (:mod:`~nba.calibration.transitions`),
the scenario from a typed result (:mod:`~nba.calibration.assembly`); this one orchestrates.

A purchase-only log (no sends, no campaigns: the commonest a retailer has) is calibrated too.
Everything that needs contacts to be seen (attention, lift, opt-out risk, fatigue) and the
catalogue of channels, offers and actions are then the template's, marked ``assumed`` ("no
sends in the log") and named in the notes; rates, baskets, stages and churn are fitted from the
purchases, so the twin forecasts, and trains against the template's responses. The end of the
record (``observation_end``) is explicit where the log's last event is not it: customers'
silence up to it is evidence for their stage and churn.

Intervals: customer-level Poisson bootstrap (:mod:`nba.calibration.bootstrap`), persona
assignment held fixed; the parameter table's ``lower``/``upper`` at ``confidence``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from nba.calibration.assembly import TIER_NAMES, FittedScenario, assemble
from nba.calibration.bootstrap import Bootstrap, safe_ratio
from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.calibration.levels import check_mode, fit_levels
from nba.calibration.personas import PersonaModel
from nba.calibration.priors import Priors
from nba.calibration.rates import (
    MIN_GROUP,
    THIRDS,
    Customers,
    fit_baskets,
    fit_rates,
)
from nba.calibration.response import (
    MIN_ATTENTION,
    NO_SENDS,
    assumed_contact,
    fit_fatigue,
    fit_response,
    fit_unsubscribe,
    logged_actions,
)
from nba.calibration.snapshot import Snapshot, take_snapshot
from nba.calibration.stages import STAGES, PanelCounts, StageRules
from nba.calibration.table import ParameterTable
from nba.calibration.transitions import (
    CHURN_FIT_CUSTOMERS,
    CHURN_SCALES,
    UNSEEN_CHURN,
    fit_transitions,
    unseen_churn,
)
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.types import FloatArray

__all__ = [
    "CHURN_FIT_CUSTOMERS",
    "CHURN_SCALES",
    "MIN_ATTENTION",
    "MIN_GROUP",
    "THIRDS",
    "TIER_NAMES",
    "UNSEEN_CHURN",
    "CalibrationResult",
    "calibrate",
]


@dataclass
class CalibrationResult:
    """The fitted scenario and everything needed to review it."""

    scenario: Scenario
    parameters: pd.DataFrame  # name, estimate, lower, upper, confidence, source, method
    persona_model: PersonaModel
    rules: StageRules
    snapshot: Snapshot  # calibration customers with persona and stage columns
    seconds: float
    notes: list[str] = field(default_factory=list)

    def fitted(self) -> pd.DataFrame:
        return self.parameters[self.parameters["source"] == "fitted"]


@dataclass(frozen=True)
class _Setup:
    """The log as calibration reads it: cutoff applied, customers placed, personas fitted."""

    log: EventLog
    reference: pd.Timestamp
    observation_end: pd.Timestamp | None
    record_end: pd.Timestamp  # observation_end, else holdout_after or the last event's midnight
    snapshot: Snapshot
    rules: StageRules
    personas: PersonaModel
    people: Customers
    describe: list[str]
    notes: list[str]


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
    template: Scenario | None = None,
    stages: Mapping[str, str] | None = None,
    observation_end: pd.Timestamp | str | None = None,
    levels: str = "none",
) -> CalibrationResult:
    """Fit a scenario from ``log``; events at or after ``holdout_after`` are never read.

    A purchase-only log (no sends) is calibrated too: see the module docstring.

    :param observation_end: when the log's record ends (exclusive; an event at or after it is
        an error): silence up to it is evidence, and the reference time defaults to it (or to
        an earlier ``holdout_after``) when the log has no randomized contact. Without it, the
        record ends at ``holdout_after`` or the midnight (UTC) after the log's last event.

    :param template: the scenario whose values stand in for what the log cannot identify and
        whose stage names the result takes (default: the built-in ``retail``).
    :param levels: ``"auto"``: fit each customer's own rate and dropout levels (``none``: one).
    :param stages: rule stage (``aware``, ``active``, ``loyal``, ``lapsed``, ``churned``) ->
        the template's stage playing it, where the names differ.
    """
    started = time.perf_counter()
    _check_settings(window_days, k_range, n_bootstrap, margin_rate, levels)
    priors = Priors.from_template(template or load_scenario("retail"), stages)
    rng = np.random.default_rng(seed)
    setup = _setup(
        log, reference_time, holdout_after, observation_end, window_days, k_range, seed, levels
    )
    people = setup.people
    boot = Bootstrap.draw(len(people.table), n_bootstrap, rng)
    out = ParameterTable()
    shares, initial = _shares(people, boot, out)
    rates = fit_rates(  # with levels="auto" the levels replace rates and tiers (levels.py)
        setup.log, people, setup.rules, setup.reference, boot, priors, out, setup.record_end
    )
    baskets = fit_baskets(people, boot, out)
    contact = _contact_and_moves(setup, rates.panel, boot, priors, out, rng)
    fitted = FittedScenario(
        name=name,
        data_label=data_label,
        reference=setup.reference,
        window_days=window_days,
        horizon_days=horizon_days or window_days,
        margin_rate=margin_rate,
        priors=priors,
        rules=setup.rules,
        personas=setup.personas,
        describe=setup.describe,
        shares=shares,
        initial=initial,
        base=rates.base,
        baskets=baskets,
        tiers=rates.tiers,
        tier_cuts=rates.tier_cuts,
        stage_multiplier=rates.stage_multiplier,
        customers=len(people.table),
        observation_end=setup.observation_end,
        **contact,
    )
    scenario = assemble(fitted, out.frame())
    scenario = _by_likelihood(scenario, fitted, setup, rates.panel, levels, boot, out, rng)
    return CalibrationResult(
        scenario=scenario,
        parameters=out.frame(),
        persona_model=setup.personas,
        rules=setup.rules,
        snapshot=setup.snapshot,
        seconds=time.perf_counter() - started,
        notes=setup.notes,
    )


def _contact_and_moves(
    setup: _Setup,
    panel: PanelCounts | None,
    boot: Bootstrap,
    priors: Priors,
    out: ParameterTable,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Channels, actions, response, stage moves, opt-out risk and fatigue (FittedScenario
    fields), fitted from the log's sends or, without any, the template's (all assumed)."""
    people = setup.people
    channels, actions = logged_actions(setup.log)
    template_contact = not channels
    if template_contact:
        daily, on_purchase = fit_transitions(panel, boot, people.persona, priors, out)
        channels, actions, response, unsubscribe, notice_drop = assumed_contact(
            people.n_personas, priors, out
        )
        setup.notes.append(
            f"{NO_SENDS}: channels, offers and actions are the {priors.source} template's, and "
            "attention, purchase lift, opt-out risk and fatigue its priors (marked assumed); "
            "purchase rates, baskets, stages and churn are fitted from the purchases"
        )
    else:  # in this order, so the parameter table reads as it always has
        response = fit_response(people, boot, channels, actions, priors, out)
        daily, on_purchase = fit_transitions(panel, boot, people.persona, priors, out)
        unsubscribe = fit_unsubscribe(people, boot, channels, response.affinity, priors, out)
        notice_drop = fit_fatigue(setup.log, priors, out, rng)
    return {
        "channels": channels,
        "actions": actions,
        "response": response,
        "daily": daily,
        "on_purchase": on_purchase,
        "unsubscribe": unsubscribe,
        "notice_drop": notice_drop,
        "template_contact": template_contact,
    }


def _by_likelihood(
    scenario: Scenario,
    fitted: FittedScenario,
    setup: _Setup,
    panel: PanelCounts | None,
    levels: str,
    boot: Bootstrap,
    out: ParameterTable,
    rng: np.random.Generator,
) -> Scenario:
    """The fits that weigh whole histories under the assembled twin: churn the rules cannot
    see (with a panel), then each customer's own levels (``levels="auto"``)."""
    if levels == "auto":  # each customer's own levels; nobody churns unseen on a quiet day
        people = setup.people
        fit = fit_levels(
            setup.log, setup.record_end, people.table.index, people.persona, people.n_personas,
            boot, out,
        )  # fmt: skip
        return assemble(fit.apply(fitted, out), out.frame())
    if panel is not None:
        fitted = _with_unseen_churn(scenario, fitted, setup, boot, out, rng)
        scenario = assemble(fitted, out.frame())
    return scenario


def _with_unseen_churn(
    scenario: Scenario,
    fitted: FittedScenario,
    setup: _Setup,
    boot: Bootstrap,
    out: ParameterTable,
    rng: np.random.Generator,
) -> FittedScenario:
    ids = setup.people.table.index
    daily = unseen_churn(
        scenario, setup.log, setup.reference, ids, boot, fitted.daily, fitted.priors, out, rng
    )
    return replace(fitted, daily=daily)


def _shares(
    people: Customers, boot: Bootstrap, out: ParameterTable
) -> tuple[FloatArray, FloatArray]:
    """(P,) persona shares, into ``out`` with intervals, and (P, K) their starting stages."""
    sizes = boot.group_sums(np.eye(len(STAGES))[people.stage], people.persona, people.n_personas)
    per_persona = sizes.sum(axis=2)  # (B+1, P)
    shares = per_persona / per_persona.sum(axis=1, keepdims=True)
    for p in range(people.n_personas):
        out.add(f"personas[{p}].share", shares[:, p], "k-means cluster frequency")
    return shares[0], safe_ratio(sizes, per_persona[:, :, None])[0]


def _setup(
    log: EventLog,
    reference_time: pd.Timestamp | str | None,
    holdout_after: pd.Timestamp | str | None,
    observation_end: pd.Timestamp | str | None,
    window_days: int,
    k_range: range,
    seed: int,
    levels: str = "none",
) -> _Setup:
    """Cut the log, take the snapshot, fit the stage rules and personas, place everyone.

    With ``levels="auto"`` personas come from the customer table's attributes only (one
    persona without any): recency and frequency are left to each customer's own levels."""
    if holdout_after is not None:
        log = log.between(None, utc_time(holdout_after, "holdout_after"))
    if log.events.empty:
        raise EventLogError("events: nothing left before holdout_after")
    end = _observation_end(log, observation_end)  # of the record calibration reads
    if end is not None and holdout_after is not None:
        end = min(end, utc_time(holdout_after, "holdout_after"))
    reference = _reference_time(log, reference_time, holdout_after, window_days, end)
    snapshot = take_snapshot(log, reference, window_days)
    table = snapshot.customers
    notes: list[str] = []
    if log.dropped_duplicates:
        notes.append(f"{log.dropped_duplicates} duplicate event rows were dropped")
    rules = StageRules.fit(log, reference)
    stage = rules.assign(table["recency_days"].to_numpy(), table["frequency"].to_numpy())
    attributes = _persona_attributes(table, behaviour=levels != "auto")
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
    if levels == "auto" and attributes.columns.drop("customer_id").empty:
        personas = PersonaModel.one()
    else:
        personas = PersonaModel.fit(attributes, k_range=k_range, seed=seed, outcomes=outcomes)
    persona = personas.assign(attributes)
    table = table.assign(persona=persona, stage=stage)
    snapshot = Snapshot(snapshot.reference, snapshot.window_days, table)
    people = Customers(table, persona, stage, personas.k, randomized, window_days)
    describe = personas.describe(attributes, persona)
    record_end = end if end is not None else _default_end(log, holdout_after)
    return _Setup(
        log, reference, end, record_end, snapshot, rules, personas, people, describe, notes
    )


# ------------------------------------------------------------------------------------ pieces
def _check_settings(
    window_days: int, k_range: range, n_bootstrap: int, margin_rate: float, levels: str
) -> None:
    check_mode(levels)
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
    observation_end: pd.Timestamp | None = None,
) -> pd.Timestamp:
    """Explicit; else the first contact decision; else the observation end or holdout cutoff
    (the earlier); else the midnight (UTC) after the log's last event.

    With an explicit ``observation_end`` (already cut at ``holdout_after``), the reference and
    a randomized contact's response window must end by it: silence after it is no evidence.
    """
    contacts = log.events[log.events["event"].isin(["sent", "held_out"])]
    randomized = contacts["propensity"].notna()
    if reference_time is not None:
        reference = utc_time(reference_time, "reference_time")
    elif randomized.any():
        reference = contacts.loc[randomized, "timestamp"].min()
    elif observation_end is not None:
        return observation_end
    else:
        return _default_end(log, holdout_after)
    if observation_end is not None:
        _within_record(reference, observation_end, window_days, bool(randomized.any()))
    return reference


def _observation_end(
    log: EventLog, observation_end: pd.Timestamp | str | None
) -> pd.Timestamp | None:
    """The explicit end of the record, refusing a log with events at or after it."""
    if observation_end is None:
        return None
    end = utc_time(observation_end, "observation_end")
    late = log.events["timestamp"] >= end
    if late.any():
        first = log.events[late].iloc[0]
        raise EventLogError(
            f"observation_end: {int(late.sum()):,} event(s) at or after {end.isoformat()} "
            f"(the first: customer {first['customer_id']!r} at {first['timestamp'].isoformat()}); "
            "the end is exclusive and the record must end by it (give a later end, or cut the "
            "log with holdout_after)"
        )
    return end


def _within_record(
    reference: pd.Timestamp, end: pd.Timestamp, window_days: int, randomized: bool
) -> None:
    """The reference time, and a randomized response window after it, inside the record."""
    if reference > end:
        raise EventLogError(
            f"reference_time: {reference.isoformat()} is after observation_end {end.isoformat()}"
        )
    if randomized and reference + pd.Timedelta(days=window_days) > end:
        raise EventLogError(
            f"observation_end: {end.isoformat()} cuts the {window_days}-day response window "
            f"after the first randomized contact ({reference.isoformat()}); give a later end "
            "or a shorter window_days"
        )


def _default_end(log: EventLog, holdout_after: pd.Timestamp | str | None) -> pd.Timestamp:
    if holdout_after is not None:
        return utc_time(holdout_after, "holdout_after")
    return log.events["timestamp"].max().floor("D") + pd.Timedelta(days=1)


def _persona_attributes(table: pd.DataFrame, behaviour: bool = True) -> pd.DataFrame:
    """Attributes for clustering: RFM and tenure (unless ``behaviour`` is False) plus the
    customer table's columns.

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
    usable = [c for c in rfm.columns if behaviour and rfm[c].nunique(dropna=True) > 1]
    return pd.concat([rfm[usable], extra], axis=1).reset_index()
