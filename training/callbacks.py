"""SB3 callbacks of a tracked run: exact periodic evaluation and atomic checkpoints."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize

from nba.evaluation import ExactScorer
from nba.io import write_text_atomic
from nba.policies import SB3Policy
from nba.training.tracking import log_metrics


class ExactEvaluationCallback(BaseCallback):
    """Every ``every_steps`` env steps, score the current greedy policy exactly.

    Logs ``eval/value`` and ``eval/share_of_optimum`` at the current step, keeps the history
    for the learning curve, and stops training once ``target_share`` is reached. Time spent
    evaluating is measurement, not training: ``elapsed_seconds`` leaves it out.
    """

    def __init__(
        self,
        scorer: ExactScorer,
        every_steps: int,
        client: MlflowClient,
        run_id: str,
        history: list[dict[str, float]],
        elapsed_before: float = 0.0,
        target_share: float | None = None,
        algo: str = "policy",
    ) -> None:
        super().__init__()
        self.scorer = scorer
        self.every_steps = every_steps
        self.client = client
        self.run_id = run_id
        self.history = history
        self.target_share = target_share
        self.algo = algo
        self.elapsed_before = elapsed_before
        self._started = time.perf_counter()
        self._evaluating = 0.0
        self._last = history[-1]["timesteps"] if history else 0
        self.reached_at: dict[str, float] | None = None

    @property
    def elapsed(self) -> float:
        """Seconds spent training so far (across resumes), excluding exact evaluations."""
        return self.elapsed_before + time.perf_counter() - self._started - self._evaluating

    def _on_training_start(self) -> None:
        if not self.history:
            self.evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last >= self.every_steps:
            self.evaluate()
            if self.reached_at is not None:
                return False
        return True

    def evaluate(self) -> dict[str, float]:
        started = time.perf_counter()
        score = self.scorer.score(SB3Policy(self.model, self.algo))
        self._evaluating += time.perf_counter() - started
        self._last = self.num_timesteps
        point = {
            "timesteps": float(self.num_timesteps),
            "elapsed_seconds": round(self.elapsed, 3),
            "wall_seconds": round(self.elapsed + self._evaluating, 3),
            "value": score.value,
            "share_of_optimum": score.share_of_optimum,
        }
        self.history.append(point)
        log_metrics(
            self.client,
            self.run_id,
            {
                "eval/value": score.value,
                "eval/share_of_optimum": score.share_of_optimum,
                "eval/elapsed_seconds": point["elapsed_seconds"],
            },
            step=self.num_timesteps,
        )
        if self.target_share is not None and score.share_of_optimum >= self.target_share:
            self.reached_at = point
        return point


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every_seconds``, save model and training state so a killed run can resume.

    Files are replaced atomically (written aside, then renamed), so a crash mid-save leaves the
    previous checkpoint intact. ``state.json`` holds the step count, elapsed time, the reward
    normaliser's statistics and the evaluation history.
    """

    def __init__(
        self,
        directory: Path,
        every_seconds: float,
        history: list[dict[str, float]],
        elapsed: Any,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.every_seconds = every_seconds
        self.history = history
        self.elapsed = elapsed  # callable returning seconds trained so far
        self._last = time.perf_counter()

    def _on_step(self) -> bool:
        if time.perf_counter() - self._last >= self.every_seconds:
            self.save()
        return True

    def save(self) -> Path:
        self._last = time.perf_counter()
        save_checkpoint(self.model, self.directory, self.history, self.elapsed())
        return self.directory


def save_checkpoint(
    model: Any, directory: Path, history: list[dict[str, float]], elapsed: float
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / "model.partial.zip"
    model.save(partial)
    partial.replace(directory / "model.zip")
    state: dict[str, Any] = {
        "num_timesteps": int(model.num_timesteps),
        "elapsed_seconds": float(elapsed),
        "history": history,
    }
    env = model.get_env()
    if isinstance(env, VecNormalize):
        state["reward_normalizer"] = {
            "mean": float(env.ret_rms.mean),
            "var": float(env.ret_rms.var),
            "count": float(env.ret_rms.count),
        }
    write_text_atomic(directory / "state.json", json.dumps(state))


def load_checkpoint_state(directory: Path) -> dict[str, Any] | None:
    path = directory / "state.json"
    if not path.is_file() or not (directory / "model.zip").is_file():
        return None
    return json.loads(path.read_text("utf-8"))
