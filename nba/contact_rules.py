"""The one place contact rules are decided and explained: consent, exclusions, caps, quiet days.

Every rule is one :class:`ContactRule` in :data:`RULES`: its name (what a blocked decision
reports), the state it reads, its (N, A) verdict and the sentence that explains a block. The
twin, the kernel, the envs, evaluation and the live scorer all evaluate the same declarations,
so the rules an agent trains under are exactly the rules applied, and explained, when it
serves. :data:`RULES` is also the precedence: the rule reported for a blocked action is the
first that blocks it (:meth:`RuleMasks.blocked_by`). "No action" is always allowed.

Adding a rule is one declaration here (plus its scenario field and its arrays in
:meth:`ContactRuleArrays.from_scenario`): masks, the optimum, training masks and serving's
reasons follow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from nba.errors import NBAValidationError
from nba.types import WEEKDAYS, BoolArray, IntArray

if TYPE_CHECKING:
    from nba.scenario import Scenario


@dataclass(frozen=True)
class ContactRuleArrays:
    """Everything the rules read from a scenario, as arrays (built by :meth:`from_scenario`)."""

    action_channel: IntArray  # (A,) channel index per action, -1 for no action
    channel_pressure: IntArray  # (C,)
    pressure_capacity: int
    pressure_drain: int
    cap_windows: IntArray  # (G,) window length in days per cap rule
    cap_members: BoolArray  # (G, C) channel belongs to cap rule
    quiet: BoolArray  # (7, C) channel silent on weekday
    requires_consent: BoolArray  # (C,)
    #: (S, A) action excluded for a customer in the stage (``contact_rules.exclusions``)
    excluded: BoolArray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> ContactRuleArrays:
        """Compile a scenario's ``contact_rules`` (and its channels' rule settings)."""
        channels = scenario.channel_names
        action_channel = np.array(
            [-1, *(channels.index(a.channel) for a in scenario.actions)], dtype=np.int64
        )
        config = scenario.contact_rules
        cap_members = np.zeros((len(config.caps), len(channels)), dtype=bool)
        for g, cap in enumerate(config.caps):
            cap_members[g, [channels.index(c) for c in cap.channels]] = True
        quiet = np.zeros((len(WEEKDAYS), len(channels)), dtype=bool)
        for channel, days in config.quiet_days.items():
            quiet[[WEEKDAYS.index(d) for d in days], channels.index(channel)] = True
        excluded = np.zeros((len(scenario.stages), len(action_channel)), dtype=bool)
        for rule in config.exclusions:
            for a, action in enumerate(scenario.actions, start=1):
                if _covers(rule.offers, action.offer) and _covers(rule.channels, action.channel):
                    excluded[[scenario.stage_names.index(s) for s in rule.stages], a] = True
        return cls(
            action_channel=action_channel,
            channel_pressure=np.array([c.pressure for c in scenario.channels], dtype=np.int64),
            pressure_capacity=config.pressure_capacity,
            pressure_drain=config.pressure_drain,
            cap_windows=np.array([c.window_days for c in config.caps], dtype=np.int64),
            cap_members=cap_members,
            quiet=quiet,
            requires_consent=np.array([c.requires_consent for c in scenario.channels]),
            excluded=excluded,
        )

    @property
    def n_actions(self) -> int:
        return int(self.action_channel.shape[0])

    @property
    def n_caps(self) -> int:
        return int(self.cap_windows.shape[0])

    @cached_property
    def has_exclusions(self) -> bool:
        return bool(self.excluded.any())

    @cached_property
    def action_pressure_change(self) -> IntArray:
        """(A,) pressure change of a day with each action: + channel weight, or - drain."""
        weight = self.channel_pressure[np.maximum(self.action_channel, 0)]
        return np.where(self.action_channel >= 0, weight, -self.pressure_drain)

    @cached_property
    def action_in_cap(self) -> BoolArray:
        """(A, G) whether each action's channel is covered by each cap rule."""
        members = self.cap_members[:, np.maximum(self.action_channel, 0)].T
        in_cap: BoolArray = members & (self.action_channel >= 0)[:, None]
        return in_cap

    @cached_property
    def rules(self) -> tuple[ContactRule, ...]:
        """The rules this scenario uses, in precedence order (a rule it never uses is left out)."""
        return tuple(rule for rule in RULES if rule.applies(self))


