from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import strategies as st

from nba.serving.scorer import PolicyScorer, ScoringInputError
from tests.serving.conftest import customer, frame, population

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
        ({"opted_out": 0.5}, None, r"row 0, opted_out: expected true or false, got 0.5"),
        ({"consent_sms": 2}, None, r"row 0, consent_sms: expected true or false, got 2"),
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


@pytest.mark.parametrize(
    "spelling", [(True, False), (1, 0), (1.0, 0.0), (np.int8(1), np.float32(0))]
)
def test_flags_and_consents_read_the_same_however_a_boolean_is_spelled(
    scorer: PolicyScorer, spelling: tuple
) -> None:
    """The JSON Schema admits 0 and 1 (and 1.0, a JSON integer) for a boolean: they mean what
    true and false mean, on both paths."""
    yes, no = spelling
    rows = [
        customer(customer_id="a", opted_out=no, consent_sms=yes, discount_habit=yes),
        customer(customer_id="b", opted_out=no, consent_sms=no, discount_habit=no),
    ]
    plain = [
        customer(customer_id="a", opted_out=False, consent_sms=True, discount_habit=True),
        customer(customer_id="b", opted_out=False, consent_sms=False, discount_habit=False),
    ]
    got = scorer.schema.parse(frame(*rows), as_of=AS_OF.to_pydatetime())
    want = scorer.schema.parse(frame(*plain), as_of=AS_OF.to_pydatetime())
    np.testing.assert_array_equal(got.consent, want.consent)
    np.testing.assert_array_equal(got.state.opted_out, want.state.opted_out)
    np.testing.assert_array_equal(got.state.habit, want.state.habit)
    assert scorer.score(rows[0], as_of=AS_OF) == scorer.score(plain[0], as_of=AS_OF)
    schema = scorer.schema.json_schema()["properties"]
    assert schema["consent_sms"]["type"] == schema["opted_out"]["type"] == ["boolean", "integer"]


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
    del row["days_since_direct"], row["days_since_messaging"]
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


def both_paths_refuse(scorer: PolicyScorer, row: dict, message: str, as_of: object = AS_OF) -> str:
    """The dict and DataFrame paths refuse ``row`` with one and the same message."""
    with pytest.raises(ScoringInputError, match=message) as batch:
        scorer.score_batch(frame(row), as_of=as_of)
    with pytest.raises(ScoringInputError, match=message) as single:
        scorer.score(row, as_of=as_of)
    assert str(single.value) == str(batch.value)
    return str(batch.value)


STAMPS = {
    "last_contact_email": "2026-11-22T09:00:00Z",
    "last_contact_sms": None,
    "last_contact_direct_mail": "2026-11-10T09:00:00-05:00",
    "last_contact_call_centre": None,
}


# ------------------------------------------------------------------ quiet days in local time
@pytest.mark.parametrize(
    ("as_of", "weekday"),
    [
        ("2026-11-29T19:00:00-05:00", 6),  # Sunday evening in New York, Monday 00:00 UTC
        ("2026-11-30T00:00:00Z", 0),
        ("2026-11-30T00:00:00", 0),  # naive: UTC
        ("2026-11-30T08:30:00+09:00", 0),  # Monday morning in Tokyo, Sunday 23:30 UTC
        ("2026-11-29T23:30:00.123456789+00:00", 6),
        (pd.Timestamp("2026-11-29T19:00:00", tz="America/New_York"), 6),
        (datetime(2026, 11, 29, 19, tzinfo=timezone(timedelta(hours=-5))), 6),
        (datetime(2026, 11, 30, 0, 30), 0),  # naive datetime: UTC
    ],
)
def test_the_weekday_is_the_decision_times_own(
    scorer: PolicyScorer, as_of: object, weekday: int
) -> None:
    """A row's ``as_of`` and the call's ``as_of`` both count in their own offset."""
    row = customer(as_of=as_of)
    one = scorer.schema.parse_one(row)
    assert one is not None and one.weekday == weekday
    assert scorer.schema.parse(frame(row)).weekday.tolist() == [weekday]
    del row["as_of"]
    one = scorer.schema.parse_one(row, as_of=as_of)
    assert one is not None and one.weekday == weekday
    assert scorer.schema.parse(frame(row), as_of=as_of).weekday.tolist() == [weekday]


