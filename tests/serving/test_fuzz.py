"""Property tests: malformed requests only ever raise our error; valid ones are always legal."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nba.scenarios import load_scenario
from nba.serving.schema import REQUIRED
from nba.serving.scorer import PolicyScorer, ScoringInputError
from nba.types import WEEKDAYS
from tests.serving import fuzz_oracle
from tests.serving.conftest import population

SCENARIO = load_scenario("retail")
AS_OF = pd.Timestamp("2026-11-25T10:00:00Z")
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 100),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["deal_seeker", "active", "2026-11-30T00:00:00Z", "", "nan"]),
    st.lists(st.integers(), max_size=2),
)
FIELDS = [  # every field a request may carry: the required ones, then the optional ones
    *REQUIRED,
    "days_since_direct",
    "days_since_messaging",
    "day",
    "consent_sms",
    "last_contact_email",
    "last_contact_sms",
    "last_contact_direct_mail",
    "last_contact_call_centre",
    "as_of",
]


def valid_row(draw: st.DrawFn) -> dict[str, object]:
    return {
        "customer_id": draw(st.text(min_size=1, max_size=6)),
        "persona": draw(st.sampled_from(SCENARIO.persona_names)),
        "stage": draw(st.sampled_from(SCENARIO.stage_names)),
        "pressure": draw(st.integers(0, SCENARIO.contact_rules.pressure_capacity)),
        "discount_habit": draw(st.booleans()),
        "opted_out": draw(st.booleans()),
        "days_since_direct": draw(st.integers(1, 30)),
        "days_since_messaging": draw(st.integers(1, 30)),
    }


@st.composite
def malformed(draw: st.DrawFn) -> dict[str, object]:
    row = valid_row(draw)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()) and field in row:
            del row[field]
        else:
            row[field] = draw(JUNK)
    return row


@pytest.fixture(scope="module")
def scorer(export_dir: Path) -> PolicyScorer:
    return PolicyScorer.load(export_dir)


# 2,000 rows of 1-3 mutations over 15 fields (delete, or one of 7 kinds of junk) hit every
# (field, mutation) pair dozens of times; the oracle and exotic tests below fuzz further
@settings(max_examples=2_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=malformed())
def test_malformed_input_gives_only_our_error(scorer: PolicyScorer, row: dict) -> None:
    """2,000 mutated requests: either a legal decision or ScoringInputError, nothing else."""
    try:
        single: int | str = scorer.score(row, as_of=AS_OF).action
    except ScoringInputError as exc:
        single = str(exc)
    try:
        batch: int | str = int(scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF)["action"][0])
    except ScoringInputError as exc:
        batch = str(exc)
    assert single == batch  # both paths accept and refuse the same requests, in the same words


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_valid_states_never_get_a_disallowed_action(scorer: PolicyScorer, seed: int) -> None:
    """20 x 5,000 = 100,000 random valid customers, checked field by field, not by our rules."""
    rng = np.random.default_rng(seed)
    frame = population(5_000, seed=seed, consent=True)
    as_of = AS_OF + pd.Timedelta(days=int(rng.integers(0, 7)))
    decisions = scorer.score_batch(frame, as_of=as_of)
    contacted = decisions["action"].to_numpy() > 0
    channel = decisions["channel"].astype(object).to_numpy()
    by_name = {c.name: c for c in SCENARIO.channels}
    weekday = WEEKDAYS[as_of.day_of_week]
    for i in np.flatnonzero(contacted):
        name = channel[i]
        spec = by_name[name]
        assert frame.at[i, f"consent_{name}"] or not spec.requires_consent
        assert not (frame.at[i, "opted_out"] and spec.requires_consent)
        assert frame.at[i, "pressure"] + spec.pressure <= SCENARIO.contact_rules.pressure_capacity
        for cap in SCENARIO.contact_rules.caps:
            if name in cap.channels:
                assert frame.at[i, f"days_since_{cap.name}"] >= cap.window_days
        assert weekday not in SCENARIO.contact_rules.quiet_days.get(name, [])


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_single_and_batch_paths_agree(scorer: PolicyScorer, data: st.DataObject) -> None:
    row = data.draw(st.composite(valid_row)())
    # the single path reads precomputed tables for default consent, and computes otherwise
    for channel in SCENARIO.channel_names:
        if data.draw(st.booleans()):
            row[f"consent_{channel}"] = data.draw(st.booleans())
    row["day"] = data.draw(st.sampled_from([0, 1, SCENARIO.horizon_days - 1]))
    one = scorer.score(row, as_of=AS_OF)
    batch = scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF).iloc[0]
    assert one.action == batch["action"]
    ranked = [batch[f"rank_{k}_action"] for k in (1, 2, 3) if pd.notna(batch[f"rank_{k}_action"])]
    assert [a["action"] for a in one.alternatives[:3]] == ranked
    # float32 networks: batch size changes BLAS blocking, so compare to float32 precision
    assert one.value_estimate == pytest.approx(batch["value_estimate"], rel=1e-5, abs=1e-6)
    assert one.alternatives[0]["probability"] == pytest.approx(
        batch["rank_1_probability"], rel=1e-5, abs=1e-6
    )
    assert (one.suppressed or {}).get("reason") == (
        None if pd.isna(batch["suppressed_reason"]) else batch["suppressed_reason"]
    )


class _Opaque:
    """An object whose repr and comparisons fail."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparison")

    __hash__ = object.__hash__


