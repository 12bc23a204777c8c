"""What the twin believes about a customer it cannot see: one belief tracker for the product.

A company observes events, not personas or journey stages. The twin is a hidden Markov model
of those latent parts: a fixed *type* (persona x rate level x dropout level, prior: the product
of their shares) and a stage that moves each day; given the day's action it says how likely a
purchase (or none) is from each (type, stage) and where the stage goes. :class:`BeliefTracker`
runs its forward algorithm, so a belief is the exact posterior ``P(type, stage | observed)``,
(N, T, K) for N customers. Three ways to move beliefs, all the same arithmetic:
:meth:`~BeliefTracker.step` (one day for N customers: the store, the envs),
:meth:`~BeliefTracker.quiet` (each customer's own number of quiet days at once) and
:meth:`~BeliefTracker.run` (a whole history, event-driven: calibration's ``filter_states``).

What it conditions on: purchases and the actions the scenario knows, and, where
:meth:`~BeliefTracker.step` is given each customer's observed *context* (contact pressure and
discount habit, :mod:`nba.belief_model`), the outcome probabilities of that context; without
one (and in :meth:`~BeliefTracker.quiet` and :meth:`~BeliefTracker.run`) they are held at their
rested values (:func:`nba.state.rested_state`), exact for purchase-only histories. A
*conditioned start* (a purchase log holds customers because they bought) moves the customer
from the journey's entry stage as a purchase does and adds nothing to the evidence.
"""

from __future__ import annotations

__all__ = ["BeliefError", "BeliefTracker", "ImpossibleHistoryError", "StateBelief"]

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from nba.belief_model import (
    BeliefError,
    Context,
    check_flags,
    check_whole,
    context_hmm,
    context_index,
    twin_hmm,
)
from nba.belief_state import StateBelief
from nba.parameters import ScenarioArrays
from nba.scenario import Scenario
from nba.types import BoolArray, FloatArray, IntArray

#: Bytes of quiet-kernel powers a tracker keeps (longer quiet stretches apply them in rounds).
POWER_CACHE_BYTES = 64 * 2**20
#: Bytes of beliefs per block of a day step: the block and its scratch stay in cache.
STEP_BLOCK_BYTES = 2**18


class ImpossibleHistoryError(BeliefError):
    """A history the twin gives probability zero; ``row`` and ``day`` say whose and when."""

    def __init__(self, row: int, day: int | None) -> None:
        when = f"by day {day}" if day is not None else "on this step"
        super().__init__(
            f"events: the twin gives customer row {row}'s history {when} probability zero (a "
            "purchase in a state that cannot buy); check the scenario"
        )
        self.row, self.day = row, day


