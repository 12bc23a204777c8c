"""How a customer responds to the day's action: one probability model, one sampler.

A day has four outcome cases, crossing "noticed the message" with "bought":

    0: not noticed, no purchase    1: not noticed, purchase
    2: noticed, no purchase        3: noticed, purchase

:func:`outcome_model` gives, for each customer and executed action, the probability of each
case and, per case, the next-stage distribution, the chance that a discount habit is held
tomorrow and the chance of opting out. The twin samples from it (:func:`sample_outcomes`) and the
exact kernel enumerates it (:mod:`nba.kernel`): both read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import numpy as np

from nba.parameters import ScenarioArrays
from nba.state import CustomerState
from nba.types import BoolArray, FloatArray, IntArray

N_CASES = 4
CASE_BOUGHT = np.array([False, True, False, True])
CASE_NOTICED = np.array([False, False, True, True])


@dataclass
class Outcomes:
    """Outcome probabilities for N customer-action pairs."""

    case_probs: FloatArray  # (N, 4)
    next_stage: FloatArray  # (N, 4, K) next-stage distribution per case
    habit_next: FloatArray  # (N, 4) P(discount habit held tomorrow) per case
    opt_out_next: FloatArray  # (N, 4) P(opted out tomorrow) per case
    spend: FloatArray  # (N,) basket value of a purchase at full price
    discount: FloatArray  # (N,) share given away when a noticed discount offer is used
    contact_cost: FloatArray  # (N,)
    referral: FloatArray  # (N,) referral value earned today

    def take(self, rows: IntArray) -> Outcomes:
        """Outcomes of the given rows (e.g. gathered from a table of every pair)."""
        return Outcomes(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    @cached_property
    def case_cdf(self) -> FloatArray:
        """(3, N) inner CDF points of the case distribution (transposed for fast gathers)."""
        return _inner_cdf_columns(self.case_probs)

    @cached_property
    def stage_cdf(self) -> FloatArray:
        """(K - 1, N * 4) inner CDF points of the next stage, one column per (pair, case)."""
        return _inner_cdf_columns(self.next_stage.reshape(-1, self.next_stage.shape[2]))

    def case_rewards(self, margin_rate: float) -> FloatArray:
        """(N, 4) reward of each case: margin on a purchase, less discount and contact cost."""
        used_discount = self.discount[:, None] * CASE_NOTICED[None, :]
        margin = self.spend[:, None] * (margin_rate - used_discount) * CASE_BOUGHT[None, :]
        rewards: FloatArray = margin - self.contact_cost[:, None] + self.referral[:, None]
        return rewards

    def expected_reward(self, margin_rate: float) -> FloatArray:
        expected: FloatArray = (self.case_probs * self.case_rewards(margin_rate)).sum(axis=1)
        return expected


@dataclass(frozen=True)
class _Contact:
    """The day's executed actions, resolved once for every part of the outcome model."""

    channel: IntArray  # (N,) -1 for no action
    offer: IntArray  # (N,) -1 for no action
    is_contact: BoolArray
    safe_channel: IntArray  # channel, 0 where no action (for gathers)
    safe_offer: IntArray
    load: FloatArray  # (N,) contact pressure as a share of capacity
    habit: FloatArray  # (N,) discount habit as 0.0 / 1.0

    @classmethod
    def of(cls, arrays: ScenarioArrays, state: CustomerState, actions: IntArray) -> _Contact:
        channel = arrays.rules.action_channel[actions]
        offer = arrays.action_offer[actions]
        is_contact = channel >= 0
        return cls(
            channel=channel,
            offer=offer,
            is_contact=is_contact,
            safe_channel=np.where(is_contact, channel, 0),
            safe_offer=np.where(is_contact, offer, 0),
            load=state.pressure / arrays.rules.pressure_capacity,
            habit=state.habit.astype(np.float64),
        )


def outcome_model(arrays: ScenarioArrays, state: CustomerState, actions: IntArray) -> Outcomes:
    """Outcome probabilities for each customer under the (already allowed) executed action."""
    contact = _Contact.of(arrays, state, actions)
    persona, stage = state.persona, state.stage
    discount = np.where(contact.is_contact, arrays.action_discount[actions], 0.0)
    return Outcomes(
        case_probs=_case_probs(arrays, state, contact, discount),
        next_stage=_next_stage(arrays, state, contact),
        habit_next=_habit_next(arrays, contact.habit, discount > 0.0),
        opt_out_next=_opt_out_next(arrays, state, contact),
        spend=arrays.persona_basket[persona] * arrays.stage_spend_multiplier[stage],
        discount=discount,
        contact_cost=arrays.action_cost[actions],
        referral=arrays.stage_referral_value[stage],
    )


