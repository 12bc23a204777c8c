"""Partitions decided apart with one global plan equal one batch of them all, row for row."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nba.holdout import Holdout
from nba.serving.capacity_plan import decide_partitions, global_plan, summarize_partition
from nba.serving.scorer import Exploration, PolicyScorer
from tests.serving.conftest import population

AS_OF = pd.Timestamp("2026-11-23T12:00:00Z")
# the untrained test policy's favourites, unlimited: push 675, paid social 495, direct mail 115
SCARCE = {"push": 200, "paid_social": 150, "direct_mail": 40}


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    few = population(600, seed=11)
    frame = pd.concat([few] * 5, ignore_index=True)  # every customer five times: ties abound
    frame["customer_id"] = [f"c{i}" for i in range(len(frame))]
    assert frame.drop(columns="customer_id").duplicated().sum() >= 2_400
    return frame


def _split(frame: pd.DataFrame, cuts: list[int]) -> list[pd.DataFrame]:
    edges = [0, *sorted(set(cuts)), len(frame)]
    return [frame.iloc[a:b] for a, b in itertools.pairwise(edges) if b > a]


def _same_as_one_batch(
    scorer: PolicyScorer, frame: pd.DataFrame, cuts: list[int], capacity: dict
) -> None:
    options = {"capacity": capacity, "as_of": AS_OF.to_pydatetime()}
    whole = scorer.score_batch(frame, **options)
    parts = pd.concat(decide_partitions(scorer, _split(frame, cuts), **options))
    assert_same_decisions(parts, whole)


def assert_same_decisions(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Every decision identical; network outputs (values, probabilities) equal to float32
    rounding: a matrix product rounds differently for different batch shapes, and each
    partition evaluates its own set of distinct customers."""
    floats = [c for c in want.columns if want[c].dtype.kind == "f"]
    pd.testing.assert_frame_equal(got.drop(columns=floats), want.drop(columns=floats))
    pd.testing.assert_frame_equal(got[floats], want[floats], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "capacity",
    [SCARCE, {"push": 50}, {}, {"push": 0, "email": 3000}],
    ids=["three-channels-lp", "one-channel", "scenario-default", "zero-and-ample"],
)
def test_greedy_partitions_equal_one_batch(
    export_dir: Path, base: pd.DataFrame, capacity: dict
) -> None:
    scorer = PolicyScorer.load(export_dir)
    _same_as_one_batch(scorer, base, [400, 1_100, 1_101, 2_500], capacity)
    decided = scorer.score_batch(base, capacity=capacity, as_of=AS_OF.to_pydatetime())
    for channel, limit in capacity.items():
        assert (decided["channel"] == channel).sum() <= limit


def test_the_limits_bind_and_partitions_alone_would_break_them(
    export_dir: Path, base: pd.DataFrame
) -> None:
    """The test above has teeth: unlimited, the base wants more of each scarce channel, and
    each partition allocating the whole limit for itself would overspend it."""
    scorer = PolicyScorer.load(export_dir)
    as_of = AS_OF.to_pydatetime()
    lifted = scorer.score_batch(base, capacity=dict.fromkeys(SCARCE), as_of=as_of)
    alone = pd.concat(
        [scorer.score_batch(part, capacity=SCARCE, as_of=as_of) for part in _split(base, [1_500])]
    )
    for channel, limit in SCARCE.items():
        assert (lifted["channel"] == channel).sum() > limit
        assert (alone["channel"] == channel).sum() > limit


def test_holdout_control_takes_capacity_first_across_partitions(
    export_dir: Path, base: pd.DataFrame
) -> None:
    scorer = PolicyScorer.load(export_dir, holdout=Holdout(0.3, "plan-test", "business_as_usual"))
    _same_as_one_batch(scorer, base, [1_000, 2_000], SCARCE)


def test_exploring_partitions_open_the_same_customers(export_dir: Path, base: pd.DataFrame) -> None:
    scorer = PolicyScorer.load(
        export_dir, exploration=Exploration(kind="epsilon", epsilon=0.2, seed=3)
    )
    _same_as_one_batch(scorer, base, [700, 2_900], {"push": 100, "direct_mail": 20})


@settings(max_examples=25, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 2_999), max_size=6),
    limits=st.tuples(st.integers(0, 700), st.integers(0, 500), st.integers(0, 120)),
)
def test_any_partitioning_gives_the_single_batch_decisions(
    export_dir: Path, base: pd.DataFrame, cuts: list[int], limits: tuple[int, int, int]
) -> None:
    scorer = PolicyScorer.load(export_dir)
    capacity = dict(zip(SCARCE, limits, strict=True))
    _same_as_one_batch(scorer, base, cuts, capacity)


def test_pass_one_keeps_few_rows_whatever_the_partition_size(
    export_dir: Path, base: pd.DataFrame
) -> None:
    scorer = PolicyScorer.load(export_dir)
    lifted = {"call_centre": None, **SCARCE}
    summary = summarize_partition(scorer, base, capacity=lifted, as_of=AS_OF.to_pydatetime())
    assert len(summary.ids) <= 3 * sum(SCARCE.values()) < len(base)
    names = scorer.policy.scenario.channel_names
    limits = {names.index(c): v for c, v in SCARCE.items()}
    plan = global_plan([summary], limits, exploring=False)
    channels = sorted(limits)
    assert (plan.assignment(summary.ids, channels) >= 0).sum() == sum(SCARCE.values())
    assert (plan.assignment(np.array(["not-a-candidate"]), channels) == -1).all()