def test_a_sunday_evening_in_new_york_gets_no_sms(scorer: PolicyScorer) -> None:
    """SMS is quiet on Sundays: the customer's Sunday, although it is Monday in UTC."""
    sunday = "2026-11-29T19:00:00-05:00"
    rows = population(300, seed=4, consent=True).assign(as_of=sunday)
    decisions = scorer.score_batch(rows)
    assert not (decisions["channel"] == "sms").any()
    assert decisions["suppressed_reason"].astype(str).str.startswith("quiet_day: sms").any()
    singles = [scorer.score(row) for row in rows.to_dict(orient="records")]
    assert [d.action for d in singles] == decisions["action"].tolist()
    same_instant_in_utc = scorer.score_batch(rows.assign(as_of="2026-11-30T00:00:00Z"))  # Monday
    assert not same_instant_in_utc["suppressed_reason"].astype(str).str.startswith("quiet").any()


def test_a_batch_reads_every_row_in_its_own_offset(scorer: PolicyScorer) -> None:
    stamps = ["2026-11-29T19:00:00-05:00", "2026-11-30T01:00:00+01:00", "2026-11-30T00:00:00Z"]
    rows = [customer(customer_id=f"c{i}", as_of=s) for i, s in enumerate(stamps)]
    parsed = scorer.schema.parse(frame(*rows))
    assert parsed.weekday.tolist() == [6, 0, 0]
    assert parsed.as_of.nunique() == 1  # one instant: days still count in UTC
    zoned = frame(rows[0]).assign(as_of=pd.Timestamp("2026-11-29T19:00", tz="America/New_York"))
    assert zoned["as_of"].dtype != object  # a tz-aware column keeps its zone
    assert scorer.schema.parse(zoned).weekday.tolist() == [6]