class BeliefTracker:
    """The twin's forward filter over (type, stage), for N customers at once.

    Types are persona-major, then rate level, then dropout level (:attr:`type_shape`); a belief
    is a C-contiguous float64 (N, T, K) array that sums to one per customer. Every update is in
    place and returns each customer's log evidence (the log probability of what was observed
    given the history before), so summing them gives the log likelihood of a history.
    """

    def __init__(self, scenario: Scenario | ScenarioArrays) -> None:
        if not isinstance(scenario, ScenarioArrays):
            scenario = ScenarioArrays.from_scenario(scenario)
        self.arrays = arrays = scenario
        self.type_shape = (arrays.n_personas, arrays.n_rate_levels, arrays.n_dropout_levels)
        self.n_types = int(np.prod(self.type_shape))
        self.n_stages, self.n_actions = arrays.n_stages, arrays.n_actions
        # (3A, T, K, K) by case: quiet, bought (+A), given start (+2A); then the action
        self.type_prior, self.kernels = twin_hmm(arrays)
        self._rowsums = self.kernels.sum(axis=-1)  # (3A, T, K): each kernel's evidence weights
        self._can_vanish = (self._rowsums <= 0).any(axis=(1, 2))
        self.entry = np.zeros_like(self.type_prior)  # (T, K) all on the journey's first stage
        self.entry[:, 0] = self.type_prior.sum(axis=1)
        power_bytes = self.n_types * self.n_stages**2 * 8
        self.max_cached_days = max(1, min(4_096, POWER_CACHE_BYTES // power_bytes - 1))
        self._powers = np.eye(self.n_stages)[None, None].repeat(self.n_types, axis=1)
        self.block = max(16, STEP_BLOCK_BYTES // (8 * self.n_types * self.n_stages))
        self._scratch = np.empty((self.block, self.n_types, self.n_stages))
        self._context_tables: tuple[FloatArray, FloatArray, BoolArray] | None = None

    def quiet_powers(self, days: int) -> FloatArray:
        """(days + 1, T, K, K) the no-action quiet kernel to the powers 0..days (cached, up to
        :attr:`max_cached_days`; each power is the previous times the kernel)."""
        if days > self.max_cached_days:
            raise BeliefError(f"days: {days} is past the {self.max_cached_days} powers cached")
        have = self._powers.shape[0] - 1
        if days > have:  # grow geometrically: a caller asking one day more each time
            size = max(days, min(2 * have, self.max_cached_days))
            grown = np.empty((size + 1, *self._powers.shape[1:]))
            grown[: have + 1] = self._powers
            for g in range(have + 1, size + 1):
                np.matmul(grown[g - 1], self.kernels[0], out=grown[g])
            self._powers = grown
        powers: FloatArray = self._powers[: days + 1]
        return powers

    # ---------------------------------------------------------------- beliefs
    def prior(
        self, n: int, *, consent: BoolArray | None = None, habit: BoolArray | None = None
    ) -> FloatArray:
        """(n, T, K) beliefs of customers nothing is known of yet: the scenario's type shares
        and starting stages, conditioned on what a company sees of a new customer.

        :param consent: (n, C) the channels each customer granted consent on: a persona whose
            consent differs cannot be theirs (the twin's personas carry their consent).
        :param habit: (n,) whether each customer starts with a discount habit, which the twin
            draws by persona.
        :raises BeliefError: a customer whose consent no persona grants (naming the row).
        """
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise BeliefError(f"n: expected a whole number of customers >= 0, got {n!r}")
        prior = np.empty((int(n), *self.type_prior.shape))
        prior[:] = self.type_prior
        if consent is None and habit is None:
            return prior
        arrays = self.arrays
        weight = np.ones((int(n), arrays.n_personas))
        if consent is not None:
            granted = np.asarray(consent, dtype=bool)
            if granted.shape != (n, arrays.persona_consent.shape[1]):
                shape = (n, arrays.persona_consent.shape[1])
                raise BeliefError(f"consent: expected {shape} booleans, got {granted.shape}")
            weight *= (granted[:, None, :] == arrays.persona_consent[None]).all(axis=2)
        if habit is not None:
            held = check_flags(habit, int(n), "habit")[:, None]
            start = arrays.persona_initial_habit[None, :]
            weight *= np.where(held, start, 1.0 - start)
        per_type = np.repeat(weight, self.n_types // arrays.n_personas, axis=1)
        prior *= per_type[:, :, None]
        mass = prior.sum(axis=(1, 2))
        if not (mass > 0).all():
            row = int(np.flatnonzero(~(mass > 0))[0])
            raise BeliefError(
                f"consent: row {row}'s consent and habit fit no persona of the scenario"
            )
        prior /= mass[:, None, None]
        return prior

    def state_belief(
        self,
        belief: FloatArray,
        customer_ids: pd.Index,
        log_likelihood: FloatArray,
        start: pd.Timestamp,
        days: int,
    ) -> StateBelief:
        """The :class:`StateBelief` view of (N, T, K) beliefs: the joint over levels where the
        scenario has them, else (N, P, K) as it is."""
        arrays, n = self.arrays, belief.shape[0]
        joint = belief.reshape(n, *self.type_shape, self.n_stages)
        probs, churn = joint.sum(axis=(2, 3)), arrays.churn_stage
        if self.n_types == arrays.n_personas:
            return StateBelief(customer_ids, probs, log_likelihood, start, days, churn)
        levels = (joint, arrays.rate_level_multiplier.copy())
        return StateBelief(customer_ids, probs, log_likelihood, start, days, churn, *levels)

    # ---------------------------------------------------------------- one day
    def step(
        self,
        belief: FloatArray,
        bought: BoolArray,
        action: IntArray,
        start: BoolArray | None = None,
        *,
        observed: BoolArray | None = None,
        context: Context | None = None,
    ) -> FloatArray:
        """Move every customer's belief by one observed day, in place; (N,) log evidence.

        :param bought: (N,) whether each customer bought that day.
        :param action: (N,) the twin action each was sent that day (0: none).
        :param start: (N,) that day's purchase is the customer's conditioned start: the belief
            restarts from :attr:`entry` and moves as after a purchase; evidence 0.
        :param observed: (N,) customers not yet observed (False) keep their belief; evidence 0.
        :param context: each customer's observed state that morning (a
            :class:`~nba.state.CustomerState` or a mapping with (N,) ``pressure`` and ``habit``,
            :data:`~nba.belief_model.Context`): each day moves by the kernel of the customer's
            own context, exact under sends. ``None``: the rested context for everyone (exact
            for purchase-only histories).
        :raises ImpossibleHistoryError: a day the twin gives probability zero (nothing moved).

        Customers are grouped by (context, bought, action) case: the most common case moves
        everyone in place, block by block through a small scratch (one batched BLAS product
        per block); the others are set aside first and moved by their own case's kernel. Not
        thread-safe (one scratch).
        """
        n = self._check_belief(belief)
        case = self._cases(n, bought, action, start, observed)
        if context is None:
            return self._move(belief, case, self.kernels, self._rowsums, self._can_vanish)
        if self._context_tables is None:  # built on first use: C x 3A kernels, a few MB
            kernels = context_hmm(self.arrays)
            rowsums = kernels.sum(axis=-1)
            self._context_tables = (kernels, rowsums, (rowsums <= 0).any(axis=(1, 2)))
        kernels, rowsums, vanish = self._context_tables
        per_context = 3 * self.n_actions
        which = context_index(self.arrays, context, n)
        case = np.where(case == per_context, len(kernels), which * per_context + case)
        return self._move(belief, case, kernels, rowsums, vanish)

    def _move(
        self,
        belief: FloatArray,
        case: IntArray,
        kernels: FloatArray,
        rowsums: FloatArray,
        can_vanish: BoolArray,
    ) -> FloatArray:
        """:meth:`step` once each customer's case (a row of ``kernels``; ``len(kernels)``: not
        observed) is known; a case ``c`` with ``c % 3A >= 2A`` is a conditioned start."""
        n, a = belief.shape[0], self.n_actions
        counts = np.bincount(case, minlength=len(kernels) + 1)[: len(kernels)]
        counts[np.arange(len(kernels)) % (3 * a) >= 2 * a] = -1  # the bulk is not a start
        bulk = int(counts.argmax())
        others = np.flatnonzero(case != bulk)
        order = others[np.argsort(case[others], kind="stable")]
        moved = np.take(belief, order, axis=0)  # one gather, in case order
        gained = np.zeros(len(order))
        cuts = np.flatnonzero(np.diff(case[order])) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(order)], strict=True):
            rows, c = order[lo:hi], int(case[order[lo]]) if hi > lo else len(kernels)
            if c == len(kernels):  # not observed yet: as it was
                continue
            given = c % (3 * a) >= 2 * a
            if given:
                moved[lo:hi] = self.entry
            total = self._apply(moved[lo:hi], kernels[c], rowsums[c])
            _check_mass(total, rows, None)
            if not given:
                gained[lo:hi] = np.log(total)
        if can_vanish[bulk]:  # refuse before anything moves
            mass = belief.reshape(n, -1) @ rowsums[bulk].ravel()
            _check_mass(np.where(case == bulk, mass, 1.0), np.arange(n), None)
        with np.errstate(divide="ignore", invalid="ignore"):
            evidence: FloatArray = np.log(self._apply(belief, kernels[bulk], rowsums[bulk]))
        belief[order] = moved
        evidence[order] = gained
        return evidence

    def quiet(self, belief: FloatArray, days: IntArray) -> FloatArray:
        """Move each customer's belief by their own number of quiet, uncontacted days, in
        place; (N,) log evidence (the sum of as many day steps' evidence).

        Each stretch is one product with a cached power of the quiet kernel; customers are
        grouped by length. Stretches past :attr:`max_cached_days` go in rounds of it.
        """
        n = self._check_belief(belief)
        left = check_whole(days, (n,), "days", 0).astype(np.int64)
        evidence = np.zeros(n)
        while (left > 0).any():
            who = np.flatnonzero(left > 0)
            gap = np.minimum(left[who], self.max_cached_days)
            powers = self.quiet_powers(int(gap.max()))
            order = np.argsort(gap, kind="stable")
            who, gap = who[order], gap[order]
            moved = belief[who]
            total = np.empty(len(who))
            cuts = np.flatnonzero(np.diff(gap)) + 1
            for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(who)], strict=True):
                power = powers[gap[lo]]
                total[lo:hi] = self._apply(moved[lo:hi], power, power.sum(axis=-1))
            _check_mass(total, who, None)
            belief[who] = moved
            evidence[who] += np.log(total)
            left[who] -= gap
        return evidence

    def _apply(self, belief: FloatArray, kernel: FloatArray, rowsum: FloatArray) -> FloatArray:
        """Move contiguous (m, T, K) beliefs by one (T, K, K) kernel and normalise, in place,
        a cache-sized block at a time; returns the (m,) mass kept before normalising."""
        m, flat, weights = belief.shape[0], belief.reshape(belief.shape[0], -1), rowsum.ravel()
        total = np.empty(m)
        for lo in range(0, m, self.block):
            hi = min(m, lo + self.block)
            block, scratch = belief[lo:hi], self._scratch[: hi - lo]
            np.matmul(flat[lo:hi], weights, out=total[lo:hi])
            np.matmul(block.transpose(1, 0, 2), kernel, out=scratch.transpose(1, 0, 2))
            with np.errstate(divide="ignore", invalid="ignore"):
                np.divide(scratch, total[lo:hi, None, None], out=block)
        return total

    # ---------------------------------------------------------------- a history
    def run(
        self,
        purchase: BoolArray,
        action: npt.NDArray[np.integer[Any]],
        first_day: IntArray | None = None,
        given_day: IntArray | None = None,
        *,
        chunk: int = 4_096,
    ) -> tuple[FloatArray, FloatArray]:
        """(N, T, K) beliefs after a whole (N, days) history and (N,) log likelihoods.

        Event-driven: most days are quiet and uncontacted, and a run of ``g`` of them is one
        product with the quiet kernel's ``g``-th power, so the work is per purchase or send,
        not per day; the normalisers multiply to the same evidence as :meth:`step` day by day.

        :param purchase: (N, days) purchase days.
        :param action: (N, days) twin action sent each day (0: none; any integer dtype).
        :param first_day: (N,) the day each customer is observed from (``days``: never, the
            prior stands); default 0.
        :param given_day: (N,) the day of the purchase that is the customer's conditioned start
            (-1: none); default none.
        :param chunk: customers per block (bounds memory: each event gathers chunk x T x K x K
            kernel numbers).
        """
        if not isinstance(chunk, int) or chunk < 1:
            raise BeliefError(f"chunk: expected a positive whole number, got {chunk!r}")
        flags = isinstance(purchase, np.ndarray) and purchase.dtype == bool
        if not (flags and purchase.ndim == 2 and purchase.shape[1] >= 1):
            raise BeliefError("purchase: expected an (N, days) boolean array, days >= 1")
        check_whole(action, purchase.shape, "action", 0, self.n_actions - 1)
        n, days = purchase.shape
        first = np.zeros(n, np.int64) if first_day is None else first_day
        first = check_whole(first, (n,), "first_day", 0, days).astype(np.int64)
        given = np.full(n, -1, np.int64) if given_day is None else given_day
        given = check_whole(given, (n,), "given_day", -1, days - 1).astype(np.int64)
        starts = np.flatnonzero(given >= 0)
        wrong = ~purchase[starts, given[starts]] | (given[starts] < first[starts])
        if wrong.any():
            bad = starts[wrong][0]
            raise BeliefError(
                f"given_day: row {bad}'s start, day {given[bad]}, has no purchase or is before "
                "its first_day"
            )
        belief = np.empty((n, self.n_types, self.n_stages))
        log_likelihood = np.zeros(n)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            try:
                belief[lo:hi], log_likelihood[lo:hi] = self._forward(
                    purchase[lo:hi], action[lo:hi], first[lo:hi], given[lo:hi]
                )
            except ImpossibleHistoryError as error:
                raise ImpossibleHistoryError(lo + error.row, error.day) from None
        return belief, log_likelihood

    def _forward(
        self,
        purchase: BoolArray,
        action: npt.NDArray[np.integer[Any]],
        first_day: IntArray,
        given_day: IntArray,
    ) -> tuple[FloatArray, FloatArray]:
        """:meth:`run` on one block of customers: a pass per j-th event of every customer."""
        n, days = purchase.shape
        eventful = (purchase | (action != 0)) & (np.arange(days)[None, :] >= first_day[:, None])
        rows, event_day = np.nonzero(eventful)  # by customer, then day
        counts = np.bincount(rows, minlength=n)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        belief = self.prior(n)
        log_likelihood = np.zeros(n)
        now = np.minimum(first_day, days)  # the day each belief stands at the start of
        a = self.n_actions
        for j in range(int(counts.max(initial=0))):
            who = np.flatnonzero(counts > j)
            day = event_day[offsets[who] + j]
            log_likelihood[who] += self._quiet_rows(belief, who, day - now[who], day)
            bought, chosen = purchase[who, day], action[who, day].astype(np.int64)
            case = chosen + a * bought
            start = given_day[who] == day
            if start.any():  # from the entry stage, as a customer before buying
                case[start] = 2 * a + chosen[start]
                belief[who[start]] = self.entry
            gained = _advance(belief, who, self.kernels[case], day)
            log_likelihood[who] += np.where(start, 0.0, gained)
            now[who] = day + 1
        rest = np.flatnonzero(now < days)  # quiet to the cutoff
        log_likelihood[rest] += self._quiet_rows(
            belief, rest, days - now[rest], np.full(len(rest), days - 1)
        )
        return belief, log_likelihood

    def _quiet_rows(
        self, belief: FloatArray, who: IntArray, gaps: IntArray, day: IntArray
    ) -> FloatArray:
        """:meth:`run`'s quiet stretches: ``belief[who]`` by each one's power (in rounds of
        :attr:`max_cached_days` past it); (m,) log evidence."""
        evidence = np.zeros(len(who))
        cap = self.max_cached_days
        while (gaps > cap).any():
            long = np.flatnonzero(gaps > cap)
            powers = self.quiet_powers(cap)
            kernel = powers[np.full(len(long), cap)]
            evidence[long] += _advance(belief, who[long], kernel, day[long])
            gaps = np.where(gaps > cap, gaps - cap, gaps)
        powers = self.quiet_powers(int(gaps.max(initial=0)))
        evidence += _advance(belief, who, powers[gaps], day)
        return evidence

    # ---------------------------------------------------------------- checks
    def _check_belief(self, belief: FloatArray) -> int:
        shape = (self.n_types, self.n_stages)
        ok = isinstance(belief, np.ndarray) and belief.dtype == np.float64 and belief.ndim == 3
        if not (
            ok
            and belief.shape[1:] == shape
            and belief.flags.c_contiguous
            and belief.flags.writeable
        ):
            got = f"{belief.dtype} {belief.shape}" if isinstance(belief, np.ndarray) else belief
            raise BeliefError(
                f"belief: expected a writeable C-contiguous float64 (N, {shape[0]}, "
                f"{shape[1]}) array (from prior()), got {got}"
            )
        return int(belief.shape[0])

    def _cases(
        self,
        n: int,
        bought: BoolArray,
        action: IntArray,
        start: BoolArray | None,
        observed: BoolArray | None,
    ) -> IntArray:
        """(N,) each customer's kernel: bought * A + action, 2A + action for a conditioned
        start, 3A for one not observed yet."""
        a = self.n_actions
        buy = check_flags(bought, n, "bought")
        case = check_whole(action, (n,), "action", 0, a - 1).astype(np.int64)
        case[buy] += a
        if start is not None:
            first = check_flags(start, n, "start")
            if (first & ~buy).any():
                row = int(np.flatnonzero(first & ~buy)[0])
                raise BeliefError(f"start: row {row} starts without a purchase that day")
            case[first] += a
        if observed is not None:
            case[~check_flags(observed, n, "observed")] = 3 * a
        return case


# ------------------------------------------------------------------------------ internals
def _check_mass(total: FloatArray, rows: IntArray, day: IntArray | None) -> None:
    """Refuse a history the twin gives probability zero, naming the first such row."""
    if not (total > 0).all():
        bad = int(np.flatnonzero(~(total > 0))[0])
        raise ImpossibleHistoryError(int(rows[bad]), None if day is None else int(day[bad]))


def _advance(belief: FloatArray, who: IntArray, kernel: FloatArray, day: IntArray) -> FloatArray:
    """Move ``belief[who]`` (m, T, K) by each one's (m, T, K, K) kernel and normalise, in
    place; returns the (m,) log of the probability mass kept (the step's evidence)."""
    moved = np.matmul(belief[who][:, :, None, :], kernel)[:, :, 0, :]
    total = moved.sum(axis=(1, 2))
    _check_mass(total, who, day)
    belief[who] = moved / total[:, None, None]
    logs: FloatArray = np.log(total)
    return logs