def _covers(listed: Sequence[str], name: str) -> bool:
    return not listed or name in listed


# ---------------------------------------------------------------------------------- consent
@overload
def effective_consent(
    granted: BoolArray, opted_out: BoolArray, requires_consent: BoolArray
) -> BoolArray: ...
@overload
def effective_consent(
    granted: Sequence[bool], opted_out: bool, requires_consent: Sequence[bool]
) -> tuple[bool, ...]: ...
def effective_consent(granted: Any, opted_out: Any, requires_consent: Any) -> Any:
    """Channels a customer may be contacted on: what they granted, minus opt-outs.

    An opt-out withdraws every channel that needs consent (paid social audiences need none).
    The one definition for the twin's state, request parsing and serving: arrays in
    ((N, C) granted, (N,) opted out) give (N, C); plain values (one customer's granted
    channels and opt-out, on the latency path) give a tuple of booleans.
    """
    if isinstance(granted, np.ndarray):
        revoked = np.asarray(opted_out)[..., None] & np.asarray(requires_consent)
        return granted & ~revoked
    return tuple(
        bool(g) and not (opted_out and bool(r))
        for g, r in zip(granted, requires_consent, strict=True)
    )


def consent_mask(rules: ContactRuleArrays, consent: BoolArray) -> BoolArray:
    """(N, A) the consent rule's verdict: a contact needs consent on its channel."""
    channel = rules.action_channel
    is_contact = channel >= 0
    return np.where(is_contact[None, :], consent[:, np.where(is_contact, channel, 0)], True)


# ---------------------------------------------------------------------------------- the rules
@dataclass(frozen=True)
class RuleInputs:
    """What the rules read for N customers on one day: consent, weekday and the state.

    ``state`` is the customers' state (a :class:`~nba.state.CustomerState`, or any object with
    the components the rules read as attributes); each rule reads its own components through
    :meth:`component`, which refuses a missing one rather than guess.
    """

    consent: BoolArray  # (N, C) channels each customer consents to now
    weekday: IntArray  # (N,) 0 = Monday ... 6 = Sunday
    state: Any

    @property
    def n(self) -> int:
        return int(self.consent.shape[0])

    def component(self, name: str) -> np.ndarray:
        value = getattr(self.state, name, None)
        if value is None:
            raise NBAValidationError(
                f"contact rules: a rule of this scenario reads the customer's {name}; pass it"
            )
        return np.asarray(value)


Check = Callable[[ContactRuleArrays, RuleInputs], BoolArray]
Explain = Callable[["Scenario", ContactRuleArrays, int], str]


@dataclass(frozen=True)
class ContactRule:
    """One contact rule: what it is called, reads, allows and says when it blocks.

    :param name: reported as the reason a decision was suppressed (``"cap: ..."``).
    :param reads: the inputs it reads: ``consent``, ``weekday`` or state components (the
        training mask tabulates those).
    :param allows: (N, A) True where the rule allows the action.
    :param explain: the sentence, starting with ``name``, for a blocked action ``a``.
    :param applies: whether a scenario uses the rule at all (an unused rule costs nothing).
    """

    name: str
    reads: tuple[str, ...]
    allows: Check
    explain: Explain
    applies: Callable[[ContactRuleArrays], bool] = lambda rules: True
    doc: str = ""


def _channel_name(scenario: Scenario, rules: ContactRuleArrays, a: int) -> str:
    channel = int(rules.action_channel[a])
    return scenario.channel_names[channel] if channel >= 0 else "none"


def _explain_consent(scenario: Scenario, rules: ContactRuleArrays, a: int) -> str:
    return f"consent: no consent for {_channel_name(scenario, rules, a)}"


def _excluded(rules: ContactRuleArrays, inputs: RuleInputs) -> BoolArray:
    allowed: BoolArray = ~rules.excluded[inputs.component("stage")]
    return allowed


