"""Organic purchase rates (persona x stage), rate tiers and basket values.

Rates are factorised as the twin's base rate per persona times a multiplier per stage by
iterative proportional fitting (the Poisson log-linear fit). The counts come from the
randomized control group in the response window when there is one; else from a year of daily
purchase panel when customers buy repeatedly, or when the response window is not inside the
record (a purchase-only log's reference time is the end of its record: nothing after it was
observed); else from uncontacted customers in the window (observational). With a panel, the
spread of customers' rates within a persona (:mod:`heterogeneity`) can split it into latent
rate tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap, safe_ratio
from nba.calibration.events import EventLog, EventLogError
from nba.calibration.heterogeneity import RATE_TIERS, overdispersion, tier_multipliers
from nba.calibration.priors import Priors
from nba.calibration.stages import (
    ACTIVE,
    CHURNED,
    STAGES,
    LapseFit,
    PanelCounts,
    StageRules,
    panel_counts,
)
from nba.calibration.table import ParameterTable
from nba.types import FloatArray, IntArray

THIRDS = np.linspace(0.0, 1.0, RATE_TIERS + 1)[1:-1]  # cut points of equal-share tiers
MIN_GROUP = 30  # customers per cell below which a rate is not trusted
PANEL_DAYS = 365


@dataclass(frozen=True)
class Customers:
    """The calibration customers as the fit sees them: snapshot rows, persona and stage."""

    table: pd.DataFrame  # snapshot rows with ``persona`` and ``stage`` columns
    persona: IntArray
    stage: IntArray
    n_personas: int
    randomized: bool  # the log holds a randomized hold-out
    window_days: int

    @property
    def contact(self) -> np.ndarray:
        return self.table["contact"].fillna("none").to_numpy()


@dataclass(frozen=True)
class RateFit:
    """Base rate per persona (point estimate), stage multipliers and rate tiers."""

    base: FloatArray  # (P,)
    stage_multiplier: dict[str, float]  # rule stage -> multiplier (active: 1)
    tiers: list[FloatArray]  # per persona: rate multipliers of its tiers (one: no tiers)
    tier_cuts: list[list[float]]  # per persona: yearly purchases that separate its tiers
    panel: PanelCounts | None  # the daily panel, when rates came from one


def fit_rates(
    log: EventLog,
    people: Customers,
    rules: StageRules,
    reference: pd.Timestamp,
    boot: Bootstrap,
    priors: Priors,
    out: ParameterTable,
    record_end: pd.Timestamp | None = None,
) -> RateFit:
    """Base rates, stage multipliers and (with a panel) rate tiers, into ``out``.

    ``record_end`` is when the log's record ends (exclusive; None: not known). A response
    window that runs past it was not (fully) observed, so its purchase counts say nothing
    about the rates (a purchase-only log's reference is its end: they would all be zero);
    the rates then come from the panel of the year before the reference, which was observed.
    The panel needs no repeat buyers to be sound: each persona x stage rate is purchase days
    over customer-days there (the Poisson fit); repeat gaps only fit the stage thresholds
    (without enough, the rules' defaults), and the rate tiers and the lapsed churn are fitted
    only where their own evidence suffices.
    """
    persona, n_personas = people.persona, people.n_personas
    window_end = reference + pd.Timedelta(days=people.window_days)
    window_seen = record_end is None or window_end <= record_end
    if people.randomized:
        source = "randomized control group in the response window"
        numerator, denominator = window_counts(people, people.contact == "held_out", boot)
        panel, exposure = None, None
    elif rules.loyal_purchases is not None or not window_seen:  # repeat buyers, or no window
        # a year of panel: persona rates from more than the recent window the personas were
        # clustered on (recency, frequency), which biases rates of the quiet personas to zero
        lookback = pd.Timedelta(days=PANEL_DAYS)
        rules_panel = panel_counts(log, rules, people.table.index, reference - lookback, reference)
        source = f"daily purchase panel over the {PANEL_DAYS} days before the reference time"
        if not rules_panel.stage_purchases.any():  # the rates would be zero, silently
            unseen = f", and the {people.window_days}-day window after it is past the record's end"
            end = "" if record_end is None else record_end.isoformat()
            unseen = "" if window_seen else f"{unseen} ({end})"
            raise EventLogError(
                f"reference_time: no purchases in the {PANEL_DAYS} days before "
                f"{reference.isoformat()} to fit purchase rates from{unseen}; give a "
                "reference_time with purchases in the year before it"
            )
        numerator = boot.group_sums(rules_panel.stage_purchases, persona, n_personas)
        # lapsed customers who have churned unseen do not buy: where their return rate decays
        # with time lapsed, the lapsed rate is per day alive (LapseFit), not per lapsed day
        lapse = LapseFit.fit(rules_panel, persona, boot)
        exposure = (
            rules_panel.stage_days if lapse is None else lapse.alive_days(rules_panel, persona)
        )
        panel = rules_panel if lapse is None else lapse.attach(rules_panel)
        denominator = boot.group_sums(exposure, persona, n_personas)
    else:
        source = "uncontacted customers in the response window (observational)"
        numerator, denominator = window_counts(people, people.contact == "none", boot)
        panel, exposure = None, None
    base, multiplier, identified = factorise(numerator, denominator)
    for p in range(n_personas):
        out.add(f"personas[{p}].base_purchase_rate", base[:, p], f"per day; {source}")
    tiers: list[FloatArray] = [np.ones(1)] * n_personas
    tier_cuts: list[list[float]] = [[] for _ in range(n_personas)]
    if panel is not None and exposure is not None:  # a year per customer: rates differ within
        purchases = panel.stage_purchases.sum(axis=1)
        expected = base[0, persona] * (exposure[:, :CHURNED] @ multiplier[0])
        frequency = people.table["frequency"].to_numpy()
        tiers, tier_cuts = rate_tiers(
            purchases, expected, frequency, persona, n_personas, boot, out
        )
    stages = _stage_multipliers(multiplier, identified, source, priors, out)
    return RateFit(base[0], stages, tiers, tier_cuts, panel)


def _stage_multipliers(
    multiplier: FloatArray,
    identified: np.ndarray,
    source: str,
    priors: Priors,
    out: ParameterTable,
) -> dict[str, float]:
    """Fitted multipliers of the stages customers were seen in; the template's for the rest."""
    result: dict[str, float] = {}
    for k, stage_name in enumerate(STAGES[:CHURNED]):
        if identified[k] and k != ACTIVE:
            result[stage_name] = out.add(
                f"stages[{priors.stage_names[stage_name]}].purchase_multiplier",
                multiplier[:, k],
                f"relative to active; {source}",
            )
        elif k == ACTIVE:
            result[stage_name] = 1.0
        else:
            result[stage_name] = out.add(
                f"stages[{priors.stage_names[stage_name]}].purchase_multiplier",
                priors.stage_multiplier[stage_name],
                f"prior ({priors.source} scenario): no customer-days in this stage",
                source="assumed",
            )
    return result


def window_counts(
    people: Customers, members: np.ndarray, boot: Bootstrap
) -> tuple[FloatArray, FloatArray]:
    """(B+1, P, K) purchases and customer-days of ``members`` in the response window."""
    in_stage = np.eye(len(STAGES))[people.stage] * members[:, None]
    purchases = in_stage * people.table["purchases"].to_numpy()[:, None]
    return (
        boot.group_sums(purchases, people.persona, people.n_personas),
        boot.group_sums(in_stage * float(people.window_days), people.persona, people.n_personas),
    )


def factorise(
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


def rate_tiers(
    purchases: FloatArray,
    expected: FloatArray,
    frequency: FloatArray,
    persona: IntArray,
    n_personas: int,
    boot: Bootstrap,
    out: ParameterTable,
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
        lower = float(np.percentile(phi[1:, p], 2.5)) if phi.shape[0] > 1 else value
        split = lower > 0.0
        tiers.append(tier_multipliers(value) if split else np.ones(1))
        cuts.append(np.quantile(frequency[persona == p], THIRDS).tolist() if split else [])
    return tiers, cuts


def fit_baskets(people: Customers, boot: Bootstrap, out: ParameterTable) -> list[float]:
    """Mean purchase value per persona: window purchases, else last year's history."""
    table, persona, n_personas = people.table, people.persona, people.n_personas
    window_purchases = table["purchases"].to_numpy()
    if window_purchases.sum() >= MIN_GROUP:
        spend = boot.group_sums(
            np.stack([table["spend"].to_numpy(), window_purchases], 1), persona, n_personas
        )
        method = "mean purchase value in the response window"
    else:
        history = np.stack([table["monetary"].to_numpy(), table["frequency"].to_numpy()], 1)
        spend = boot.group_sums(history, persona, n_personas)
        method = "mean purchase value over the past year"
    basket = safe_ratio(spend[:, :, 0], spend[:, :, 1])
    overall = float(np.nansum(spend[0, :, 0]) / max(np.nansum(spend[0, :, 1]), 1.0))
    baskets = []
    for p in range(n_personas):
        if np.isfinite(basket[0, p]) and spend[0, p, 1] >= MIN_GROUP / 3:
            baskets.append(out.add(f"personas[{p}].basket_value", basket[:, p], method))
        else:
            baskets.append(
                out.add(
                    f"personas[{p}].basket_value",
                    overall if overall > 0 else 1.0,
                    "overall mean purchase value (too few purchases in this persona)",
                    source="assumed",
                )
            )
    return baskets
