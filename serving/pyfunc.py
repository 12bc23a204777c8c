"""The exported policy as an MLflow pyfunc model: ``mlflow.pyfunc.load_model(uri).predict(df)``.

The model's only artifact is the export directory (``weights.npz`` + ``policy.json``);
``load_context`` reads it once with numpy and ``predict`` stays pure.

The signature (:func:`model_signature`) declares the outputs and no input schema, on purpose:
MLflow enforces an input schema before ``predict`` runs, dropping every column it does not
declare (with a warning) and refusing repeated or multi-level labels with its own error. A
misspelt consent (``Consent_email``) would then be dropped and the persona's default consent
applied: the request silently not honoured. Without an input schema every column reaches the
scorer as given (no column dropped, no value cast) and the request schema alone decides what
is valid, with the messages of :meth:`PolicyScorer.score_batch`. MLflow's own column types would
also change meaning: ``mlflow models serve`` casts a ``boolean`` column with a missing cell to
``True`` (consent granted). The request's JSON Schema (every field, its type, optional or
required) travels in the model's metadata as ``request_json_schema``, and the input example
shows every field.

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


def logged_model_fields(scorer: PolicyScorer) -> dict[str, Any]:
    """What the logged pyfunc says about its requests: signature, input example, JSON Schema.

    The keyword arguments of ``mlflow.pyfunc.log_model``/``save_model`` that the trainer and the
    tests pass alike.
    """
    return {
        "signature": model_signature(scorer),
        "input_example": example_input(scorer),
        "metadata": {"request_json_schema": scorer.input_schema()},
    }


def model_signature(scorer: PolicyScorer) -> ModelSignature:
    """Outputs as ``score_batch`` gives them, and no input schema (see the module docstring):
    MLflow then neither drops nor casts a column, and the scorer refuses what is unknown,
    missing or of the wrong type, naming it."""
    example = example_input(scorer)
    outputs = infer_signature(example, scorer.score_batch(example)).outputs
    return ModelSignature(inputs=None, outputs=outputs)


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
        for field in scorer.schema.component_fields:  # other state fields: the declaration's
            for g, name in enumerate(field.names):
                row.setdefault(name, field.example(i, g))
        rows.append(row)
    return pd.DataFrame(rows)
