from __future__ import annotations

import numpy as np
import pytest

from nba import optimal
from nba.errors import NBAValidationError
from nba.evaluation import evaluate_policies
from nba.kernel import TransitionKernel
from nba.policies import NoActionPolicy


@pytest.fixture(scope="module")
def report():
    return evaluate_policies("retail", ["random", "journey_map", "myopic"], n_customers=6_000)


def test_table_has_every_policy_and_kpi(report) -> None:
    table = report.table.set_index("policy")
    assert list(table.index) == ["random", "journey_map", "myopic", "no_action", "optimal"]
    for column in (
        "value",
        "lower",
        "upper",
        "share_of_optimum",
        "revenue",
        "cost",
        "contacts",
        "conversion",
        "unsubscribe_rate",
        "churn_rate",
        "blocked_requests",
        "violations",
    ):
        assert column in table.columns
    assert (table["violations"] == 0).all()
    assert (table["confidence"] == 0.95).all()
    assert table.loc["no_action", "share_of_optimum"] == 0.0
    assert table.loc["optimal", "share_of_optimum"] == 1.0
    assert table.loc["no_action", "contacts"] == 0.0
    assert (table["lower"] < table["value"]).all() and (table["value"] < table["upper"]).all()


def test_values_agree_with_exact_dp(
    report, retail_kernel: TransitionKernel, retail_optimum: optimal.PolicySolution
) -> None:
    table = report.table.set_index("policy")
    idle = optimal.evaluate(retail_kernel, optimal.no_action_policy(retail_kernel)).value
    for name, exact in (("optimal", retail_optimum.value), ("no_action", idle)):
        assert table.loc[name, "lower"] <= exact <= table.loc[name, "upper"], name


def test_common_random_numbers_give_the_same_cohort(report) -> None:
    daily = {name: r.daily for name, r in report.rollouts.items()}
    # same customers on day 0 before any action has had an effect on stage counts
    first_day = {name: frame.filter(like="stage_").iloc[0].sum() for name, frame in daily.items()}
    assert len(set(first_day.values())) == 1
    again = evaluate_policies("retail", [NoActionPolicy()], n_customers=6_000)
    np.testing.assert_array_equal(
        again.rollouts["no_action"].discounted_return,
        report.rollouts["no_action"].discounted_return,
    )


def test_bad_arguments() -> None:
    with pytest.raises(NBAValidationError, match="n_customers"):
        evaluate_policies("retail", ["random"], n_customers=1)
    with pytest.raises(NBAValidationError, match="policies"):
        evaluate_policies("retail", [], include_references=False)


def test_sb3_models_are_evaluated_like_any_policy() -> None:
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO

    from nba.envs import TwinVecEnv
    from nba.scenarios import load_scenario
    from nba.serving.export import served_policy

    env = TwinVecEnv(n_envs=16, seed=0)
    plain = PPO("MlpPolicy", env, n_steps=8, batch_size=64, seed=0, device="cpu")
    masked = MaskablePPO("MlpPolicy", env, n_steps=8, batch_size=64, seed=0, device="cpu")
    retail = load_scenario("retail")
    policies = [
        served_policy(plain, retail, algo="ppo"),
        served_policy(masked, retail, algo="maskable_ppo"),
    ]
    report = evaluate_policies("retail", policies, n_customers=300)
    table = report.table.set_index("policy")
    assert (table["violations"] == 0).all()
    # served through the policy head: a forbidden favourite becomes the best allowed action
    assert (table.loc[["ppo", "maskable_ppo"], "blocked_requests"] == 0.0).all()
    assert np.isfinite(table.loc["ppo", "value"])
