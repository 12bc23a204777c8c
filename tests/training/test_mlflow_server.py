"""Train against a real ``mlflow server`` on loopback and read everything back."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from nba.training import train
from tests.serving.conftest import customer
from tests.training.conftest import TINY_RUN


@pytest.mark.integration
def test_tiny_run_against_a_real_server(
    mlflow_server: str, bare_workdir: Path, tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = train(
        algo="ppo", config=tiny_config, experiment="team", register_model=True, **TINY_RUN
    )
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["scenario_name"] == "retail"
    assert "eval/share_of_optimum" in run.data.metrics
    figures = {a.path for a in client.list_artifacts(result.run_id, "figures")}
    assert "figures/learning_curve.png" in figures
    local = client.download_artifacts(result.run_id, "evaluation/evaluation.csv", str(bare_workdir))
    assert set(pd.read_csv(local)["policy"]) >= {"ppo", "optimal", "no_action"}
    version = client.get_model_version_by_alias("nba-retail", "candidate")
    assert version.run_id == result.run_id
    assert not (bare_workdir / "mlflow.db").exists()  # nothing went to the local default store

    import mlflow.pyfunc

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/nba-retail@candidate")
    request = pd.DataFrame([customer(day=0)])
    decision = model.predict(request)
    from nba.scenarios import load_scenario

    assert decision.loc[0, "action_name"] in load_scenario("retail").action_names
    assert decision.loc[0, "propensity"] == 1.0
    assert 0.0 < decision.loc[0, "rank_1_probability"] <= 1.0