def _case_probs(
    arrays: ScenarioArrays, state: CustomerState, contact: _Contact, discount: FloatArray
) -> FloatArray:
    """(N, 4) probability of each outcome case: noticed x bought."""
    sc = arrays.scenario
    persona, stage, habit = state.persona, state.stage, contact.habit
    is_contact, safe_offer = contact.is_contact, contact.safe_offer
    # Attention: who notices the message, less so under contact pressure.
    affinity = arrays.persona_affinity[persona, contact.safe_channel]
    notice = np.where(is_contact, affinity * (1.0 - sc.fatigue.notice_drop * contact.load), 0.0)

    # Purchase: a baseline that a discount habit depresses, plus the offer's lift if noticed.
    # The customer's own rate level multiplies last (x 1.0 without heterogeneity: same bits).
    baseline: FloatArray = (
        arrays.persona_base_rate[persona]
        * arrays.stage_purchase_multiplier[stage]
        * (1.0 - sc.discount_habit.full_price_penalty * habit)
    )
    baseline = baseline * arrays.rate_level_multiplier[state.rate_level]
    baseline = np.clip(baseline, 0.0, 1.0)
    is_discount = discount > 0.0
    lift = arrays.offer_lift[safe_offer, stage]
    lift = lift * (
        1.0 + sc.response.barrier_match_boost * arrays.barrier_match[persona, safe_offer]
    )
    lift = lift * arrays.persona_offer_response[persona, safe_offer]
    price_response = arrays.persona_price_sensitivity[persona] * (
        1.0 + sc.discount_habit.discount_response_bonus * habit
    )
    lift = np.where(is_discount, lift * price_response, lift)
    lift = np.where(is_contact, np.clip(lift, 0.0, 1.0), 0.0)
    buy_if_noticed = baseline + (1.0 - baseline) * lift
    return np.stack(
        [
            (1.0 - notice) * (1.0 - baseline),
            (1.0 - notice) * baseline,
            notice * (1.0 - buy_if_noticed),
            notice * buy_if_noticed,
        ],
        axis=1,
    )


def _next_stage(arrays: ScenarioArrays, state: CustomerState, contact: _Contact) -> FloatArray:
    """(N, 4, K) next-stage distribution per case.

    The day's own transition (purchase or not, its dropout moves scaled by the customer's own
    dropout level), then the noticed offer's move, then the chance that an irritating contact
    makes the customer leave for good.
    """
    rules, stage, is_contact = arrays.rules, state.stage, contact.is_contact
    after_purchase = arrays.purchase_transition_by_level[state.dropout_level, stage]
    after_quiet_day = arrays.daily_transition_by_level[state.dropout_level, stage]
    moves = arrays.offer_moves[np.where(is_contact, contact.offer, -1)]  # (N, K, K)
    noticed_no_buy = np.einsum("nk,nkj->nj", after_quiet_day, moves)
    noticed_buy = np.einsum("nk,nkj->nj", after_purchase, moves)
    weight = np.where(is_contact, rules.channel_pressure[contact.safe_channel], 0)
    load_after = (
        np.minimum(state.pressure + weight, rules.pressure_capacity) / rules.pressure_capacity
    )
    churn_at_full = arrays.scenario.fatigue.churn_at_full_pressure
    irritation = np.where(is_contact, churn_at_full * load_after**2, 0.0)
    churn = np.zeros(arrays.n_stages)
    churn[arrays.churn_stage] = 1.0
    next_stage = np.stack(
        [
            after_quiet_day,
            after_purchase,
            _mix_towards(noticed_no_buy, churn, irritation),
            _mix_towards(noticed_buy, churn, irritation),
        ],
        axis=1,
    )
    absorbed = ~arrays.stage_can_buy[stage]
    next_stage[absorbed] = np.eye(arrays.n_stages)[stage[absorbed]][:, None, :]
    return next_stage


def _habit_next(arrays: ScenarioArrays, habit: FloatArray, is_discount: BoolArray) -> FloatArray:
    """(N, 4) P(discount habit tomorrow): a discounted purchase may form it; else it fades."""
    config = arrays.scenario.discount_habit
    keep = habit * (1.0 - config.decay)
    formed = habit + (1.0 - habit) * config.gain
    habit_next = np.repeat(keep[:, None], N_CASES, axis=1)
    habit_next[:, 3] = np.where(is_discount, formed, keep)
    return habit_next


