"""Recalibrating a twin's channel response from a company's logs (the closed loop's refit).

Under a twin, a customer-day's chance to notice a contact, to buy without it and the offer's
uplift are known per full state; averaged over the customer's belief they are what the twin
expected of each logged send. Scaling a channel's attention by ``a`` scales the expected opens
by ``a``; scaling an offer's lift by ``l`` scales the expected uplift by about ``a * l``
(exactly, but for lifts clipped at 1). So, summed over a window's sends:

* attention factor of a channel that reports opens: observed opens / expected opens;
* lift factor of an offer: (purchases - expected baseline purchases) / expected uplift, the
  uplift taken with the channels' new attention;
* attention of a channel without opens: the same uplift ratio with the offers' new lifts.

Each factor has a binomial standard error and is shrunk towards 1 (the twin as it is) by its
precision against ``prior_sd``: a rarely sent action moves its twin little. A factor needs
``min_sends`` sends to move at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nba.belief_values import BeliefValues
from nba.errors import NBAValidationError
from nba.loop.world import scale_response
from nba.scenario import Scenario
from nba.state import CustomerState
from nba.types import BoolArray, FloatArray, IntArray

#: a factor is kept within these bounds however extreme a window's data
FACTOR_BOUNDS = (0.1, 10.0)


class ResponseTables:
    """A twin's per (response key, action) chance to notice, baseline purchase chance and
    offer uplift, and their belief-weighted averages for customers."""

    def __init__(self, values: BeliefValues) -> None:
        twin = values.twin
        if not twin.tabulate:
            raise NBAValidationError(
                f"scenario: {twin.arrays.scenario.name!r} is too large to tabulate its "
                "outcomes; the closed loop needs a tabulated twin"
            )
        self.values, self.space, self.n_actions = values, twin.space, twin.n_actions
        cases = twin.tables.outcomes.case_probs.reshape(-1, twin.n_actions, 4)
        self.notice: FloatArray = cases[..., 2] + cases[..., 3]
        self.base: FloatArray = cases[:, 0, 1]  # no action: nothing to notice
        self.uplift: FloatArray = cases[..., 3] - self.notice * self.base[:, None]
        self.buy: FloatArray = cases[..., 1] + cases[..., 3]

    def expected(
        self, belief: FloatArray, state: CustomerState, actions: IntArray
    ) -> dict[str, FloatArray]:
        """(N,) belief averages of notice, base, uplift and buy under each customer's action."""
        n = len(actions)
        keys = self.space.response_key(self.values.indices(state))  # (N, cells)
        weights = belief.reshape(n, -1)
        chosen = actions[:, None]
        return {
            "notice": np.einsum("nc,nc->n", weights, self.notice[keys, chosen]),
            "base": np.einsum("nc,nc->n", weights, self.base[keys]),
            "uplift": np.einsum("nc,nc->n", weights, self.uplift[keys, chosen]),
            "buy": np.einsum("nc,nc->n", weights, self.buy[keys, chosen]),
        }


@dataclass
class ResponseEvidence:
    """Per action sums over a window's customer-days: what was seen and what the twin expected."""

    n_actions: int
    sums: dict[str, FloatArray] = field(default_factory=dict)

    NAMES = ("sends", "opens", "bought", "notice", "notice_var", "base", "uplift", "buy_var")

    def __post_init__(self) -> None:
        self.sums = {name: np.zeros(self.n_actions) for name in self.NAMES}

    def add(
        self,
        actions: IntArray,
        opened: BoolArray,
        bought: BoolArray,
        expected: dict[str, FloatArray],
    ) -> None:
        """One day's customers (their executed action, open, purchase, the twin's expectation)."""
        notice, buy = expected["notice"], expected["buy"]
        columns = {
            "sends": np.ones(len(actions)),
            "opens": opened.astype(np.float64),
            "bought": bought.astype(np.float64),
            "notice": notice,
            "notice_var": notice * (1.0 - notice),
            "base": expected["base"],
            "uplift": expected["uplift"],
            "buy_var": buy * (1.0 - buy),
        }
        for name, weights in columns.items():
            self.sums[name] += np.bincount(actions, weights=weights, minlength=self.n_actions)