def test_json_schema_states_the_offset_rule_and_refuses_other_fields(scorer: PolicyScorer) -> None:
    schema = scorer.input_schema()
    assert "own offset" in schema["properties"]["as_of"]["description"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(scorer.schema.fields)
    stamps = schema["dependentRequired"]["last_contact_sms"]
    assert set(stamps) == set(STAMPS)


# ------------------------------------------------------------------ contact history
@pytest.mark.parametrize("with_counts", [False, True])
def test_part_of_the_timestamps_is_refused_naming_the_missing(
    scorer: PolicyScorer, with_counts: bool
) -> None:
    """An e-mail an hour ago with the SMS timestamp left out must not pass as 'no contact'."""
    row = customer(**STAMPS)
    del row["last_contact_sms"], row["last_contact_call_centre"]
    if not with_counts:
        del row["days_since_direct"], row["days_since_messaging"]
    both_paths_refuse(
        scorer,
        row,
        r"last_contact_\* fields incomplete, missing "
        r"\['last_contact_call_centre', 'last_contact_sms'\]",
    )


def test_part_of_the_counts_is_refused_even_next_to_timestamps(scorer: PolicyScorer) -> None:
    row = customer(**STAMPS)
    del row["days_since_messaging"]
    both_paths_refuse(
        scorer, row, r"days_since_\* fields incomplete, missing \['days_since_messaging'\]"
    )


def test_with_both_forms_complete_the_timestamps_decide(scorer: PolicyScorer) -> None:
    stamped = customer(**STAMPS)  # also days_since_direct 7, days_since_messaging 2
    stamped["last_contact_email"] = "2026-11-23T11:00:00Z"  # an hour ago: messaging cap closed
    one = scorer.schema.parse_one(stamped, as_of=AS_OF)
    assert one is not None and one.days_since == (7, 1)
    np.testing.assert_array_equal(
        scorer.schema.parse(frame(stamped), as_of=AS_OF).state.days_since, [[7, 1]]
    )
    stamped["days_since_direct"] = 0  # the counts are still checked
    both_paths_refuse(scorer, stamped, "row 0, days_since_direct: 0 is out of range")


# ------------------------------------------------------------------ unknown fields
@pytest.mark.parametrize(
    ("field", "suggestion"),
    [
        ("Consent_email", "consent_email"),
        ("consentEmail", "consent_email"),
        ("opted_out.1", "opted_out"),
        ("persona ", "persona"),
        ("custmer_id", "customer_id"),
        ("lastContactSms", "last_contact_sms"),
    ],
)
def test_unknown_fields_are_refused_with_the_closest_names(
    scorer: PolicyScorer, field: str, suggestion: str
) -> None:
    row = customer(**{field: False})
    message = both_paths_refuse(scorer, row, f"input: unknown field '{re.escape(field)}'")
    assert f"did you mean '{suggestion}'" in message


def test_odd_column_labels_are_refused(scorer: PolicyScorer) -> None:
    rows = population(3)
    duplicated = pd.concat([rows, rows[["opted_out"]].assign(opted_out=True)], axis=1)
    with pytest.raises(ScoringInputError, match="field 'opted_out' appears 2 times"):
        scorer.score_batch(duplicated, as_of=AS_OF)
    with pytest.raises(ScoringInputError, match="one field name per column"):
        scorer.score_batch(rows.set_axis(pd.MultiIndex.from_product([rows.columns, ["x"]]), axis=1))
    for label in (0, 1.5, None, ("a", "b"), b"persona"):
        with pytest.raises(ScoringInputError, match="unknown field"):
            scorer.score_batch(
                rows.assign(**{"customer_id": rows["customer_id"]}).set_axis(
                    [*rows.columns[:-1], label], axis=1
                ),
                as_of=AS_OF,
            )


# ------------------------------------------------------------------ customer ids
def test_a_customer_given_twice_in_a_batch_is_refused(scorer: PolicyScorer) -> None:
    rows = population(5)
    rows.loc[3, "customer_id"] = "c1"
    with pytest.raises(ScoringInputError, match=r"row 3, customer_id: 'c1' repeats row 1"):
        scorer.score_batch(rows, as_of=AS_OF)
    mixed = population(3).assign(customer_id=[7, "7", 8])  # print alike in decisions and logs
    with pytest.raises(ScoringInputError, match=r"row 1, customer_id: '7' repeats row 0"):
        scorer.score_batch(mixed, as_of=AS_OF)


@pytest.mark.parametrize(
    "value", [1.5, 2.0, np.float64(3.0), True, np.bool_(False), b"c-1", ["c-1"], {"id": 1}]
)
def test_customer_ids_are_strings_or_integers(scorer: PolicyScorer, value: object) -> None:
    both_paths_refuse(
        scorer, customer(customer_id=value), "row 0, customer_id: expected a string or an integer"
    )


def test_integer_ids_stay_integers_and_empty_ones_are_refused(scorer: PolicyScorer) -> None:
    rows = population(3).assign(customer_id=[10, 2**40, 3])
    assert scorer.score_batch(rows, as_of=AS_OF)["customer_id"].tolist() == [10, 2**40, 3]
    assert scorer.score(customer(customer_id=np.int64(12)), as_of=AS_OF).customer_id == "12"
    for empty in ("", None, float("nan")):
        both_paths_refuse(
            scorer, customer(customer_id=empty), "row 0, customer_id: missing or empty"
        )


def test_long_values_are_cut_in_messages(scorer: PolicyScorer) -> None:
    message = both_paths_refuse(scorer, customer(persona="p" * 5000), "row 0, persona")
    assert len(message) < 300 and "ppp..." in message
    message = both_paths_refuse(scorer, customer(**{"x" * 5000: 1}), "unknown field")
    assert len(message) < 300


# ------------------------------------------------------------------ the JSON Schema's promise
# What JSON Schema cannot state, and the validator refuses: a contact after the decision time
# (a comparison of two fields), and an integer id written as a float (JSON Schema reads 7.0 as
# the integer 7; the validator refuses float ids, which hide NaN-holed id columns).
LATER_CONTACT = r"row 0, last_contact_\w+: .* is in the future"
FLOAT_ID = "row 0, customer_id: expected a string or an integer"


def _calendar_text(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T12:00:00Z"


def test_the_timestamp_pattern_holds_exactly_the_days_of_1678_to_2261() -> None:
    """Every real calendar day from 1678 to 2261 and nothing else: no 30 February, 29 February
    of leap years only (2000 and 2260, not 1700, 1800, 1900, 2100 or 2200)."""
    from nba.serving.schema import TIMESTAMP_PATTERN

    pattern = re.compile(TIMESTAMP_PATTERN)
    for year in range(1670, 2271):
        for month in range(1, 13):
            for day in range(1, 32):
                try:
                    real = 1678 <= datetime(year, month, day).year <= 2261
                except ValueError:
                    real = False
                text = _calendar_text(year, month, day)
                assert bool(pattern.fullmatch(text)) is real, text


@pytest.mark.parametrize(
    ("text", "admitted"),
    [
        ("2026-11-25T10:00:00Z", True),
        ("2026-11-25T10:00:00.123456789+23:59", True),
        ("2026-11-25T23:59:59.5-00:00", True),
        ("2026-11-25T10:00:00.1234567891Z", False),  # ten decimals
        ("2026-11-25T24:00:00Z", False),
        ("2026-11-25T10:60:00Z", False),
        ("2026-11-25T10:00:60Z", False),  # a leap second: RFC 3339 has it, pandas does not
        ("2026-11-25T10:00:00+24:00", False),
        ("2026-11-25T10:00:00+05:60", False),
        ("2026-11-25t10:00:00z", False),  # lower case: RFC 3339 has it, pandas does not
        ("2026-11-25T10:00Z", False),
        ("2026-11-25T10:00:00", False),  # naive: read as UTC, but not RFC 3339
        ("2026-11-25", False),
    ],
)
def test_the_timestamp_pattern_is_rfc_3339_as_pandas_reads_it(text: str, admitted: bool) -> None:
    from nba.serving.schema import TIMESTAMP_PATTERN

    assert bool(re.fullmatch(TIMESTAMP_PATTERN, text)) is admitted


@pytest.mark.parametrize(
    ("last", "as_of", "days"),
    [
        # messaging's window is 2 days: centuries ago reads as 2, a contact just now as 1
        ("1678-01-01T00:00:00.000000001+23:59", "2261-12-31T23:59:59.999999999-23:59", 2),
        ("1678-01-01T00:00:00Z", "2261-12-31T23:59:59.999999999Z", 2),
        ("1680-02-29T00:00:00Z", "2260-02-29T00:00:00Z", 2),
        ("2261-12-31T23:59:59.999999999-23:59", "2261-12-31T23:59:59.999999999-23:59", 1),
    ],
)
def test_timestamps_at_the_ends_of_the_range_are_read_alike(
    scorer: PolicyScorer, last: str, as_of: str, days: int
) -> None:
    """Centuries apart in nanoseconds (more than int64 holds as one difference): both paths
    count the same days; the single path reads these without pandas."""
    row = customer(**{**STAMPS, "last_contact_email": last}, as_of=as_of)
    one = scorer.schema.parse_one(row)
    assert one is not None and one.days_since == (7, days)
    batch = scorer.schema.parse(frame(row, customer(**STAMPS, customer_id="c-2", as_of=as_of)))
    np.testing.assert_array_equal(batch.state.days_since[0], one.days_since)


@pytest.mark.parametrize(
    "value",
    [2**63 - 1, -(2**63), np.uint64(2**64 - 1), 2**63, 10**5000],
    ids=["int64 max", "int64 min", "uint64 max", "2**63", "10**5000"],
)
def test_integer_ids_are_64_bit(scorer: PolicyScorer, value: object) -> None:
    row = customer(customer_id=value)
    if -(2**63) <= int(value) < 2**63:  # type: ignore[call-overload]
        assert scorer.schema.parse_one(row, as_of=AS_OF) is not None
        assert scorer.schema.parse(frame(row), as_of=AS_OF).customer_id.tolist() == [value]
    else:
        message = both_paths_refuse(scorer, row, r"row 0, customer_id: .* is out of range")
        assert len(message) < 300
    bounds = scorer.input_schema()["properties"]["customer_id"]
    assert (bounds["minimum"], bounds["maximum"]) == (-(2**63), 2**63 - 1)


def test_counts_are_bounded_in_the_schema_as_in_the_validator(scorer: PolicyScorer) -> None:
    top = scorer.input_schema()["properties"]["days_since_direct"]["maximum"]
    assert scorer.schema.parse_one(customer(days_since_direct=top), as_of=AS_OF) is not None
    both_paths_refuse(scorer, customer(days_since_direct=top + 1), "is out of range")


def _drawn_customers(scorer: PolicyScorer) -> Any:
    """Customers drawn from the published JSON Schema by schemathesis's generator (the one the
    HTTP contract test uses), each checked against the schema by an independent validator."""
    import jsonschema
    import schemathesis

    schema = scorer.input_schema()
    document = {
        "openapi": "3.1.0",
        "info": {"title": "nba", "version": "1"},
        "paths": {
            "/decide": {
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {k: v for k, v in schema.items() if k != "$schema"}
                            }
                        },
                    },
                    "responses": {"200": {"description": "OK"}},
                }
            }
        },
    }
    (operation,) = [op.ok() for op in schemathesis.openapi.from_dict(document).get_all_operations()]
    checker = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )

    def checked(case: Any) -> dict[str, Any]:
        checker.validate(case.body)  # the generator keeps to the schema, or this proves nothing
        return case.body

    return operation.as_strategy(schemathesis.GenerationMode.POSITIVE).map(checked)


