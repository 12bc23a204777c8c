"""Channel response from randomized arms: attention, purchase lift, opt-outs and fatigue.

Attention (``channel_affinity``) is the open rate when the log has opens, else the visit
uplift of a randomized send over its control; purchase lift per offer and persona is the
conversion uplift over control per noticed send. Without a randomized control these are
assumed (observational uplift is confounded by targeting). Unsubscribe risk is unsubscribes
per noticed send; fatigue (attention lost under contact pressure) is how response falls with
the number of recent contacts.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nba.calibration.bootstrap import Bootstrap, safe_ratio
from nba.calibration.events import EventLog
from nba.calibration.priors import Priors
from nba.calibration.rates import MIN_GROUP, Customers
from nba.calibration.snapshot import contact_counts
from nba.calibration.table import ParameterTable
from nba.types import FloatArray

MIN_ATTENTION = 0.01  # below this, lift per noticed message is not identifiable
NO_SENDS = "no sends in the log"  # why a purchase-only log's response quantities are assumed
Action = tuple[str, str]  # (channel, offer) as logged


@dataclass(frozen=True)
class Response:
    """Fitted or assumed response, persona x channel and persona x action."""

    affinity: FloatArray  # (P, C) attention
    lift: FloatArray  # (P, A) purchase lift per noticed send
    pooled_lift: FloatArray  # (A,) pooled over personas
    lift_source: np.ndarray  # (P, A) "fitted" or "assumed"
    organic_visit: FloatArray  # (P,) control group's visit rate
    click: FloatArray  # (P, A) visit uplift over attention (observable only)
    offers: list[str]  # (A,) the calibrated offer of each action (see offer_names)


@dataclass(frozen=True)
class _Outcomes:
    """Per customer: contact columns and the outcome matrix the arms are summed over."""

    contact: np.ndarray
    channel: np.ndarray
    action: np.ndarray
    outcome: FloatArray  # (N, 4): bought, visited, opened, one
    has_opens: bool
    has_visits: bool

    @classmethod
    def of(cls, table: pd.DataFrame) -> _Outcomes:
        bought = (table["purchases"].to_numpy() > 0).astype(float)
        visited = table["visited"].to_numpy().astype(float)
        opened = table["opened"].to_numpy().astype(float)
        return cls(
            table["contact"].fillna("none").to_numpy(),
            table["channel"].astype("string").fillna("").to_numpy(),
            table["action"].astype("string").fillna("message").to_numpy(),
            np.stack([bought, visited, opened, np.ones(len(table))], axis=1),
            bool(opened.any()),
            bool(visited.any()),
        )


def logged_actions(log: EventLog) -> tuple[list[str], list[Action]]:
    """The channels and (channel, offer) pairs of the log's sends, sorted; both empty for a
    purchase-only log (then :func:`assumed_contact` gives the template's)."""
    sent = log.events[log.events["event"] == "sent"]
    channels = sorted(sent["channel"].dropna().unique().tolist())
    if not channels:
        return [], []
    actions = (
        sent.dropna(subset=["channel"])
        .assign(action=lambda f: f["action"].fillna("message"))
        .groupby(["channel", "action"], observed=True)
        .size()
        .index.tolist()
    )
    return channels, actions


def assumed_contact(
    n_personas: int, priors: Priors, out: ParameterTable
) -> tuple[list[str], list[Action], Response, dict[str, float], float]:
    """A log without sends: the template's channels and actions, every response its prior.

    Attention, lift, opt-out risk and fatigue need contacts to be seen; a purchase-only log
    (the commonest a retailer has) has none. The twin still needs something to act with, so
    it gets the template's catalogue: each persona's attention per channel is the template's
    share-weighted mean, each offer's lift and each channel's opt-out risk the template's.
    Returns channels, (channel, offer) actions, the response, opt-out risk per channel and
    fatigue's ``notice_drop``.
    """
    why = f"prior ({priors.source}): {NO_SENDS}"
    channels = [c["name"] for c in priors.template_channels]
    actions = [(a["channel"], a["offer"]) for a in priors.template_actions]
    offers = [offer for _, offer in actions]
    lift = {o["name"]: float(o["purchase_lift"]) for o in priors.template_offers}
    affinity = np.array([[priors.template_affinity[c] for c in channels]] * n_personas)
    for p in range(n_personas):
        for c, name in enumerate(channels):
            out.add(f"personas[{p}].channel_affinity.{name}", affinity[p, c], why, "assumed")
    for name, value in lift.items():
        out.add(f"offers[{name}].purchase_lift", value, why, source="assumed")
    unsubscribe = {
        c["name"]: out.add(
            f"channels[{c['name']}].unsubscribe_risk", c["unsubscribe_risk"], why, "assumed"
        )
        for c in priors.template_channels
    }
    notice_drop = out.add("fatigue.notice_drop", priors.notice_drop, why, "assumed")
    pooled = np.array([lift[o] for o in offers])
    response = Response(
        affinity=affinity,
        lift=np.tile(pooled, (n_personas, 1)),
        pooled_lift=pooled,
        lift_source=np.full((n_personas, len(actions)), "assumed", dtype=object),
        organic_visit=np.zeros(n_personas),
        click=np.ones((n_personas, len(actions))),
        offers=offers,
    )
    return channels, actions, response, unsubscribe, notice_drop


def offer_names(actions: list[Action]) -> list[str]:
    """The calibrated offer of each logged action: the logged offer, or ``{channel}_{offer}``
    when the log sends that offer on several channels (each arm is its own estimate)."""
    counts = Counter(offer for _, offer in actions)
    return [f"{channel}_{offer}" if counts[offer] > 1 else offer for channel, offer in actions]


def fit_response(
    people: Customers,
    boot: Bootstrap,
    channels: list[str],
    actions: list[Action],
    priors: Priors,
    out: ParameterTable,
) -> Response:
    """Attention per persona x channel and lift per persona x action from randomized arms.

    Attention is the open rate when the log has opens; otherwise the largest visit uplift of
    the channel's arms, 1-(1-v_arm)/(1-v_control) (the best message is clicked by everyone
    who notices it), and each arm's click-through is its uplift over that. Purchase lift per
    noticed send is the conversion uplift 1-(1-P_arm)/(1-P_control) over attention.
    """
    n_personas = people.n_personas
    data = _Outcomes.of(people.table)
    fit = Response(
        affinity=np.full((n_personas, len(channels)), priors.affinity),
        lift=np.full((n_personas, len(actions)), priors.lift),
        pooled_lift=np.full(len(actions), priors.lift),
        lift_source=np.full((n_personas, len(actions)), "assumed", dtype=object),
        organic_visit=np.zeros(n_personas),
        click=np.ones((n_personas, len(actions))),
        offers=offer_names(actions),
    )
    for c, name in enumerate(channels):
        control = (data.contact == "held_out") & (data.channel == name)
        mine = [a for a, (ch, _) in enumerate(actions) if ch == name]
        if not (people.randomized and control.sum() >= MIN_GROUP):
            _assumed_channel(name, [fit.offers[a] for a in mine], n_personas, priors, out)
            continue
        ctrl = boot.group_sums(data.outcome * control[:, None], people.persona, n_personas)
        ctrl_rate = safe_ratio(ctrl[..., :3], ctrl[..., 3:4])  # (B+1, P, 3)
        fit.organic_visit[:] = np.nan_to_num(ctrl_rate[0, :, 1])
        arm_sums, arm_rate = {}, {}
        for a in mine:
            arm = (data.contact == "sent") & (data.channel == name) & (data.action == actions[a][1])
            arm_sums[a] = boot.group_sums(data.outcome * arm[:, None], people.persona, n_personas)
            arm_rate[a] = safe_ratio(arm_sums[a][..., :3], arm_sums[a][..., 3:4])
        visit_uplift = {
            a: np.clip(1.0 - safe_ratio(1.0 - arm_rate[a][..., 1], 1.0 - ctrl_rate[..., 1]), 0, 1)
            for a in mine
        }
        attention = _attention(
            data, c, name, mine, arm_sums, visit_uplift, n_personas, priors, fit, out
        )
        for a in mine:
            uplift = np.nan_to_num(
                np.clip(1.0 - safe_ratio(1.0 - arm_rate[a][..., 0], 1.0 - ctrl_rate[..., 0]), -1, 1)
            )
            clicks = visit_uplift[a] if data.has_visits and not data.has_opens else None
            _arm_lift(a, fit.offers[a], uplift, arm_sums[a][..., 3], attention, clicks, fit, out)
    return fit


def _assumed_channel(
    name: str, offers: list[str], n_personas: int, priors: Priors, out: ParameterTable
) -> None:
    for p in range(n_personas):
        out.add(
            f"personas[{p}].channel_affinity.{name}",
            priors.affinity,
            "prior: no randomized control for this channel (targeted sends are confounded)",
            source="assumed",
        )
    for offer in offers:
        out.add(
            f"offers[{offer}].purchase_lift",
            priors.lift,
            "prior: no randomized control for this channel",
            source="assumed",
        )


def _attention(
    data: _Outcomes,
    c: int,
    name: str,
    mine: list[int],
    arm_sums: dict[int, FloatArray],
    visit_uplift: dict[int, FloatArray],
    n_personas: int,
    priors: Priors,
    fit: Response,
    out: ParameterTable,
) -> FloatArray:
    """(B+1, P) share of a channel's sends noticed; persona affinities into ``fit``."""
    sent_n = sum(arm_sums[a][..., 3] for a in mine)  # (B+1, P)
    if data.has_opens:
        opens = sum(arm_sums[a][..., 2] for a in mine)
        notice, how = safe_ratio(opens, sent_n), "open rate of sends"
    elif data.has_visits:
        notice = np.nanmax(np.stack([visit_uplift[a] for a in mine]), axis=0)
        how = "largest visit uplift of the channel's randomized arms over control"
    else:
        notice, how = None, ""
    attention = np.full(np.shape(sent_n), priors.affinity)
    for p in range(n_personas):
        if notice is not None and sent_n[0, p] >= MIN_GROUP and np.isfinite(notice[0, p]):
            attention[:, p] = np.clip(np.nan_to_num(notice[:, p]), 1e-6, 1.0)
            fit.affinity[p, c] = out.add(
                f"personas[{p}].channel_affinity.{name}", notice[:, p], how
            )
        else:
            out.add(
                f"personas[{p}].channel_affinity.{name}",
                priors.affinity,
                "prior: no opens or visits to measure attention",
                source="assumed",
            )
    return attention


def _arm_lift(
    a: int,
    offer: str,
    uplift: FloatArray,
    size: FloatArray,
    attention: FloatArray,
    visit_uplift: FloatArray | None,
    fit: Response,
    out: ParameterTable,
) -> None:
    """Pooled and per-persona purchase lift of one randomized arm, into ``fit``.

    With ``visit_uplift`` (visits logged, opens not), each persona's click-through too: the
    arm's visit uplift over attention, an observable the audit uses, not dynamics.
    """
    # a lift is a probability; where attention is near zero the ratio is noise
    per_noticed = np.clip(uplift / np.maximum(attention, MIN_ATTENTION), 0.0, 1.0)
    # pooled: a ratio of sums, not a mean of ratios (stable for small personas)
    pooled = safe_ratio((uplift * size).sum(axis=1), (attention * size).sum(axis=1))
    pooled = np.clip(np.nan_to_num(pooled), 0.0, 1.0)
    fit.pooled_lift[a] = out.add(
        f"offers[{offer}].purchase_lift",
        np.clip(pooled, 0.0, 1.0),
        "conversion uplift over control per noticed send, pooled over personas",
    )
    shrunk = shrink(per_noticed, pooled, size[0] >= MIN_GROUP)
    for p in range(size.shape[1]):
        if size[0, p] < MIN_GROUP:
            continue
        fit.lift[p, a] = out.add(
            f"personas[{p}].offer_lift.{offer}",
            np.clip(shrunk[:, p], 0.0, 1.0),
            "1-(1-P_arm)/(1-P_control) conversion uplift over attention, "
            "empirical-Bayes shrunk towards the pooled lift",
        )
        fit.lift_source[p, a] = "fitted"
        if visit_uplift is not None:
            ratio = safe_ratio(visit_uplift[:, p], attention[:, p])
            fit.click[p, a] = out.add(
                f"personas[{p}].click_through.{offer}",
                np.clip(ratio, 0.0, 1.0),
                "visit uplift of this arm over attention (observable, not dynamics)",
            )


def shrink(per_persona: FloatArray, pooled: FloatArray, usable: np.ndarray) -> FloatArray:
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


def fit_unsubscribe(
    people: Customers,
    boot: Bootstrap,
    channels: list[str],
    affinity: FloatArray,
    priors: Priors,
    out: ParameterTable,
) -> dict[str, float]:
    """Opt-out risk of a noticed contact per channel: unsubscribes over noticed sends.

    Noticed sends are the opens where the log has them, else each send weighted by its
    persona's attention.
    """
    table, persona = people.table, people.persona
    result = {}
    contact = people.contact
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
                priors.unsubscribe_risk,
                "prior: no unsubscribe events",
                source="assumed",
            )
    return result


def fit_fatigue(
    log: EventLog,
    priors: Priors,
    out: ParameterTable,
    rng: np.random.Generator,
    days: int = 30,
    window: int = 14,
) -> float:
    """Attention lost under pressure: response to a send by the number of recent sends."""
    sends = contact_counts(log, days)
    prior = priors.notice_drop
    if sends.empty or sends["prior_sends"].max() < 1:
        return out.add(
            "fatigue.notice_drop",
            prior,
            f"prior ({priors.source}): contact counts do not vary",
            "assumed",
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
            "fatigue.notice_drop",
            prior,
            f"prior ({priors.source}): too few repeated contacts",
            "assumed",
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