EXOTIC = st.one_of(
    JUNK,
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from(
        [
            pd.NaT,
            pd.NA,
            np.nan,
            np.float32(2.0),
            np.int8(3),
            np.uint64(2**64 - 1),
            np.bool_(True),
            np.str_("deal_seeker"),
            np.datetime64("2026-11-20"),
            np.datetime64("NaT"),
            np.timedelta64(1, "D"),
            timedelta(days=1),
            date(2026, 11, 20),
            Decimal("3"),
            3 + 0j,
            b"active",
            bytearray(b"x"),
            frozenset({1}),
            (1, 2),
            {"a": 1},
            np.array([1, 2]),
            "x" * 500,
            "\x00",
            _Opaque(),
            pd.Timestamp("2026-11-20T10:00", tz="Asia/Kolkata"),
            "2026-11-29T19:00:00-05:00",
        ]
    ),
)
LABELS = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(["Consent_email", "consentEmail", "opted_out.1", "as_of ", "DAY", ""]),
    st.integers(-3, 3),
    st.none(),
    st.tuples(st.text(max_size=3)),
    st.binary(max_size=3),
    st.text(max_size=12),
)


@settings(max_examples=1_500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_exotic_values_and_labels_give_only_our_error_in_the_same_words(
    scorer: PolicyScorer, data: st.DataObject
) -> None:
    """Odd objects, huge integers, numpy scalars, NaT, non-text field names: the dict and
    DataFrame paths accept or refuse alike, refuse only with our error and the same message."""
    row: dict[object, object] = dict(valid_row(data.draw))
    for _ in range(data.draw(st.integers(1, 3))):
        label = data.draw(LABELS)
        row[label] = data.draw(EXOTIC)
    outcomes = []
    for decide in (
        lambda: scorer.score(row, as_of=AS_OF).action,
        lambda: int(scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF)["action"][0]),
    ):
        try:
            outcomes.append(decide())
        except ScoringInputError as exc:
            assert len(str(exc)) < 1_000  # long values are cut
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(
    "columns",
    [
        pd.MultiIndex.from_tuples([(c, "") for c in [*REQUIRED, "days_since_direct", "x"]]),
        pd.Index([*REQUIRED, "days_since_direct", "persona"]),
        pd.Index([*REQUIRED, "days_since_direct", 0]),
        pd.Index([*REQUIRED, "days_since_direct", None]),
    ],
)
def test_odd_column_labels_give_only_our_error(scorer: PolicyScorer, columns: pd.Index) -> None:
    frame = population(4).iloc[:, : len(columns)]
    frame = frame.set_axis(columns, axis=1)
    with pytest.raises(ScoringInputError, match="input: "):
        scorer.score_batch(frame, as_of=AS_OF)


def test_the_oracle_finds_every_request_honoured_or_refused(scorer: PolicyScorer) -> None:
    """1,200 fuzzed requests per path, judged from the raw request by independent rule code."""
    tallies = fuzz_oracle.run(SCENARIO, fuzz_oracle.paths(scorer), 1_200, seed=11)
    for name, tally in tallies.items():
        assert tally.accepted > 300 and tally.refused > 300, name
        assert not tally.silently_not_honoured, (name, tally.examples)
        assert not tally.foreign_exceptions, (name, tally.examples)
        assert not tally.refused_valid, (name, tally.examples)


def test_the_oracle_catches_a_path_that_ignores_what_it_is_told() -> None:
    """The oracle is not vacuous: SMS to everyone unless it is Sunday in UTC breaks each rule."""

    def careless(case: fuzz_oracle.Case) -> list[str | None]:
        if case.refuse or case.batch_only:
            raise ScoringInputError("refused")
        moment = case.rows[0].get("as_of", case.as_of)
        sunday_in_utc = fuzz_oracle.as_utc(moment).weekday() == 6
        return [None if sunday_in_utc else "sms" for _ in case.rows]

    tally = fuzz_oracle.run(SCENARIO, {"careless": careless}, 1_500, seed=12)["careless"]
    for rule in ("consent", "quiet_day", "cap", "pressure"):
        assert tally.silently_not_honoured[rule] > 0, rule
