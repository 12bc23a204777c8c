"""Evaluation of policies that act on beliefs: rollouts feed them beliefs, cohorts score them."""

from __future__ import annotations

import numpy as np
import pytest

from nba.belief_policies import QMDPPolicy
from nba.belief_values import BeliefValues
from nba.errors import NBAValidationError
from nba.evaluation import CohortScorer, rollout
from nba.features import FeatureBuilder
from nba.policies import NoActionPolicy, OptimalPolicy
from nba.twin import CustomerTwin
from nba.types import BoolArray, FloatArray, IntArray


class Recorder:
    """Sends nothing and keeps every observation it is shown."""

    def __init__(self, name: str, observation: str) -> None:
        self.name, self.observation = name, observation
        self.seen: list[FloatArray] = []

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        self.seen.append(obs.copy())
        actions = np.zeros(obs.shape[0], dtype=np.int64)
        return actions, np.eye(mask.shape[1])[actions]


@pytest.fixture(scope="module")
def cohort() -> CohortScorer:
    return CohortScorer("retail", n_customers=2_000)


def test_rollout_gives_belief_policies_beliefs_and_others_the_state() -> None:
    twin = CustomerTwin("retail")
    believer, knower = Recorder("believer", "belief"), Recorder("knower", "state")
    with_belief = rollout(twin.spawn(1), believer, 300, seed=9)
    with_state = rollout(twin.spawn(1), knower, 300, seed=9)
    belief_layout = FeatureBuilder(twin.arrays, observation="belief")
    state_layout = FeatureBuilder(twin.arrays)
    assert {obs.shape for obs in believer.seen} == {(300, belief_layout.size)}
    assert {obs.shape for obs in knower.seen} == {(300, state_layout.size)}
    assert len(believer.seen) == len(knower.seen) == state_layout.horizon
    # the same cohort and daily draws either way (the observer draws nothing)
    np.testing.assert_array_equal(with_belief.discounted_return, with_state.discounted_return)
    np.testing.assert_array_equal(with_belief.purchased, with_state.purchased)
    # the observed parts agree; the stage is believed on day 0: the persona's starting stages
    first_state, _ = state_layout.decode(knower.seen[0])
    stage = slice(belief_layout.offsets["stage"], belief_layout.offsets["stage"] + 7)
    np.testing.assert_allclose(
        believer.seen[0][:, stage],
        twin.arrays.persona_initial_stage[first_state.persona],
        atol=1e-6,
    )
    np.testing.assert_array_equal(
        believer.seen[0][:, : belief_layout.offsets["stage"]],
        knower.seen[0][:, : belief_layout.offsets["stage"]],
    )
    for day, obs in enumerate(believer.seen):
        joint = belief_layout.decode_belief(obs)  # renormalised: check the raw block too
        start = belief_layout.offsets["belief"]
        assert obs[:, start:].sum(axis=1) == pytest.approx(np.ones(300), abs=1e-5), day
        assert joint.shape == (300, 4, 7)
    # purchases moved beliefs: by the end they differ from the prior for the buyers
    last = believer.seen[-1][:, stage]
    buyers = with_belief.purchased
    assert buyers.any()
    prior = twin.arrays.persona_initial_stage[first_state.persona]
    assert not np.allclose(last[buyers], prior[buyers], atol=1e-3)


def test_exact_scoring_refuses_a_belief_policy_by_name(cohort: CohortScorer) -> None:
    with pytest.raises(NBAValidationError, match=r"^policy: 'believer' acts on beliefs"):
        cohort.exact_scorer.score(Recorder("believer", "belief"))


def test_cohort_scores_bracket_the_belief_baseline(cohort: CohortScorer) -> None:
    twin = cohort.twin
    assert cohort.score(NoActionPolicy()).share_of_optimum == 0.0
    # common random numbers hold for belief policies too: sending nothing is worth "no action"
    assert cohort.score(Recorder("believer", "belief")).share_of_optimum == 0.0
    optimum = OptimalPolicy(twin, cohort.exact_scorer.optimum)
    assert cohort.score(optimum).share_of_optimum == 1.0
    assert cohort.optimal_value > cohort.no_action_value
    values = BeliefValues(twin, cohort.exact_scorer.kernel, cohort.exact_scorer.optimum)
    qmdp = cohort.score(QMDPPolicy(twin, values)).share_of_optimum
    assert 0.0 < qmdp < 1.0
    # the full-state scorer of the same cohort agrees in kind: the optimum is exact there
    exact = cohort.exact_scorer.score(optimum)
    assert exact.share_of_optimum == pytest.approx(1.0)


def test_cohort_scorer_refuses_a_cohort_of_one() -> None:
    with pytest.raises(NBAValidationError, match="n_customers"):
        CohortScorer("retail", n_customers=1)
