from __future__ import annotations

import numpy as np
import pytest

from nba.errors import UnknownNameError
from nba.ope import (
    ESTIMATORS,
    IPS,
    SNIPS,
    DirectMethod,
    DoublyRobust,
    DRShrinkage,
    LoggedBandit,
    OPEInputError,
    SwitchDR,
    bootstrap,
    bootstrap_many,
    evaluate_bandit,
    make_estimator,
    reward_predictions,
)
from tests.ope.conftest import synthetic_bandit


@pytest.mark.parametrize("name", ["ips", "snips", "dr", "switch_dr"])
def test_estimates_are_within_sampling_error_of_the_true_value(name: str) -> None:
    bandit = synthetic_bandit(n=20_000, seed=1)
    predictions = reward_predictions(bandit.data, seed=1)
    interval = make_estimator(name).interval(bandit.data, predictions, n_boot=300, seed=0)
    assert abs(interval.estimate - bandit.true_value) < 4 * interval.std_error
    assert interval.lower < interval.estimate < interval.upper


def test_ips_is_unbiased_over_repeated_logs() -> None:
    errors = [
        IPS().estimate(b.data) - b.true_value
        for b in (synthetic_bandit(n=2_000, seed=s) for s in range(100))
    ]
    mean, spread = np.mean(errors), np.std(errors, ddof=1) / np.sqrt(len(errors))
    assert abs(mean) < 3.5 * spread


def test_intervals_of_snips_and_dr_cover_the_truth_in_repeated_logs() -> None:
    covered = {"snips": 0, "dr": 0}
    for seed in range(60):
        bandit = synthetic_bandit(n=2_000, seed=100 + seed)
        for interval in evaluate_bandit(bandit.data, ("snips", "dr"), n_boot=200, seed=seed):
            covered[interval.estimator] += interval.lower <= bandit.true_value <= interval.upper
    assert min(covered.values()) >= 51  # at least 85% of 60 (nominal 95%)


def test_snips_follows_a_reward_shift_exactly_and_ips_does_not() -> None:
    data = synthetic_bandit(n=5_000, seed=2).data
    shifted = LoggedBandit(
        data.context, data.action, data.reward + 100.0, data.propensity, data.target
    )
    assert SNIPS().estimate(shifted) == pytest.approx(SNIPS().estimate(data) + 100.0, abs=1e-9)
    ips_shift = IPS().estimate(shifted) - IPS().estimate(data)
    assert ips_shift == pytest.approx(100.0 * data.weights.mean(), rel=1e-9)
    assert abs(ips_shift - 100.0) > 0.01  # IPS carries the weights' sampling error


def test_dr_and_dm_are_exact_when_the_model_is_perfect() -> None:
    bandit = synthetic_bandit(n=3_000, seed=3)
    data = bandit.data
    exact = bandit.mean_reward[np.arange(data.n), data.action]
    noiseless = LoggedBandit(data.context, data.action, exact, data.propensity, data.target)
    for estimator in (DirectMethod(), DoublyRobust(), SwitchDR(tau=2.0), DRShrinkage(lam=1.0)):
        value = estimator.estimate(noiseless, bandit.mean_reward)
        assert value == pytest.approx(bandit.true_value, abs=1e-12)


def test_switch_and_shrinkage_span_dm_to_dr() -> None:
    bandit = synthetic_bandit(n=3_000, seed=4)
    predictions = reward_predictions(bandit.data, seed=0)
    dr = DoublyRobust().estimate(bandit.data, predictions)
    dm = DirectMethod().estimate(bandit.data, predictions)
    assert SwitchDR(tau=1e9).estimate(bandit.data, predictions) == pytest.approx(dr)
    assert SwitchDR(tau=1e-9).estimate(bandit.data, predictions) == pytest.approx(dm)
    assert DRShrinkage(lam=1e12).estimate(bandit.data, predictions) == pytest.approx(dr, rel=1e-6)
    with pytest.raises(ValueError, match="tau"):
        SwitchDR(tau=0.0)


def test_intervals_are_seeded_and_clusters_are_resampled_whole() -> None:
    data = synthetic_bandit(n=4_000, seed=5).data
    first = SNIPS().interval(data, n_boot=200, seed=7)
    assert first == SNIPS().interval(data, n_boot=200, seed=7)
    assert first != SNIPS().interval(data, n_boot=200, seed=8)
    # every decision logged twice: rows look independent, customers show they are not
    twice = np.repeat(np.arange(data.n), 2)
    doubled = LoggedBandit(
        data.context[twice], data.action[twice], data.reward[twice],
        data.propensity[twice], data.target[twice],
    )  # fmt: skip
    clustered = LoggedBandit(
        data.context[twice], data.action[twice], data.reward[twice],
        data.propensity[twice], data.target[twice], groups=twice,
    )  # fmt: skip
    naive = SNIPS().interval(doubled, n_boot=400, seed=1).std_error
    honest = SNIPS().interval(clustered, n_boot=400, seed=1).std_error
    assert honest == pytest.approx(first.std_error, rel=0.2)
    assert honest > 1.25 * naive


def test_model_based_estimators_need_predictions_of_the_right_shape() -> None:
    data = synthetic_bandit(n=100, seed=6).data
    with pytest.raises(OPEInputError, match="dr: needs reward-model predictions"):
        DoublyRobust().estimate(data)
    with pytest.raises(OPEInputError, match="predictions: expected shape"):
        DirectMethod().estimate(data, np.zeros((100, 2)))
    with pytest.raises(UnknownNameError, match="estimator: unknown 'magic'"):
        make_estimator("magic")
    assert set(ESTIMATORS) == {"dm", "ips", "snips", "dr", "switch_dr", "dr_os"}


def test_shared_resamples_give_paired_differences() -> None:
    data = synthetic_bandit(n=3_000, seed=8).data
    close = data.with_target(0.8 * data.target + 0.2 / data.n_actions)  # a nearby policy
    for estimator in (IPS(), SNIPS()):
        mine, theirs = estimator.terms(data), estimator.terms(close)
        gap = mine.minus(theirs)
        assert gap.value() == pytest.approx(mine.value() - theirs.value(), rel=1e-12)
        replicates = bootstrap_many([mine, theirs, gap], 300, seed=1)
        np.testing.assert_array_equal(replicates[:, 0], bootstrap(mine, 300, seed=1))
        np.testing.assert_allclose(replicates[:, 2], replicates[:, 0] - replicates[:, 1])
        # the two values move together, so their difference varies less than either
        assert replicates[:, 2].std() < 0.8 * min(replicates[:, 0].std(), replicates[:, 1].std())
    with pytest.raises(ValueError, match="same rows"):
        IPS().terms(data).minus(IPS().terms(synthetic_bandit(n=10, seed=0).data))
    with pytest.raises(ValueError, match="confidence"):
        IPS().interval(data, n_boot=10, confidence=1.0)
