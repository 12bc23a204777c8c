"""Property tests: malformed requests only ever raise our error; valid ones are always legal."""

from __future__ import annotations

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


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=malformed())
def test_malformed_input_gives_only_our_error(scorer: PolicyScorer, row: dict) -> None:
    """10,000 mutated requests: either a legal decision or ScoringInputError, nothing else."""
    try:
        single: int | None = scorer.score(row, as_of=AS_OF).action
    except ScoringInputError:
        single = None
    try:
        batch: int | None = int(scorer.score_batch(pd.DataFrame([row]), as_of=AS_OF)["action"][0])
    except ScoringInputError:
        batch = None
    assert single == batch  # both paths accept and refuse the same requests, and agree


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