def _explain_exclusion(scenario: Scenario, rules: ContactRuleArrays, a: int) -> str:
    action = scenario.action_names[a]
    stages = [s for k, s in enumerate(scenario.stage_names) if rules.excluded[k, a]]
    names = [
        rule.name
        for rule in scenario.contact_rules.exclusions
        if a > 0
        and set(rule.stages) & set(stages)
        and _covers(rule.offers, scenario.actions[a - 1].offer)
        and _covers(rule.channels, scenario.actions[a - 1].channel)
    ]
    return f"exclusion: {names} rule out {action} for customers in {stages}"


def _caps(rules: ContactRuleArrays, inputs: RuleInputs) -> BoolArray:
    if not rules.n_caps:
        return np.ones((inputs.n, rules.n_actions), dtype=bool)
    open_window = inputs.component("days_since") < rules.cap_windows[None, :]  # (N, G)
    in_cap = rules.action_in_cap.T.astype(np.uint8)  # (G, A)
    allowed: BoolArray = (open_window.astype(np.uint8) @ in_cap) == 0
    return allowed


def _explain_cap(scenario: Scenario, rules: ContactRuleArrays, a: int) -> str:
    name = _channel_name(scenario, rules, a)
    caps = [cap.name for cap in scenario.contact_rules.caps if name in cap.channels]
    return f"cap: contact cap {caps} still open for {name}"


def _pressure(rules: ContactRuleArrays, inputs: RuleInputs) -> BoolArray:
    channel = rules.action_channel
    weight = np.where(channel >= 0, rules.channel_pressure[np.maximum(channel, 0)], 0)
    level = inputs.component("pressure")
    allowed: BoolArray = level[:, None] + weight[None, :] <= rules.pressure_capacity
    return allowed


def _explain_pressure(scenario: Scenario, rules: ContactRuleArrays, a: int) -> str:
    return f"global_cap: contact pressure too high for {_channel_name(scenario, rules, a)}"


def _quiet(rules: ContactRuleArrays, inputs: RuleInputs) -> BoolArray:
    channel = rules.action_channel
    quiet_action = rules.quiet[:, np.maximum(channel, 0)] & (channel >= 0)[None, :]  # (7, A)
    allowed: BoolArray = ~quiet_action[inputs.weekday]
    return allowed


def _explain_quiet(scenario: Scenario, rules: ContactRuleArrays, a: int) -> str:
    channel = int(rules.action_channel[a])
    quiet = [WEEKDAYS[d] for d in range(7) if channel >= 0 and rules.quiet[d, channel]]
    return f"quiet_day: {_channel_name(scenario, rules, a)} is silent on {quiet}"


#: Every rule, in precedence order: a blocked action reports the first rule that blocks it.
RULES: tuple[ContactRule, ...] = (
    ContactRule(
        "consent",
        ("consent",),
        lambda rules, inputs: consent_mask(rules, inputs.consent),
        _explain_consent,
        doc="a contact needs the customer's consent on its channel",
    ),
    ContactRule(
        "exclusion",
        ("stage",),
        _excluded,
        _explain_exclusion,
        applies=lambda rules: rules.has_exclusions,
        doc="no excluded offer to a customer in an excluded stage (contact_rules.exclusions)",
    ),
    ContactRule(
        "cap",
        ("days_since",),
        _caps,
        _explain_cap,
        doc="at most one contact per cap rule's channels in its window",
    ),
    ContactRule(
        "global_cap",
        ("pressure",),
        _pressure,
        _explain_pressure,
        doc="no contact that would overflow the pressure capacity (the leaky bucket)",
    ),
    ContactRule(
        "quiet_day",
        ("weekday",),
        _quiet,
        _explain_quiet,
        doc="no contact on a channel's quiet weekdays (the customer's own time)",
    ),
)
RULE_NAMES: tuple[str, ...] = tuple(rule.name for rule in RULES)


