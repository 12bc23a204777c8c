"""What ships is what was measured: a registered model, served, earns its run's value.

For each algorithm, a short tracked run registers its policy; the test then loads the model
from the registry with :class:`PolicyScorer` and plays the run's evaluation cohort (same
customers, same seed, common random numbers) where every day's decisions come from
``score_batch`` on request rows built from what each customer looks like that day. The value
must equal the run's ``final/<algo>/value`` and the exact value its ``exact_value``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nba.evaluation import ExactScorer, evaluate_policies
from nba.features import FeatureBuilder
from nba.policy_head import one_hot
from nba.serving.scorer import PolicyScorer
from nba.tracking import resolve_tracking_uri
from nba.training import train
from nba.types import BoolArray, FloatArray, IntArray
from tests.training.conftest import tiny_config_for

MONDAY = pd.Timestamp("2026-11-30T09:00:00Z")


class RequestPolicy:
    """Decides by sending each customer's fields through ``PolicyScorer.score_batch``."""

    def __init__(self, scorer: PolicyScorer, name: str) -> None:
        self.scorer, self.name = scorer, name
        self.features = FeatureBuilder(scorer.arrays)
        self.requests = 0

    def act(self, obs: FloatArray, mask: BoolArray) -> tuple[IntArray, FloatArray]:
        state, day = self.features.decode(obs)
        scenario = self.scorer.policy.scenario
        weekday = (self.scorer.arrays.weekday_of_start + day) % 7
        frame = pd.DataFrame(
            {
                "customer_id": np.arange(len(day)),
                "persona": np.asarray(scenario.persona_names)[state.persona],
                "stage": np.asarray(scenario.stage_names)[state.stage],
                "pressure": state.pressure,
                "discount_habit": state.habit,
                "opted_out": state.opted_out,
                "day": day,
                "as_of": MONDAY + pd.to_timedelta(weekday, unit="D"),
            }
        )
        for g, cap in enumerate(scenario.contact_rules.caps):
            frame[f"days_since_{cap.name}"] = state.days_since[:, g]
        unlimited = dict.fromkeys(self.scorer.default_capacity)  # the twin has no capacity
        decisions = self.scorer.score_batch(frame, as_of=MONDAY.to_pydatetime(), capacity=unlimited)
        self.requests += len(frame)
        actions = decisions["action"].to_numpy(np.int64)
        assert mask[np.arange(len(actions)), actions].all()  # the served choice is allowed
        return actions, one_hot(actions, mask.shape[1])


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "maskable_ppo", "a2c", "dqn"])
def test_served_value_of_the_registered_model_equals_its_run(
    algo: str, workdir: Path, tmp_path: Path
) -> None:
    run = train(
        algo=algo,
        seed=1,
        config=tiny_config_for(tmp_path, algo),
        timesteps=4_096,
        eval_every_steps=10**9,
        eval_customers=600,
        register_model=True,
        checkpoint_every_seconds=3_600.0,
    )
    client = MlflowClient(resolve_tracking_uri())
    metrics = client.get_run(run.run_id).data.metrics
    scorer = PolicyScorer.load(f"models:/nba-retail/{run.model_version}")
    served = RequestPolicy(scorer, algo)
    report = evaluate_policies("retail", {algo: served}, n_customers=600, include_references=False)
    assert served.requests == 600 * 90  # every customer-day went through serving
    assert report.table.loc[0, "value"] == pytest.approx(metrics[f"final/{algo}/value"], abs=1e-9)
    exact = ExactScorer("retail").score(scorer.as_policy(algo))
    row = run.table.set_index("policy").loc[algo]
    assert exact.value == pytest.approx(row["exact_value"], abs=1e-9)
