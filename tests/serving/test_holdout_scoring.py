"""The persistent holdout through the scorer: the same customers held out on every path, given
the control's decision, counted against capacity first, and logged as held out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nba.holdout import Holdout, control_actions
from nba.policy_head import Exploration
from nba.serving.decision_log import DecisionLog, read_decision_log
from nba.serving.scorer import PolicyScorer
from tests.serving.conftest import population

N = 3_000


def _scorer(export_dir: Path, holdout: Holdout | None, **options: object) -> PolicyScorer:
    return PolicyScorer.load(export_dir, holdout=holdout, trusted_scenario="retail", **options)


@pytest.mark.parametrize("control", ["no_action", "business_as_usual"])
def test_control_customers_get_the_control_on_every_path(export_dir: Path, control: str) -> None:
    holdout = Holdout(0.25, "winter", control)  # type: ignore[arg-type]
    scorer, plain = _scorer(export_dir, holdout), _scorer(export_dir, None)
    frame = population(N, seed=1)
    decided = scorer.score_batch(frame)
    member = holdout.assign(frame["customer_id"])
    assert (decided["holdout"].to_numpy() == member).all()
    assert 0.2 < member.mean() < 0.3
    request = scorer.schema.parse(frame)
    allowed = scorer.rule_masks(request).allowed
    rows = np.flatnonzero(member)
    expected = control_actions(
        scorer, control, request.state.take(rows), request.day[rows], allowed[rows]
    )
    assert (decided["action"].to_numpy()[rows] == expected).all()
    assert (decided["propensity"].to_numpy()[rows] == 1.0).all()
    treated = decided[~member]
    alone = plain.score_batch(frame[~member].reset_index(drop=True))
    assert (treated["action"].to_numpy() == alone["action"].to_numpy()).all()
    if control == "business_as_usual":
        assert (expected != 0).any()  # the journey map contacts someone today
    for index in list(rows[:20]) + list(np.flatnonzero(~member)[:20]):
        one = scorer.score(frame.iloc[index].to_dict())
        assert one.holdout == bool(member[index])
        assert one.action == int(decided["action"].iloc[index])


def test_membership_is_sticky_across_scorers_and_batches(export_dir: Path) -> None:
    frame = population(N, seed=2)
    first = _scorer(export_dir, Holdout(0.1, "q4"), model_version="nba-retail/1")
    again = _scorer(export_dir, Holdout(0.1, "q4"), model_version="nba-retail/2")
    whole = first.score_batch(frame)["holdout"].to_numpy()
    reversed_rows = again.score_batch(frame.iloc[::-1])["holdout"].to_numpy()[::-1]
    assert (whole == reversed_rows).all() and whole.any()
    other = _scorer(export_dir, Holdout(0.1, "q1")).score_batch(frame)["holdout"].to_numpy()
    assert not (other == whole).all()


def test_control_decisions_use_capacity_first(export_dir: Path) -> None:
    frame = population(N, seed=3)
    frame["stage"] = "lapsed"  # the journey map calls lapsed customers on its cadence
    bau = Holdout(0.3, "cap", "business_as_usual")
    scorer = _scorer(export_dir, bau)
    for limit in (0, 5, 10_000):
        decided = scorer.score_batch(frame, capacity={"call_centre": limit, "email": limit})
        for channel in ("call_centre", "email"):
            used = (decided["channel"] == channel).to_numpy()
            held = decided["holdout"].to_numpy()
            assert used.sum() <= limit or used[~held].sum() == 0


def test_exploring_scorer_never_explores_a_control_customer(
    export_dir: Path, tmp_path: Path
) -> None:
    holdout = Holdout(0.3, "explore")
    explorer = _scorer(
        export_dir, holdout, exploration=Exploration(kind="epsilon", epsilon=0.5, seed=4)
    )
    frame = population(N, seed=5)
    with DecisionLog(tmp_path / "log.db") as log:
        decided = explorer.score_batch(frame, log=log)
    held = decided["holdout"].to_numpy()
    assert not decided["explored"].to_numpy()[held].any()
    assert decided["explored"].to_numpy()[~held].any()
    assert (decided["action"].to_numpy()[held] == 0).all()
    records = read_decision_log(tmp_path / "log.db")
    assert (np.asarray(records.holdout) == held).all()
    assert (records.propensity[held] == 1.0).all()
