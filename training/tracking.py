"""SB3 metrics into MLflow. The tracking helpers themselves live in :mod:`nba.tracking` (OPE and
calibration use them too); they are re-exported here for code that imported them from training.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient
from stable_baselines3.common.logger import KVWriter

from nba.tracking import (
    DEFAULT_ARTIFACTS,
    DEFAULT_DB,
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    ensure_experiment,
    git_commit,
    log_metrics,
    log_params,
    resolve_tracking_uri,
    run_tags,
    set_description,
)


class MLflowWriter(KVWriter):
    """SB3 logger output that sends each dump as one MLflow ``log_batch`` call.

    SB3 keys are already namespaced (``train/value_loss``, ``rollout/ep_rew_mean``); non-numeric
    values are skipped. Steps are SB3's ``num_timesteps``, so a resumed run continues its curves.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def write(
        self,
        key_values: dict[str, Any],
        key_excluded: dict[str, tuple[str, ...] | None],
        step: int = 0,
    ) -> None:
        log_metrics(self.client, self.run_id, key_values, step, excluded=key_excluded)

    def close(self) -> None:
        """Nothing buffered: every dump is written when it happens."""


__all__ = [
    "DEFAULT_ARTIFACTS",
    "DEFAULT_DB",
    "EXPERIMENT_KIND_TAG",
    "MODEL_TRAINING_KIND",
    "MLflowWriter",
    "ensure_experiment",
    "git_commit",
    "log_metrics",
    "log_params",
    "resolve_tracking_uri",
    "run_tags",
    "set_description",
]
