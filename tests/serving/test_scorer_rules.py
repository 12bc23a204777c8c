"""Serving reports the contact rules' own reasons: a rule kind retail lacks and a toy rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nba import contact_rules
from nba.contact_rules import ContactRule, ContactRuleArrays
from nba.scenario import Scenario
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import load_exported
from tests.serving.conftest import customer, frame
from tests.serving.conftest import population as random_customers

MONDAY = pd.Timestamp("2026-11-23T10:00:00Z")


def _scorer_for(export_dir: Path, scenario: Scenario) -> PolicyScorer:
    """The exported network served under ``scenario`` (same catalogues, other rules)."""
    policy = load_exported(export_dir)
    return PolicyScorer(dataclasses.replace(policy, scenario=scenario), "v-rules")


def _favourite(scorer: PolicyScorer, row: dict[str, Any]) -> str:
    """The policy's own top choice for ``row``, whatever the rules say."""
    decision = scorer.score(row, as_of=MONDAY)
    return decision.suppressed["action"] if decision.suppressed else decision.action_name


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_exclusion_is_enforced_and_named_on_every_path(export_dir: Path) -> None:
    retail_scorer = PolicyScorer.load(export_dir)
    retail = retail_scorer.policy.scenario
    row = customer(stage="lapsed", persona="deal_seeker")
    favourite = _favourite(retail_scorer, row)
    assert favourite != "no_action"
    action = retail.actions[retail.action_names.index(favourite) - 1]
    data = retail.to_dict()
    data["contact_rules"]["exclusions"] = [
        {
            "name": "toy",
            "stages": ["lapsed"],
            "offers": [action.offer],
            "channels": [action.channel],
        }
    ]
    scorer = _scorer_for(export_dir, Scenario.from_dict(data))
    expected = f"exclusion: ['toy'] rule out {favourite} for customers in ['lapsed']"

    single = scorer.score(row, as_of=MONDAY)  # the day table's row
    assert single.action_name != favourite
    assert single.suppressed == {"action": favourite, "reason": expected}
    consent = {f"consent_{c}": True for c in retail.channel_names}  # a consent of its own
    own = scorer.score({**row, **consent}, as_of=MONDAY)
    assert own.suppressed == {"action": favourite, "reason": expected}
    own_row = {**row, **consent, "customer_id": "c-2"}
    batch = pd.concat([scorer.score_batch(frame(r), as_of=MONDAY) for r in (row, own_row)])
    assert (batch["suppressed_reason"] == expected).all()
    assert (batch["action_name"] == single.action_name).all()
    # another stage is not excluded
    active = scorer.score({**row, "stage": "active"}, as_of=MONDAY)
    assert not (active.suppressed or {}).get("reason", "").startswith("exclusion")

    population = random_customers(2_000, seed=3)
    decisions = scorer.score_batch(population, as_of=MONDAY)
    lapsed = (population["stage"] == "lapsed").to_numpy()
    assert lapsed.any() and not decisions.loc[lapsed, "action_name"].eq(favourite).any()


def _no_push(rules: ContactRuleArrays, inputs: contact_rules.RuleInputs) -> np.ndarray:
    push = 2  # retail's third channel
    return np.broadcast_to(rules.action_channel != push, (inputs.n, rules.n_actions))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_new_rule_is_one_declaration_and_reports_its_own_name(
    export_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toy = ContactRule(
        "no_push",
        ("weekday",),
        _no_push,
        lambda scenario, rules, a: f"no_push: {scenario.action_names[a]} goes out by push",
    )
    monkeypatch.setattr(contact_rules, "RULES", (*contact_rules.RULES, toy))
    scorer = _scorer_for(export_dir, PolicyScorer.load(export_dir).policy.scenario)
    assert scorer.policy.scenario.channel_names[2] == "push"
    assert [r.name for r in scorer.arrays.rules.rules][-1] == "no_push"

    population = random_customers(3_000, seed=4)
    decisions = scorer.score_batch(population, as_of=MONDAY)
    assert not decisions["channel"].eq("push").any()
    reasons = decisions["suppressed_reason"].dropna().astype(str)
    by_push = decisions.loc[reasons.index, "suppressed_action"].astype(str).str.startswith("push")
    assert by_push.any()  # the untrained network likes push for some customers
    pushed = reasons[by_push.to_numpy()]
    # the toy rule comes last in precedence: named where no earlier rule blocks
    assert pushed.str.startswith("no_push: ").any()
    assert not reasons.str.startswith("quiet_day: push").any()
    for _, row in population.head(300).iterrows():
        single = scorer.score(row.dropna().to_dict(), as_of=MONDAY)
        if single.suppressed and single.suppressed["action"].startswith("push"):
            assert single.suppressed["reason"].split(":")[0] in {
                "consent",
                "cap",
                "global_cap",
                "no_push",
            }