def _refusal(row: dict[str, Any], as_of: pd.Timestamp) -> str | None:
    """What the validator refuses in a schema-valid customer (see LATER_CONTACT), or None."""
    if isinstance(row["customer_id"], float):
        return FLOAT_ID
    decision = pd.Timestamp(row["as_of"]) if "as_of" in row else as_of
    for name, value in row.items():
        if name.startswith("last_contact_") and value is not None:
            if pd.Timestamp(value) > decision:
                return LATER_CONTACT
    return None


def _same_reading(one: Any, batch: Any, i: int) -> None:
    """Row ``i`` of a parsed batch reads as the one customer ``one`` (both ParsedRequest)."""
    assert str(batch.customer_id[i]) == str(one.customer_id[0])
    for name in ("persona", "stage", "pressure", "habit", "opted_out", "days_since"):
        np.testing.assert_array_equal(getattr(batch.state, name)[i], getattr(one.state, name)[0])
    np.testing.assert_array_equal(batch.consent[i], one.consent[0])
    assert (batch.day[i], batch.weekday[i]) == (one.day[0], one.weekday[0])
    when = batch.as_of.iloc[i] if isinstance(batch.as_of, pd.Series) else batch.as_of
    mine = one.as_of.iloc[0] if isinstance(one.as_of, pd.Series) else one.as_of
    assert when == mine