@dataclass(frozen=True)
class RuleMasks:
    """The rules' verdicts as an ordered, named set of (N, A) masks, True where allowed.

    Ordered by precedence (:data:`RULES`, those the scenario uses). ``masks["cap"]`` reads one
    rule; :attr:`allowed` is every rule at once; :meth:`blocked_by` names the rule that stops
    an action and :meth:`explanations` says why in words.
    """

    rules: tuple[ContactRule, ...]
    masks: tuple[BoolArray, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(rule.name for rule in self.rules)

    def __getitem__(self, name: str) -> BoolArray:
        names = self.names
        if name not in names:
            raise KeyError(f"contact rule {name!r}: not used here; rules are {list(names)}")
        return self.masks[names.index(name)]

    def get(self, name: str) -> BoolArray | None:
        """One rule's mask, or ``None`` when the scenario does not use that rule."""
        return self[name] if name in self.names else None

    @cached_property
    def allowed(self) -> BoolArray:
        """(N, A) every rule allows the action."""
        return self.allowed_except()

    def allowed_except(self, *names: str) -> BoolArray:
        """(N, A) every rule but ``names`` allows the action."""
        result: BoolArray | None = None
        for rule, mask in zip(self.rules, self.masks, strict=True):
            if rule.name not in names:
                result = mask.copy() if result is None else result & mask
        if result is None:  # no rule left: everything is allowed
            return np.ones_like(self.masks[0])
        return result

    def blocked_by(self, rows: IntArray, actions: IntArray, *, skip: str | None = None) -> IntArray:
        """Position in :attr:`rules` of the first rule blocking each (row, action), -1 if none.

        ``skip`` leaves one rule out (the scorer judges consent per request).
        """
        first = np.full(np.shape(rows), -1, dtype=np.int64)
        for k in range(len(self.rules) - 1, -1, -1):
            if self.rules[k].name != skip:
                first = np.where(self.masks[k][rows, actions], first, k)
        return first

    # legacy names of the retail rules' masks (RuleChecks' fields)
    @property
    def consent(self) -> BoolArray:
        return self["consent"]

    @property
    def caps(self) -> BoolArray:
        return self["cap"]

    @property
    def pressure(self) -> BoolArray:
        return self["global_cap"]

    @property
    def quiet(self) -> BoolArray:
        return self["quiet_day"]


#: The earlier name of :class:`RuleMasks`.
RuleChecks = RuleMasks


def explanations(scenario: Scenario, rules: ContactRuleArrays) -> list[list[str]]:
    """Per rule of ``rules.rules`` (precedence order), per action: why the rule blocks it."""
    return [
        [rule.explain(scenario, rules, a) for a in range(rules.n_actions)] for rule in rules.rules
    ]


def evaluate(rules: ContactRuleArrays, inputs: RuleInputs) -> RuleMasks:
    """Every rule the scenario uses, for N customers and all actions (vectorised)."""
    active = rules.rules
    return RuleMasks(active, tuple(rule.allows(rules, inputs) for rule in active))


def rule_masks(
    rules: ContactRuleArrays, state: Any, weekday: IntArray, consent: BoolArray
) -> RuleMasks:
    """Every rule for customers in ``state`` on ``weekday`` under ``consent`` (N, C).

    What the twin, the kernel, evaluation and serving call: each rule reads the state
    components it needs, so a rule over a new component changes no caller.
    """
    return evaluate(rules, RuleInputs(consent, np.asarray(weekday), state))


@dataclass(frozen=True)
class _History:
    pressure: IntArray
    days_since: IntArray
    stage: IntArray | None = None


def check_rules(
    rules: ContactRuleArrays,
    consent: BoolArray,
    pressure: IntArray,
    days_since: IntArray,
    weekday: IntArray,
    stage: IntArray | None = None,
) -> RuleMasks:
    """Evaluate every rule for N customers and all actions from the rule inputs themselves.

    :param consent: (N, C) channels each customer currently consents to.
    :param pressure: (N,) contact-pressure level.
    :param days_since: (N, G) days since the last contact under each cap rule (>= 1).
    :param weekday: (N,) 0 = Monday ... 6 = Sunday.
    :param stage: (N,) journey stage; required when the scenario has exclusions.
    """
    return rule_masks(rules, _History(pressure, days_since, stage), weekday, consent)


def action_mask(
    rules: ContactRuleArrays,
    consent: BoolArray,
    pressure: IntArray,
    days_since: IntArray,
    weekday: IntArray,
    stage: IntArray | None = None,
) -> BoolArray:
    """(N, A) True where the action is allowed now; column 0 ("no action") is always True."""
    return check_rules(rules, consent, pressure, days_since, weekday, stage).allowed


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
