"""Why the policy's favourite was not chosen, as the text a decision reports.

The contact rules own their explanations (:func:`nba.contact_rules.explanations`, one sentence
per rule and action, in precedence order); serving only adds capacity, which is a batch's
allocation rather than a contact rule, and numbers the distinct sentences so that a batch's
``suppressed_reason`` column is one categorical over them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nba.contact_rules import ContactRuleArrays, RuleMasks, explanations
from nba.scenario import Scenario
from nba.types import IntArray


def capacity_reason(scenario: Scenario, rules: ContactRuleArrays, action: int) -> str:
    """The sentence for a favourite that went to higher-gain customers of a scarce channel."""
    channel = int(rules.action_channel[action])
    name = scenario.channel_names[channel] if channel >= 0 else "none"
    return f"capacity: {name} went to higher-gain customers ({scenario.action_names[action]})"


@dataclass(frozen=True)
class ReasonTable:
    """Reason sentences per (rule, action), then per action for capacity, numbered.

    ``names`` are the distinct sentences, sorted (a batch's categories); ``code`` maps
    ``rule * A + action`` (rule in :attr:`ContactRuleArrays.rules` order, capacity last) to
    an index into ``names``.
    """

    names: np.ndarray
    texts: list[str]  # ``names`` as plain strings (the single path's lookups)
    code: IntArray
    n_actions: int
    n_rules: int

    @classmethod
    def build(cls, scenario: Scenario, rules: ContactRuleArrays) -> ReasonTable:
        sentences = [text for per_rule in explanations(scenario, rules) for text in per_rule]
        sentences += [capacity_reason(scenario, rules, a) for a in range(rules.n_actions)]
        names, code = np.unique(np.asarray(sentences), return_inverse=True)
        return cls(
            names=names,
            texts=[str(text) for text in names],
            code=code,
            n_actions=rules.n_actions,
            n_rules=len(rules.rules),
        )

    def of_rule(self, rule: IntArray | int, action: IntArray | int) -> IntArray:
        """Code of the sentence for ``rule`` (a position in the rules) blocking ``action``."""
        codes: IntArray = self.code[np.asarray(rule) * self.n_actions + np.asarray(action)]
        return codes

    def of_capacity(self, action: IntArray | int) -> IntArray:
        """Code of the sentence for ``action`` displaced by channel capacity."""
        codes: IntArray = self.code[self.n_rules * self.n_actions + np.asarray(action)]
        return codes

    def blocking(self, masks: RuleMasks, rows: IntArray, actions: IntArray) -> IntArray:
        """Code of the first rule blocking each (row, action); rows nothing blocks: -1."""
        first = masks.blocked_by(rows, actions)
        return np.where(first >= 0, self.of_rule(np.maximum(first, 0), actions), -1)