def _opt_out_next(arrays: ScenarioArrays, state: CustomerState, contact: _Contact) -> FloatArray:
    """(N, 4) P(opted out tomorrow): only a noticed message on a consent channel can trigger
    one, and it is permanent."""
    safe_channel = contact.safe_channel
    needs_consent = contact.is_contact & arrays.rules.requires_consent[safe_channel]
    risk = arrays.channel_unsubscribe[safe_channel] * (
        1.0 + arrays.scenario.fatigue.unsubscribe_multiplier * contact.load
    )
    risk = np.where(needs_consent, np.clip(risk, 0.0, 1.0), 0.0)
    already = state.opted_out.astype(np.float64)
    opt_out_next = np.repeat(already[:, None], N_CASES, axis=1)
    opt_out_next[:, 2:] = (already + (1.0 - already) * risk)[:, None]
    return opt_out_next


@dataclass
class SampledDay:
    """What happened to each customer today."""

    case: IntArray  # (N,)
    stage: IntArray  # (N,) next stage
    habit: BoolArray  # (N,) next habit
    opted_out: BoolArray  # (N,) next opt-out
    reward: FloatArray  # (N,)
    revenue: FloatArray  # (N,) net of discounts
    discount_cost: FloatArray  # (N,)
    contact_cost: FloatArray  # (N,)

    @property
    def bought(self) -> BoolArray:
        return CASE_BOUGHT[self.case]

    @property
    def noticed(self) -> BoolArray:
        return CASE_NOTICED[self.case]


def sample_outcomes(
    outcomes: Outcomes, rows: IntArray, margin_rate: float, rng: np.random.Generator
) -> SampledDay:
    """Draw one day for customers whose outcome rows are ``rows``: four uniforms each.

    Only the rows drawn are gathered, so a table of every (state, action) pair can be sampled
    from directly. Inverse-CDF throughout, no Python loop over customers.
    """
    n = rows.shape[0]
    uniforms = rng.random((n, 4))
    case = inverse_cdf(outcomes.case_cdf, rows, uniforms[:, 0])
    row_case = rows * N_CASES + case
    stage = inverse_cdf(outcomes.stage_cdf, row_case, uniforms[:, 1])
    habit = uniforms[:, 2] < outcomes.habit_next.reshape(-1)[row_case]
    opted_out = uniforms[:, 3] < outcomes.opt_out_next.reshape(-1)[row_case]

    bought = CASE_BOUGHT[case]
    spend = np.where(bought, outcomes.spend[rows], 0.0)
    used_discount = np.where(CASE_NOTICED[case], outcomes.discount[rows], 0.0)
    discount_cost = spend * used_discount
    contact_cost = outcomes.contact_cost[rows]
    reward = spend * margin_rate - discount_cost - contact_cost + outcomes.referral[rows]
    return SampledDay(
        case=case,
        stage=stage,
        habit=habit,
        opted_out=opted_out,
        reward=reward,
        revenue=spend - discount_cost,
        discount_cost=discount_cost,
        contact_cost=contact_cost,
    )


def _mix_towards(dist: FloatArray, target: FloatArray, weight: FloatArray) -> FloatArray:
    """Move probability mass ``weight`` (per row) from ``dist`` onto the ``target`` outcome."""
    return dist * (1.0 - weight[:, None]) + weight[:, None] * target[None, :]


def categorical(probs: FloatArray, uniform: FloatArray) -> IntArray:
    """Inverse-CDF draw per row of ``probs`` (``uniform`` in [0, 1))."""
    return inverse_cdf(_inner_cdf_columns(probs), np.arange(probs.shape[0]), uniform)


def inverse_cdf(cdf_columns: FloatArray, rows: IntArray, uniform: FloatArray) -> IntArray:
    """Category of each draw: how many inner CDF points of its row lie at or below ``uniform``.

    ``cdf_columns`` is (categories - 1, rows), so the gather reads contiguous memory and the
    count is a uint8 reduction: several times faster than comparing (N, K) blocks row-wise.
    A category of probability zero is never drawn; the last category absorbs rounding.
    """
    points = np.take(cdf_columns, rows, axis=1)
    below = (uniform[None, :] >= points).view(np.uint8)
    category: IntArray = below.sum(axis=0, dtype=np.uint8).astype(np.intp)
    return category


def _inner_cdf_columns(probs: FloatArray) -> FloatArray:
    return np.ascontiguousarray(np.cumsum(probs, axis=1)[:, :-1].T)
