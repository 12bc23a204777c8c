"""SB3 callbacks of a tracked run: exact periodic evaluation and atomic checkpoints."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from mlflow.tracking import MlflowClient
from stable_baselines3.common.callbacks import BaseCallback

from nba.evaluation import CohortScorer, ExactScorer
from nba.progress import count, duration, progress_line, say
from nba.serving.export import served_policy
from nba.tracking import log_metrics


class ExactEvaluationCallback(BaseCallback):
    """Every ``every_steps`` env steps, score the current policy as it would serve: exactly, or
    for a policy of beliefs on a fixed cohort (:class:`~nba.evaluation.CohortScorer`).

    Logs ``eval/value`` and ``eval/share_of_optimum`` at the current step, keeps the history
    for the learning curve, and stops training once ``target_share`` is reached. Time spent
    evaluating is measurement, not training: ``elapsed_seconds`` leaves it out.
    """

    def __init__(
        self,
        scorer: ExactScorer | CohortScorer,
        every_steps: int,
        client: MlflowClient,
        run_id: str,
        history: list[dict[str, float]],
        elapsed_before: float = 0.0,
        target_share: float | None = None,
        algo: str = "policy",
        on_point: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        super().__init__()
        self.on_point = on_point
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
        score = self.scorer.score(
            served_policy(self.model, self.scorer.twin.scenario, algo=self.algo)
        )
        self._evaluating += time.perf_counter() - started
        self._last = self.num_timesteps
        point = {
            "timesteps": float(self.num_timesteps),
            "elapsed_seconds": round(self.elapsed, 3),
            "wall_seconds": round(self.elapsed + self._evaluating, 3),
            "value": score.value,
            "share_of_optimum": score.share_of_optimum,
            "exact": float(isinstance(self.scorer, ExactScorer)),
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
        if self.on_point is not None:
            self.on_point(point)
        return point


class ProgressLinesCallback(BaseCallback):
    """A progress line on stderr every ``every_seconds``, and when training starts and ends.

    ``train: 4.1M/30.0M steps (14%), 215k steps/s, ETA 2m01s, exact share 0.91``: SB3's bar
    draws only in a terminal, so logs and notebooks get these lines instead. The share is the
    latest exact evaluation in ``history`` (the list :class:`ExactEvaluationCallback` fills).
    """

    def __init__(
        self, history: list[dict[str, float]], every_seconds: float = 30.0, label: str = "train"
    ) -> None:
        super().__init__()
        self.history = history
        self.every_seconds = every_seconds
        self.label = label
        self._started = self._said = time.perf_counter()
        self._first_step = 0
        self._total = 0

    def _on_training_start(self) -> None:
        self._total = int(self.locals.get("total_timesteps", 0))
        self._first_step = self.num_timesteps
        self._started = self._said = time.perf_counter()
        say(self.line())

    def _on_step(self) -> bool:
        now = time.perf_counter()
        if now - self._said >= self.every_seconds:
            self._said = now
            say(self.line())
        return True

    def _on_training_end(self) -> None:
        elapsed = time.perf_counter() - self._started
        rate = (self.num_timesteps - self._first_step) / elapsed if elapsed > 0 else 0.0
        say(
            f"{self.label}: {count(self.num_timesteps)} steps, {duration(elapsed)} "
            f"({count(rate)} steps/s){self._share()}"
        )

    def line(self) -> str:
        elapsed = time.perf_counter() - self._started
        done = self.num_timesteps - self._first_step
        if done <= 0:  # nothing to measure a rate on yet
            steps = f"{count(self.num_timesteps)}/{count(self._total)} steps"
            return f"{self.label}: {steps}{self._share()}"
        rate = done / elapsed
        return progress_line(self.label, self.num_timesteps, self._total, elapsed, rate=rate) + (
            self._share()
        )

    def _share(self) -> str:
        if not self.history:
            return ""
        last = self.history[-1]
        kind = "exact share" if last.get("exact", 1.0) else "cohort share"
        return f", {kind} {last['share_of_optimum']:.3f}"


class AtomicCheckpointCallback(BaseCallback):
    """Every ``every_seconds``, at the start of a rollout, save a checkpoint a run resumes from.

    At a rollout's start the last update is done and nothing of the next rollout is collected
    yet, so resuming there continues the same learning exactly (weights, optimizer, RNGs,
    customers, replay buffer: :mod:`nba.training.checkpoint`). ``checkpoints`` is a
    :class:`~nba.training.checkpoint.RunCheckpoints` (anything with its ``save``); its saves
    replace the previous checkpoint atomically, so a crash mid-save leaves that one intact.
    """

    def __init__(
        self,
        checkpoints: Any,
        every_seconds: float,
        history: list[dict[str, float]],
        elapsed: Any,
    ) -> None:
        super().__init__()
        self.checkpoints = checkpoints
        self.every_seconds = every_seconds
        self.history = history
        self.elapsed = elapsed  # callable returning seconds trained so far
        self._last = time.perf_counter()

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if time.perf_counter() - self._last >= self.every_seconds:
            self.save()

    def save(self) -> str:
        """Save now (also mid-rollout, when a signal stops training); the manifest's sha256."""
        self._last = time.perf_counter()
        return self.checkpoints.save(self.model, self.history, self.elapsed())


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (SIGTERM, or Ctrl-C as SIGINT) after saving a checkpoint.

    A ``KeyboardInterrupt`` so code that already stops cleanly on Ctrl-C handles it too.
    ``run_id`` is filled in by :func:`nba.training.train` before it reaches the caller.
    """

    def __init__(self, signal_number: int, run_id: str | None = None) -> None:
        super().__init__(signal_number, run_id)
        self.signal_number = signal_number
        self.run_id = run_id

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal_number).name

    def __str__(self) -> str:
        run = f" run {self.run_id}" if self.run_id else ""
        return f"{self.signal_name}: training{run} interrupted"


class StopOnSignal(BaseCallback):
    """Turns SIGTERM/SIGINT into a stop between env steps, where the model is whole.

    Install :meth:`handler` for both signals. While ``learn`` runs, the first signal is only
    noted and raised as :class:`TrainingInterrupted` at the next step (or when ``learn`` ends),
    so no gradient update is cut in half; outside ``learn``, or on a second signal, it raises
    at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pending: int | None = None
        self._learning = False

    def handler(self, signal_number: int, frame: Any) -> None:
        if self._learning and self.pending is None:
            self.pending = signal_number
            return
        raise TrainingInterrupted(signal_number)

    def _on_training_start(self) -> None:
        self._learning = True
        self._raise_pending()

    def _on_step(self) -> bool:
        self._raise_pending()
        return True

    def _on_training_end(self) -> None:
        self._raise_pending()
        self._learning = False

    def _raise_pending(self) -> None:
        if self.pending is not None:
            self._learning = False
            raise TrainingInterrupted(self.pending)
