from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nba.calibration.population import observe
from nba.calibration.targeting import best_single_action, served_actions, value_on_holdout
from nba.serving.scorer import PolicyScorer
from nba.training import train
from tests.calibration.conftest import HillstromSplit


def test_twin_policy_is_valued_on_the_held_out_randomized_half(
    hillstrom_split: HillstromSplit,
) -> None:
    scenario = hillstrom_split.result.scenario
    best = best_single_action(scenario, hillstrom_split.calibration)
    name = f"everyone {scenario.action_names[best]}"
    n = len(observe(scenario, hillstrom_split.holdout).actions)
    table = value_on_holdout(
        scenario,
        hillstrom_split.holdout,
        policies={name: np.full(n, best)},
        baselines=("e-mail nobody", name),
        n_bootstrap=500,
    ).set_index("policy")
    optimum = table.loc["twin optimum"]
    # the plan beats e-mailing nobody with a paired interval above zero
    assert optimum["vs e-mail nobody lower"] > 0
    assert table.loc["e-mail nobody", "share_contacted"] == 0
    # IPW of "nobody" is the held-out control group's mean reward (propensity 1/3 each arm)
    people = observe(scenario, hillstrom_split.holdout)
    control = people.actions == 0
    spend = people.table["spend"].to_numpy()
    expected = scenario.margin_rate * spend[control].sum() * 3 / len(spend)
    assert np.isclose(table.loc["e-mail nobody", "ipw_value"], expected)
    for column in ("lower", "upper", f"vs {name} lower", f"vs {name} upper"):
        assert np.isfinite(table[column]).all()


@pytest.mark.slow
def test_ppo_trained_on_the_twin_and_served_beats_emailing_nobody(
    hillstrom_split: HillstromSplit, tmp_path: Path
) -> None:
    """Calibrate -> train (MLflow) -> export -> PolicyScorer -> IPW on held-out reality."""
    scenario = hillstrom_split.result.scenario
    path = tmp_path / "hillstrom.yaml"
    scenario.to_yaml(path)
    trained = train(
        scenario=str(path),
        algo="ppo",
        timesteps=1_000_000,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        output_dir=tmp_path / "runs",
        eval_every_steps=500_000,
    )
    table = trained.table.set_index("policy")
    assert table.loc["ppo", "exact_share_of_optimum"] > 0.9
    people = observe(scenario, hillstrom_split.holdout)
    actions = served_actions(PolicyScorer.load(trained.export_dir), scenario, people)
    values = value_on_holdout(
        scenario, hillstrom_split.holdout, policies={"ppo": actions}, n_bootstrap=500
    ).set_index("policy")
    assert values.loc["ppo", "vs e-mail nobody lower"] > 0