CALL_AS_OF = st.from_regex(  # the call's decision time, for rows without their own
    r"(?:1[7-9][0-9]{2}|2[01][0-9]{2})-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])T"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-]0[0-9]:[0-5][0-9])",
    fullmatch=True,
).map(pd.Timestamp)


def test_every_customer_the_json_schema_admits_is_accepted_by_both_paths(
    scorer: PolicyScorer,
) -> None:
    """The schema is no looser than the validator: each customer drawn from it is read by the
    single-customer and the DataFrame paths alike, or refused by both with the same message
    for the one rule JSON Schema cannot state (or a float id, see LATER_CONTACT)."""
    from hypothesis import HealthCheck, given, settings

    rows = _drawn_customers(scorer)

    @given(row=rows, as_of=CALL_AS_OF)
    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(row: dict[str, Any], as_of: pd.Timestamp) -> None:
        refusal = _refusal(row, as_of)
        if refusal is not None:
            both_paths_refuse(scorer, row, refusal, as_of=as_of)
            return
        one = scorer.schema.parse_mapping(row, as_of=as_of)
        _same_reading(one, scorer.schema.parse(frame(row), as_of=as_of), 0)

    check()


def test_every_batch_of_schema_valid_customers_is_read_row_by_row(scorer: PolicyScorer) -> None:
    """A batch of drawn customers (one set of fields, each id once, as the batch schema asks)
    reads each row as that customer alone: no row's timestamps change how another's are read."""
    from hypothesis import HealthCheck, given, settings

    rows = _drawn_customers(scorer)

    @given(first=rows, others=st.lists(rows, max_size=6), as_of=CALL_AS_OF)
    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def check(first: dict[str, Any], others: list[dict[str, Any]], as_of: pd.Timestamp) -> None:
        batch, ids = [], set()
        for row in [first, *others]:
            if row.keys() == first.keys() and str(row["customer_id"]) not in ids:
                if _refusal(row, as_of) is None:
                    batch.append(row)
                    ids.add(str(row["customer_id"]))
        if not batch:
            return
        parsed = scorer.schema.parse(frame(*batch), as_of=as_of)
        for i, row in enumerate(batch):
            _same_reading(scorer.schema.parse_mapping(row, as_of=as_of), parsed, i)

    check()
