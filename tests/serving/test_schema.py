from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.serving.scorer import PolicyScorer, ScoringInputError
from tests.serving.conftest import customer, frame

AS_OF = pd.Timestamp("2026-11-23T12:00:00Z")


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    return PolicyScorer.load(export_dir)


@pytest.mark.parametrize(
    ("overrides", "drop", "message"),
    [
        ({}, "persona", r"missing field\(s\) \['persona'\]"),
        ({"persona": "pirate"}, None, r"row 0, persona: unknown value 'pirate'"),
        ({"stage": "bored"}, None, r"row 0, stage: unknown value 'bored'"),
        ({"pressure": -1}, None, r"row 0, pressure: -1 is negative"),
        ({"pressure": 99}, None, r"row 0, pressure: 99 is out of range"),
        ({"pressure": float("nan")}, None, r"row 0, pressure: .*missing"),
        ({"pressure": float("inf")}, None, r"row 0, pressure: .*NaN or infinite"),
        ({"pressure": "three"}, None, r"row 0, pressure: .*not a number"),
        ({"pressure": 1.5}, None, r"row 0, pressure: .*fractional"),
        ({"pressure": True}, None, r"row 0, pressure: expected a whole number"),
        ({"opted_out": "yes"}, None, r"row 0, opted_out: expected true or false"),
        ({"days_since_direct": 0}, None, r"row 0, days_since_direct: 0 is out of range"),
        ({"customer_id": ""}, None, r"row 0, customer_id: missing or empty"),
        ({"consent_sms": "maybe"}, None, r"row 0, consent_sms: expected true or false"),
        ({"day": 400}, None, r"row 0, day: 400 is out of range"),
        ({"consent_fax": True}, None, r"unknown field 'consent_fax'"),
        ({"days_since_weekly": 3}, None, r"unknown field 'days_since_weekly'"),
    ],
)
def test_each_problem_names_row_field_and_problem(
    scorer: PolicyScorer, overrides: dict, drop: str | None, message: str
) -> None:
    row = customer(**overrides)
    if drop:
        row.pop(drop)
    with pytest.raises(ScoringInputError, match=message):
        scorer.score_batch(frame(row), as_of=AS_OF)
    with pytest.raises(ScoringInputError, match=message):  # the single-customer path agrees
        scorer.score(row, as_of=AS_OF)


def test_error_names_the_offending_row_in_a_batch(scorer: PolicyScorer) -> None:
    rows = [customer(customer_id=f"c{i}") for i in range(5)]
    rows[3]["stage"] = "nope"
    with pytest.raises(ScoringInputError, match="row 3, stage"):
        scorer.score_batch(frame(*rows), as_of=AS_OF)


def test_timestamps_give_days_since_and_refuse_the_future(scorer: PolicyScorer) -> None:
    history = {
        "last_contact_email": "2026-11-22T09:00:00Z",  # yesterday -> messaging window open
        "last_contact_sms": None,
        "last_contact_direct_mail": "2026-11-10T09:00:00Z",
        "last_contact_call_centre": None,
    }
    row = customer(**history)
    del row["days_since_direct"], row["days_since_messaging"]
    parsed = scorer.schema.parse(frame(row), as_of=AS_OF.to_pydatetime())
    np.testing.assert_array_equal(parsed.state.days_since, [[7, 1]])
    assert parsed.weekday[0] == 0  # 2026-11-23 is a Monday
    row["last_contact_sms"] = "2026-11-24T09:00:00Z"
    with pytest.raises(ScoringInputError, match=r"row 0, last_contact_sms: .* is in the future"):
        scorer.score_batch(frame(row), as_of=AS_OF)
    row["last_contact_sms"] = "last tuesday"
    with pytest.raises(ScoringInputError, match=r"row 0, last_contact_sms: cannot parse"):
        scorer.score_batch(frame(row), as_of=AS_OF)


def test_history_is_required_in_one_form(scorer: PolicyScorer) -> None:
    row = customer()
    del row["days_since_direct"]
    with pytest.raises(ScoringInputError, match="contact history needs"):
        scorer.score_batch(frame(row), as_of=AS_OF)


def test_json_schema_documents_every_field(scorer: PolicyScorer) -> None:
    schema = scorer.input_schema()
    assert set(schema["required"]) == {
        "customer_id",
        "persona",
        "stage",
        "pressure",
        "discount_habit",
        "opted_out",
    }
    properties = schema["properties"]
    assert properties["persona"]["enum"] == scorer.policy.scenario.persona_names
    assert {"days_since_direct", "last_contact_call_centre", "consent_sms", "as_of"} <= set(
        properties
    )
    assert issubclass(ScoringInputError, ValueError)
