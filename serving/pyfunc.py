"""The exported policy as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(uri).predict(df)``.

The model's only artifact is the export directory (``weights.npz`` + ``policy.json``);
``load_context`` reads it once with numpy and ``predict`` stays pure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd

from nba.serving.scorer import PolicyScorer
from nba.serving.spec import load_exported

ARTIFACT_KEY = "policy"


class NBAPolicyModel(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame of customer states; returns one decision row per customer."""

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts[ARTIFACT_KEY])
        version = (context.model_config or {}).get("model_version", "mlflow")
        self.scorer = PolicyScorer(load_exported(folder), model_version=str(version))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.scorer.score_batch(model_input)


def example_input(scorer: PolicyScorer) -> pd.DataFrame:
    """A small valid request, used as the logged model's input example."""
    scenario = scorer.policy.scenario
    rows = []
    for i, persona in enumerate(scenario.persona_names):
        row = {
            "customer_id": f"example-{i}",
            "persona": persona,
            "stage": scenario.stage_names[i % len(scenario.stage_names)],
            "pressure": i % (scenario.contact_rules.pressure_capacity + 1),
            "discount_habit": bool(i % 2),
            "opted_out": False,
            "day": 0,
        }
        for cap, column in zip(
            scenario.contact_rules.caps, scorer.schema.days_columns, strict=True
        ):
            row[column] = cap.window_days
        rows.append(row)
    return pd.DataFrame(rows)
