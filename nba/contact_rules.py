"""The one place contact rules are decided: consent, caps, the global cap, quiet days.

The twin, the envs and the live scorer all call :func:`action_mask`, so the rules an agent
trains under are exactly the rules applied when it serves. "No action" is always allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba.parameters import ContactRuleArrays
from nba.types import BoolArray, IntArray


@dataclass(frozen=True)
class RuleChecks:
    """Per-rule verdicts, each (N, A) and True where the rule allows the action."""

    consent: BoolArray
    pressure: BoolArray
    caps: BoolArray
    quiet: BoolArray

    @property
    def allowed(self) -> BoolArray:
        return self.consent & self.pressure & self.caps & self.quiet


def check_rules(
    rules: ContactRuleArrays,
    consent: BoolArray,
    pressure: IntArray,
    days_since: IntArray,
    weekday: IntArray,
) -> RuleChecks:
    """Evaluate every rule for N customers and all actions (vectorised).

    :param consent: (N, C) channels each customer currently consents to.
    :param pressure: (N,) contact-pressure level.
    :param days_since: (N, G) days since the last contact under each cap rule (>= 1).
    :param weekday: (N,) 0 = Monday ... 6 = Sunday.
    """
    channel = rules.action_channel
    is_contact = channel >= 0
    safe_channel = np.where(is_contact, channel, 0)
    n = pressure.shape[0]

    consent_ok = np.where(is_contact[None, :], consent[:, safe_channel], True)
    weight = np.where(is_contact, rules.channel_pressure[safe_channel], 0)
    pressure_ok = pressure[:, None] + weight[None, :] <= rules.pressure_capacity
    if rules.n_caps:
        cap_blocked = days_since < rules.cap_windows[None, :]  # (N, G): window still open
        in_cap = rules.action_in_cap.T.astype(np.uint8)  # (G, A)
        caps_ok = (cap_blocked.astype(np.uint8) @ in_cap) == 0
    else:
        caps_ok = np.ones((n, channel.shape[0]), dtype=bool)
    quiet_action = rules.quiet[:, safe_channel] & is_contact[None, :]  # (7, A)
    quiet_ok = ~quiet_action[weekday]
    return RuleChecks(consent=consent_ok, pressure=pressure_ok, caps=caps_ok, quiet=quiet_ok)


def action_mask(
    rules: ContactRuleArrays,
    consent: BoolArray,
    pressure: IntArray,
    days_since: IntArray,
    weekday: IntArray,
) -> BoolArray:
    """(N, A) True where the action is allowed now; column 0 ("no action") is always True."""
    return check_rules(rules, consent, pressure, days_since, weekday).allowed


def advance_contact_history(
    rules: ContactRuleArrays, pressure: IntArray, days_since: IntArray, actions: IntArray
) -> tuple[IntArray, IntArray]:
    """Contact history one day on, after executing ``actions`` (deterministic).

    Pressure gains the channel's weight on a contact day and drains by ``pressure_drain`` on a
    quiet day; each cap rule's clock restarts at 1 when it covers the channel used, else ages
    by a day up to its window.
    """
    new_pressure = pressure + rules.action_pressure_change[actions]
    np.maximum(new_pressure, 0, out=new_pressure)
    np.minimum(new_pressure, rules.pressure_capacity, out=new_pressure)
    new_days = np.empty_like(days_since)
    for g, window in enumerate(rules.cap_windows.tolist()):  # loop over a few rules, not customers
        aged = np.minimum(days_since[:, g] + 1, window)
        new_days[:, g] = np.where(rules.action_in_cap[:, g][actions], 1, aged)
    return new_pressure, new_days
