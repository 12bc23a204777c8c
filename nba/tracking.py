"""MLflow plumbing shared by training, OPE and calibration: where runs go, experiments, tags,
batched metrics and params.

MLflow loads only when a helper that talks to a store runs: resolving a URI (which every CLI
command that takes ``--tracking-uri`` does) costs nothing. SB3's metrics reach MLflow through
:class:`nba.training.tracking.MLflowWriter`, built on :func:`log_metrics`.

Embedded default: MLflow's SQLite store ``mlflow.db`` in the working directory, artifacts in
``./mlartifacts`` set explicitly on the experiment. ``MLFLOW_TRACKING_URI`` (or an explicit
URI) points a team at its own ``mlflow server``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
# The MLflow 3 UI opens an experiment in the view its kind names; ours train models, not GenAI
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
EXPERIMENT_DESCRIPTION = (
    "Next-best-action policies trained on the customer twin; each run is scored exactly "
    "against the dynamic-programming optimum and beside the baselines."
)


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Explicit URI, else ``MLFLOW_TRACKING_URI``, else SQLite in the working directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def ensure_experiment(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """Experiment id, creating it (with an explicit local artifact location for SQLite).

    The experiment is marked as model training, so the UI opens it on runs, charts and models
    rather than on GenAI traces; an older experiment without the mark gets it.
    """
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            client.set_experiment_tag(
                experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
            )
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:"):
        location = Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    tags = {EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND, MLFLOW_RUN_NOTE: EXPERIMENT_DESCRIPTION}
    return client.create_experiment(name, artifact_location=location, tags=tags)


def run_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """``tags`` plus what ``mlflow.start_run`` would add: user, source name and type, commit.

    ``MlflowClient.create_run`` adds none of these, and without them the UI shows no source
    or user for the run.
    """
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

    resolved = resolve_tags(dict(tags))
    commit = git_commit()
    if commit and MLFLOW_GIT_COMMIT not in resolved:
        resolved[MLFLOW_GIT_COMMIT] = commit
    return resolved


def set_description(client: MlflowClient, run_id: str, text: str) -> None:
    """The run's description in the UI (its note): one line a reviewer reads first."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    client.set_tag(run_id, MLFLOW_RUN_NOTE, text)


def log_metrics(
    client: MlflowClient,
    run_id: str,
    values: Mapping[str, Any],
    step: int,
    excluded: Mapping[str, tuple[str, ...] | None] | None = None,
) -> None:
    """Log numeric values as metrics in batches (one call per step, not per key)."""
    from mlflow.entities import Metric

    timestamp = int(time.time() * 1000)
    metrics = []
    for key, value in values.items():
        skip = (excluded or {}).get(key)
        if skip is not None and ("mlflow" in skip):
            continue
        if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
            continue
        if not np.isfinite(value):
            continue
        metrics.append(Metric(_metric_key(key), float(value), timestamp, int(step)))
    for start in range(0, len(metrics), MAX_BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + MAX_BATCH], synchronous=True)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    """Log params in batches of 100 (MLflow's limit per call), values cut at its 6,000 chars."""
    from mlflow.entities import Param

    items = [Param(key, str(value)[:6000]) for key, value in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100], synchronous=True)


def git_commit(path: Path | None = None) -> str | None:
    """The current commit of the working tree, if it is a git checkout."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path or Path.cwd(),
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() or None if completed.returncode == 0 else None


def _metric_key(key: str) -> str:
    """MLflow allows letters, digits and ``_ - . / space``; anything else becomes ``_``."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


__all__ = [
    "EXPERIMENT_KIND_TAG",
    "MODEL_TRAINING_KIND",
    "ensure_experiment",
    "git_commit",
    "log_metrics",
    "log_params",
    "resolve_tracking_uri",
    "run_tags",
    "set_description",
]
