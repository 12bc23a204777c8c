from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nba.errors import NBAValidationError
from nba.ope import read_decision_log
from nba.ope.target import ScorerPolicy, allowed_actions, policy_probabilities
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import load_exported
from tests.serving.conftest import population


def test_replayed_greedy_choices_equal_what_the_scorer_serves(
    decision_log: Path, good_export: Path, bad_export: Path
) -> None:
    records = read_decision_log(decision_log)
    logging = PolicyScorer(load_exported(bad_export))
    allowed = allowed_actions(logging, records.features, records.probabilities)
    assert allowed[np.arange(len(records)), records.action].all()  # every logged action allowed
    served = logging.score_batch(population(6_000, seed=1))["action"].to_numpy()
    replayed = policy_probabilities(logging, records.features, allowed).argmax(axis=1)
    np.testing.assert_array_equal(replayed, served)

    good = PolicyScorer(load_exported(good_export))
    probabilities = policy_probabilities(good, records.features, allowed, kind="softmax")
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[~allowed] == 0).all()


def test_rules_recomputed_from_features_match_the_served_allowed_sets(
    decision_log: Path, bad_export: Path
) -> None:
    records = read_decision_log(decision_log)
    scorer = PolicyScorer(load_exported(bad_export))
    from_rules = allowed_actions(scorer, records.features)  # as for a greedy (one-hot) log
    served = records.probabilities > 0  # a softmax policy's support is what the rules allowed
    np.testing.assert_array_equal(from_rules, served)
    assert 0 < from_rules.mean() < 1


def test_scorer_policy_acts_within_the_mask(good_export: Path) -> None:
    policy = ScorerPolicy(PolicyScorer(load_exported(good_export)))
    obs = np.zeros((2, len(policy.scorer.features.names)), dtype=np.float32)
    mask = np.array([[True] + [False] * 12, [True] * 6 + [False] * 7])
    actions, probabilities = policy.act(obs, mask)
    assert actions.tolist() == [0, 5]  # no action when nothing else is allowed; else sms
    assert probabilities.sum() == pytest.approx(2.0)
    with pytest.raises(NBAValidationError, match="target: unknown kind"):
        policy_probabilities(policy.scorer, obs, mask, kind="mystery")  # type: ignore[arg-type]


def test_logs_and_models_meet_across_the_days_left_block(
    decision_log: Path, good_export: Path, tmp_path: Path
) -> None:
    from nba.features import FeatureBuilder
    from nba.ope.target import model_features
    from tests.serving.test_legacy_export import _legacy_copy

    records = read_decision_log(decision_log)
    current = PolicyScorer(load_exported(good_export))
    legacy = PolicyScorer.load(_legacy_copy(good_export, tmp_path / "legacy"))
    # a model from before the block reads the prefix of a current log
    np.testing.assert_array_equal(
        model_features(legacy, records.features, records.feature_names),
        records.features[:, : legacy.features.size],
    )
    # a current model rebuilds its features from a log written before the block
    old_names = FeatureBuilder(current.arrays, final_days=0).names
    old_log = records.features[:, : len(old_names)]
    rebuilt = model_features(current, old_log, old_names)
    np.testing.assert_array_equal(rebuilt, records.features)
    with pytest.raises(NBAValidationError, match="feature names differ"):
        model_features(current, old_log[:, ::-1], old_names[::-1])
