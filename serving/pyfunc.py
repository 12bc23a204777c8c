"""The exported policy as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(uri).predict(df)``.

The model's only artifact is the export directory (``weights.npz`` + ``policy.json``);
``load_context`` reads it once with numpy and ``predict`` stays pure.

The signature (:func:`model_signature`) names every request field, each optional and of type
``Any``: MLflow then hands every declared column to ``predict`` as given (no column dropped, no
value cast) and the request schema alone decides what is valid, with the messages of
:meth:`PolicyScorer.score_batch`. MLflow's own types would change meaning before the scorer sees
a value: ``mlflow models serve`` casts a ``boolean`` column with a missing cell to ``True``
(consent granted) and a ``long`` one turns ``true`` into 1; ``pyfunc.predict`` refuses integer
ids, 0/1 booleans, categoricals and datetime columns under ``string``, ``boolean`` and
``datetime``, with MLflow's errors. The JSON Schema with the real types travels in the model's
metadata (``request_json_schema``). MLflow itself still drops columns the signature does not
declare (with a warning) before ``predict`` runs: a misspelt field reaches the scorer only
through :class:`PolicyScorer` or ``nba serve``, which refuse it.

Bad requests raise :class:`ServedInputError`: a :class:`ScoringInputError` (for
``predict`` callers) that MLflow's scoring server also answers as a 400 with our message
(an ``MlflowException``), not as a 500 "unexpected error".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, Schema

from nba.serving.schema import ScoringInputError
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import load_exported

ARTIFACT_KEY = "policy"


class ServedInputError(ScoringInputError, MlflowException):
    """A bad request under MLflow: ours for ``predict`` callers, a 400 for the scoring server."""

    def __init__(self, message: str) -> None:
        MlflowException.__init__(self, message, error_code=INVALID_PARAMETER_VALUE)


class NBAPolicyModel(mlflow.pyfunc.PythonModel):
    """Scores a DataFrame of customer states; returns one decision row per customer."""

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts[ARTIFACT_KEY])
        version = (context.model_config or {}).get("model_version", "mlflow")
        self.scorer = PolicyScorer(load_exported(folder), model_version=str(version))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        try:
            return self.scorer.score_batch(model_input)
        except ScoringInputError as exc:
            raise ServedInputError(str(exc)) from None


def model_signature(scorer: PolicyScorer) -> ModelSignature:
    """Every request field as an optional column of any type; outputs as ``score_batch`` gives.

    Optional and untyped on purpose (see the module docstring): MLflow neither drops nor casts
    a declared field, and the scorer refuses what is missing or of the wrong type, naming it.
    """
    inputs = Schema([ColSpec(AnyType(), name, required=False) for name in scorer.schema.fields])
    example = example_input(scorer)
    outputs = infer_signature(example, scorer.score_batch(example)).outputs
    return ModelSignature(inputs=inputs, outputs=outputs)


def example_input(scorer: PolicyScorer) -> pd.DataFrame:
    """A small valid request, used as the logged model's input example.

    One customer per persona, with every kind of field: an ``as_of`` in a customer's own offset,
    ``last_contact_*`` timestamps (empty = never contacted) and consent per channel.
    """
    scenario = scorer.policy.scenario
    rows = []
    for i, persona in enumerate(scenario.persona_names):
        row: dict[str, Any] = {
            "customer_id": f"example-{i}",
            "persona": persona,
            "stage": scenario.stage_names[i % len(scenario.stage_names)],
            "pressure": i % (scenario.contact_rules.pressure_capacity + 1),
            "discount_habit": bool(i % 2),
            "opted_out": False,
            "day": 0,
            "as_of": "2026-11-29T19:00:00-05:00",
        }
        for k, column in enumerate(scorer.schema.last_contact_columns):
            row[column] = None if (i + k) % 2 else f"2026-11-{20 + k:02d}T09:00:00Z"
        for c, column in enumerate(scorer.schema.consent_columns):  # the persona's own consent
            row[column] = bool(scorer.arrays.persona_consent[i, c])
        rows.append(row)
    return pd.DataFrame(rows)