@dataclass(frozen=True)
class ResponseFit:
    """Factors against the twin they were fitted under (1 = unchanged), with standard errors."""

    channel_attention: dict[str, float]
    offer_lift: dict[str, float]
    standard_errors: dict[str, float]

    def apply(self, scenario: Scenario, name: str = "-refit") -> Scenario:
        return scale_response(scenario, self.channel_attention, self.offer_lift, name=name)


def fit_response(
    scenario: Scenario,
    evidence: ResponseEvidence,
    prior_sd: float = 0.2,
    min_sends: int = 200,
) -> ResponseFit:
    """Attention and lift factors from ``evidence`` gathered under ``scenario`` (module doc)."""
    s = evidence.sums
    channel_of = np.array([scenario.channel_names.index(a.channel) for a in scenario.actions])
    offer_names = [o.name for o in scenario.offers]
    offer_of = np.array([offer_names.index(a.offer) for a in scenario.actions])
    contact = np.arange(1, evidence.n_actions)  # action 0 is no action
    reports = np.array([c.reports_opens for c in scenario.channels])
    attention = np.ones(len(scenario.channels))
    lift = np.ones(len(offer_names))
    errors: dict[str, float] = {}

    def by(groups: IntArray, size: int, name: str) -> FloatArray:
        out: FloatArray = np.bincount(groups, weights=s[name][contact], minlength=size).astype(
            float
        )
        return out

    sends_c = by(channel_of, len(attention), "sends")
    opens = by(channel_of, len(attention), "opens")
    expected_opens = by(channel_of, len(attention), "notice")
    open_var = by(channel_of, len(attention), "notice_var")
    for c in np.flatnonzero(reports & (sends_c >= min_sends) & (expected_opens > 0)):
        raw, se = opens[c] / expected_opens[c], np.sqrt(open_var[c]) / expected_opens[c]
        attention[c] = _shrunk(raw, se, prior_sd)
        errors[f"attention.{scenario.channels[c].name}"] = float(se)

    extra = s["bought"][contact] - s["base"][contact]  # purchases beyond the baseline
    noise = s["buy_var"][contact]
    uplift_at = s["uplift"][contact] * attention[channel_of]
    sends_o = np.bincount(offer_of, weights=s["sends"][contact], minlength=len(lift))
    num = np.bincount(offer_of, weights=extra, minlength=len(lift))
    den = np.bincount(offer_of, weights=uplift_at, minlength=len(lift))
    var = np.bincount(offer_of, weights=noise, minlength=len(lift))
    for o in np.flatnonzero((sends_o >= min_sends) & (den > 0)):
        raw, se = num[o] / den[o], np.sqrt(var[o]) / den[o]
        lift[o] = _shrunk(raw, se, prior_sd)
        errors[f"lift.{offer_names[o]}"] = float(se)

    uplift_lifted = s["uplift"][contact] * lift[offer_of]
    num_c = np.bincount(channel_of, weights=extra, minlength=len(attention))
    den_c = np.bincount(channel_of, weights=uplift_lifted, minlength=len(attention))
    var_c = np.bincount(channel_of, weights=noise, minlength=len(attention))
    for c in np.flatnonzero(~reports & (sends_c >= min_sends) & (den_c > 0)):
        raw, se = num_c[c] / den_c[c], np.sqrt(var_c[c]) / den_c[c]
        attention[c] = _shrunk(raw, se, prior_sd)
        errors[f"attention.{scenario.channels[c].name}"] = float(se)
    return ResponseFit(
        {c.name: float(attention[i]) for i, c in enumerate(scenario.channels)},
        {name: float(lift[i]) for i, name in enumerate(offer_names)},
        errors,
    )


def _shrunk(raw: float, se: float, prior_sd: float) -> float:
    """``raw`` pulled towards 1 by its precision against the prior's, within the bounds."""
    weight = prior_sd**2 / (prior_sd**2 + se**2) if prior_sd > 0 else 0.0
    return float(np.clip(1.0 + weight * (raw - 1.0), *FACTOR_BOUNDS))
