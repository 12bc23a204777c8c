"""Stage transitions: daily and on-purchase moves from the purchase panel, else the template's.

Recency rules see a customer go from active to lapsed, but a customer who churns from
``aware``, ``active`` or ``loyal`` just goes quiet: those rates are fitted by the likelihood of
every purchase history under the twin's own hidden Markov model (:func:`unseen_churn`), and
lapsed churn from how returns decay with time lapsed (:class:`stages.LapseFit`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap, safe_ratio
from nba.calibration.events import EventLog
from nba.calibration.filtering import filter_states
from nba.calibration.priors import Move, Priors
from nba.calibration.stages import ACTIVE, LAPSED, LOYAL, STAGES, PanelCounts
from nba.calibration.table import ParameterTable
from nba.scenario import Scenario
from nba.types import IntArray

#: Daily churn that recency rules cannot observe: fitted by likelihood where there are histories.
UNSEEN_CHURN = (("aware", "churned"), ("active", "churned"), ("loyal", "churned"))
CHURN_SCALES = np.concatenate([[0.0], np.geomspace(0.05, 8.0, 12)])
CHURN_FIT_CUSTOMERS = 20_000
OBSERVED_DAILY = {(ACTIVE, LAPSED), (LOYAL, LAPSED)}  # moves the rules see on quiet days
ON_PURCHASE_TARGETS = ("active", "loyal")


def _name(priors: Priors, move: Move, kind: str) -> str:
    src, dst = move
    return f"stages[{priors.stage_names[src]}].{kind}.{priors.stage_names[dst]}"


def fit_transitions(
    panel: PanelCounts | None,
    boot: Bootstrap,
    persona: IntArray,
    priors: Priors,
    out: ParameterTable,
) -> tuple[dict[Move, float], dict[Move, float]]:
    """Daily and on-purchase stage moves: from the panel when there is one, else priors."""
    daily = dict(priors.daily)
    on_purchase = dict(priors.on_purchase)
    prior = f"prior ({priors.source} scenario)"
    if panel is None:
        for move, value in priors.daily.items():
            out.add(_name(priors, move, "daily"), value, prior, "assumed")
        for move, value in priors.on_purchase.items():
            out.add(_name(priors, move, "on_purchase"), value, prior, "assumed")
        return daily, on_purchase
    everyone = np.zeros(len(persona), dtype=np.int64)
    quiet = boot.group_sums(panel.moves_quiet, everyone, 1)[:, 0]  # (B+1, K, K)
    bought = boot.group_sums(panel.moves_bought, everyone, 1)[:, 0]
    for (src, dst), value in priors.daily.items():
        i, j = STAGES.index(src), STAGES.index(dst)
        name = _name(priors, (src, dst), "daily")
        rate = safe_ratio(quiet[:, i, j], quiet[:, i].sum(axis=1))
        if (i, j) in OBSERVED_DAILY and quiet[0, i].sum() > 0:
            daily[(src, dst)] = out.add(name, rate, "daily panel")
        elif (src, dst) == ("lapsed", "churned") and panel.lapse is not None:
            daily[(src, dst)] = out.add(
                name,
                panel.lapse.churn,
                "daily panel: decay of the lapsed return rate with time since lapsing (MLE, "
                f"{panel.lapse.returns} returns)",
            )
        else:
            out.add(name, value, "prior: not observable by recency rules", "assumed")
    for src in ("aware", "active", "loyal", "lapsed"):
        i = STAGES.index(src)
        days = bought[:, i].sum(axis=1)
        if days[0] == 0:
            continue
        for dst in ON_PURCHASE_TARGETS:
            j = STAGES.index(dst)
            if i == j or (src, dst) == ("loyal", "active"):
                continue
            share = safe_ratio(bought[:, i, j], days)
            on_purchase[(src, dst)] = out.add(
                _name(priors, (src, dst), "on_purchase"), share, "daily panel"
            )
    return daily, on_purchase


def unseen_churn(
    scenario: Scenario,
    log: EventLog,
    reference: pd.Timestamp,
    ids: pd.Index,
    boot: Bootstrap,
    daily: dict[Move, float],
    priors: Priors,
    out: ParameterTable,
    rng: np.random.Generator,
) -> dict[Move, float]:
    """Daily churn of the stages whose churn recency rules cannot see, by likelihood.

    A customer who churns from ``active`` simply goes quiet, so the rule-based panel never
    shows the move. The twin as a hidden Markov model does weigh it: a long silence is likelier
    if customers churn. One scale on the priors' ratios is chosen by the summed log-likelihood
    of every purchase history under the twin (:func:`filter_states`), per bootstrap replicate.
    Above ``CHURN_FIT_CUSTOMERS`` customers a seeded random subset is weighed: one number needs
    no more, and each grid point is a filter pass over every history.
    """
    base = {key: priors.daily[key] for key in UNSEEN_CHURN if priors.daily.get(key, 0.0) > 0}
    if not base:  # the template has no such churn: nothing to scale
        return dict(daily)
    rows = np.arange(len(ids))
    if len(ids) > CHURN_FIT_CUSTOMERS:
        rows = np.sort(rng.choice(len(ids), size=CHURN_FIT_CUSTOMERS, replace=False))
    lls = np.empty((len(rows), len(CHURN_SCALES)))
    for g, scale in enumerate(CHURN_SCALES):
        trial = with_daily(scenario, {key: v * scale for key, v in base.items()}, priors)
        lls[:, g] = filter_states(trial, log, reference, ids[rows]).log_likelihood
    fit = boot.weights[:, rows].astype(float) @ lls  # (B + 1, scales)
    best = np.argmax(fit, axis=1)
    scale = CHURN_SCALES[best]
    edge = " (the grid's largest: churn may be higher)" if best[0] == len(CHURN_SCALES) - 1 else ""
    out.drop({_name(priors, key, "daily") for key in base})  # the priors: replaced
    fitted = dict(daily)
    for key in base:
        fitted[key] = out.add(
            _name(priors, key, "daily"),
            base[key] * scale,
            f"maximum likelihood of {len(rows)} purchase histories under the twin (forward "
            f"filter): one scale, {scale[0]:.2g}, on the prior{edge}",
        )
    return fitted


def with_daily(scenario: Scenario, values: dict[Move, float], priors: Priors) -> Scenario:
    """``scenario`` with the daily moves ``values`` (keyed by rule stage) replaced."""
    named = {(priors.stage_names[s], priors.stage_names[d]): v for (s, d), v in values.items()}
    stages = []
    for stage in scenario.stages:
        moves = dict(stage.daily)
        moves.update({dst: v for (src, dst), v in named.items() if src == stage.name})
        stages.append(stage.model_copy(update={"daily": moves}))
    return scenario.model_copy(update={"stages": stages})
