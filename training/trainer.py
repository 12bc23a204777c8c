"""``train``: learn a policy on the twin, prove it against baselines and the optimum, record it.

Every run is an MLflow run: flattened config, scenario hash and git commit as params; scenario
YAML, hyper-parameters and config as artifacts; SB3 metrics through :class:`MLflowWriter`;
exact periodic evaluation; the final comparison table (CSV, JSON and metrics); figures; and the
exported policy as a pyfunc model, registered under ``nba-<scenario>`` with alias ``candidate``
when asked (``register_model``). A run that fails is marked FAILED with the error; one stopped by
SIGTERM or Ctrl-C is checkpointed and marked KILLED; ``resume`` continues either.
"""

from __future__ import annotations

import json
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from pydantic import ValidationError
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import nba
from nba.envs import TwinVecEnv
from nba.errors import NBAValidationError
from nba.evaluation import CohortScorer, ExactScorer
from nba.progress import count
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.signals import handled
from nba.tracking import (
    ensure_experiment,
    git_commit,
    log_params,
    resolve_tracking_uri,
    run_tags,
)
from nba.training.callbacks import (
    AtomicCheckpointCallback,
    ExactEvaluationCallback,
    ProgressLinesCallback,
    StopOnSignal,
    TrainingInterrupted,
)
from nba.training.checkpoint import Checkpoint, RunCheckpoints
from nba.training.config import (
    HyperParameters,
    TrainConfig,
    load_hyperparameters,
    option_name,
)
from nba.training.masking import rule_mask_spec
from nba.training.publish import TrainResult, publish
from nba.training.registry import get_algorithm
from nba.training.tracking import MLflowWriter


def train(
    scenario: str | None = None,
    algo: str | None = None,
    timesteps: int | None = None,
    seed: int | None = None,
    config: str | Path | HyperParameters | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    resume: str | None = None,
    output_dir: str | Path = "nba-runs",
    callbacks: list[Any] | None = None,
    init_from: str | Path | None = None,
    run_tags: dict[str, str] | None = None,
    on_evaluation: Callable[[dict[str, float]], None] | None = None,
    **options: Any,
) -> TrainResult:
    """Train ``algo`` on ``scenario`` for ``timesteps`` env steps; return run id and table.

    Defaults: scenario ``retail``, algo ``ppo``, 10,000,000 steps, seed 0, experiment ``nba``,
    and no registration (``register_model=True`` registers the policy and points the
    ``candidate`` alias at it). SIGTERM or Ctrl-C stops at the next env step, saves a
    checkpoint, marks the run KILLED and raises :class:`TrainingInterrupted`.

    :param config: hyper-parameter YAML path (or a :class:`HyperParameters`); default: the
        packaged file for this algorithm and scenario.
    :param tracking_uri: MLflow URI; default ``MLFLOW_TRACKING_URI`` or ``./mlflow.db``.
    :param resume: id of an interrupted run to continue from its last checkpoint. Arguments
        given with it must match the run's, except ``timesteps`` (train to the new total) and
        settings that do not change the result (see ``RESUME_APPLIES``).
    :param init_from: an exported policy's folder (:mod:`nba.training.warm_start`): a new run's
        actor and critic start as its weights (ignored on ``resume``: the checkpoint has them).
    :param run_tags: extra tags of a new run (a sweep's ``mlflow.parentRunId``, say).
    :param on_evaluation: called with every learning-curve point as it is measured (a sweep
        reports them to its scheduler); an exception it raises stops training.
    :param options: further :class:`TrainConfig` fields (``eval_every_steps``, ...).
    """
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    named = {"algo": algo, "timesteps": timesteps, "seed": seed, "experiment": experiment}
    named |= {"scenario": None if scenario is None else str(scenario), "hyperparameters": config}
    given: dict[str, Any] = {key: value for key, value in named.items() if value is not None}
    given.update(options)
    if resume:
        run_id, cfg = _config_of_run(client, resume, given)
    else:
        if isinstance(config, str | Path):
            given["hyperparameters"] = load_hyperparameters(Path(config), algo or "ppo")
        cfg = TrainConfig(**given).resolved()
        run_id = None
    loaded = load_scenario(cfg.scenario)
    if run_id is None:
        run_id = _new_run(client, uri, cfg, loaded, run_tags or {})
    checkpoints = RunCheckpoints(client, run_id, Path(cfg.checkpoint_dir) / run_id)
    # verified before the run is touched: a refused checkpoint leaves it as it was
    checkpoint = checkpoints.load(download=True) if resume else None
    stop = StopOnSignal()
    with _signals_to(stop.handler), mlflow.start_run(run_id=run_id):
        try:
            extra, folder = [*(callbacks or []), stop], Path(output_dir)
            inputs = (client, run_id, cfg, loaded, folder, extra, checkpoints, checkpoint)
            result = _train_in_run(*inputs, init_from, on_evaluation)
        except KeyboardInterrupt as exc:
            interrupted = (
                exc if isinstance(exc, TrainingInterrupted) else TrainingInterrupted(signal.SIGINT)
            )
            interrupted.run_id = run_id
            client.set_tag(run_id, "nba.error", f"{interrupted}; resume with --resume {run_id}")
            mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))  # not FAILED, not RUNNING
            if interrupted is exc:
                raise
            raise interrupted from exc
        except BaseException as exc:
            client.set_tag(run_id, "nba.error", f"{type(exc).__name__}: {exc}"[:5000])
            raise
        if resume and "nba.error" in client.get_run(run_id).data.tags:
            client.delete_tag(run_id, "nba.error")  # the resumed run finished: no longer true
        return result


def _new_run(
    client: MlflowClient, uri: str, cfg: TrainConfig, scenario: Scenario, tags: dict[str, str]
) -> str:
    """Create the run (named, tagged, described) and log what it was started with."""
    experiment_id = ensure_experiment(client, cfg.experiment, uri)
    run = client.create_run(
        experiment_id,
        run_name=f"{cfg.algo}-{scenario.name}-seed{cfg.seed}",
        tags=run_tags(
            {
                "nba.scenario": scenario.name,
                "nba.algo": cfg.algo,
                MLFLOW_RUN_NOTE: f"{cfg.algo} on {scenario.name}, {count(cfg.timesteps)} steps, "
                f"seed {cfg.seed}: training",
                **tags,
            }
        ),
    )
    _log_run_inputs(client, run.info.run_id, cfg, scenario)
    return str(run.info.run_id)


def _signals_to(handler: Any) -> Any:
    """Route SIGTERM and SIGINT to ``handler`` while training (main thread only)."""
    return handled((signal.SIGTERM, signal.SIGINT), handler)


def _train_in_run(
    client: MlflowClient,
    run_id: str,
    cfg: TrainConfig,
    scenario: Scenario,
    output_dir: Path,
    extra_callbacks: list[Any],
    checkpoints: RunCheckpoints,
    checkpoint: Checkpoint | None,
    init_from: str | Path | None = None,
    on_evaluation: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    model = _build_model(cfg, scenario)
    if checkpoint is None and init_from is not None:
        from nba.training.warm_start import load_exported_weights

        load_exported_weights(model, init_from, scenario)
        client.set_tag(run_id, "nba.init_from", str(init_from))
    history: list[dict[str, float]] = []
    elapsed_before = 0.0
    if checkpoint is not None:
        checkpoint.restore(model)
        history = checkpoint.history
        elapsed_before = checkpoint.elapsed_seconds
        client.set_tag(run_id, "nba.resumed_at_step", str(model.num_timesteps))
    model.set_logger(Logger(folder=None, output_formats=[MLflowWriter(client, run_id)]))

    scorer = ExactScorer(scenario) if cfg.observation == "state" else CohortScorer(scenario)
    evaluation = ExactEvaluationCallback(
        scorer,
        cfg.eval_every_steps,
        client,
        run_id,
        history,
        elapsed_before=elapsed_before,
        target_share=cfg.target_share,
        algo=cfg.algo,
        on_point=on_evaluation,
    )
    periodic = AtomicCheckpointCallback(
        checkpoints, cfg.checkpoint_every_seconds, history, lambda: evaluation.elapsed
    )
    if not cfg.progress_bar:  # no bar (not a terminal, or --json): lines on stderr instead
        extra_callbacks = [*extra_callbacks, ProgressLinesCallback(history)]
    remaining = cfg.timesteps - model.num_timesteps
    if remaining > 0:
        try:
            model.learn(
                remaining,
                callback=[evaluation, periodic, *extra_callbacks],
                reset_num_timesteps=checkpoint is None,
                progress_bar=cfg.progress_bar,
            )
        except TrainingInterrupted:
            periodic.save()  # resumable from here, locally or from the run's artifacts
            checkpoints.log()
            raise
    if remaining > 0 and history and history[-1]["timesteps"] == model.num_timesteps:
        # scored while the last rollout was collected, before its update: not what is exported
        history.pop()
    evaluated = not history or history[-1]["timesteps"] != model.num_timesteps
    if evaluated:
        evaluation.evaluate()
    if remaining > 0 or evaluated or checkpoint is None:
        checkpoints.save(model, history, evaluation.elapsed)
    if not checkpoints.logged():
        checkpoints.log()
    return publish(client, run_id, cfg, scenario, model, scorer, evaluation, output_dir)


def _build_model(cfg: TrainConfig, scenario: Scenario) -> Any:
    """The model a fresh run starts from; a resumed run builds the same from the run's config
    and loads its checkpoint into it (nothing of the model comes from the checkpoint's code)."""
    hp = cfg.hyperparameters
    assert hp is not None
    spec = get_algorithm(cfg.algo)
    return spec.load()(
        spec.policy_class(hp.policy.mask_actions),
        _make_env(scenario, cfg, hp),
        seed=cfg.seed,
        device="cpu",
        verbose=0,
        **_algo_kwargs(cfg, hp, scenario),
    )


def _make_env(scenario: Scenario, cfg: TrainConfig, hp: HyperParameters) -> VecEnv:
    env: VecEnv = TwinVecEnv(
        scenario,
        n_envs=hp.env.n_envs,
        seed=cfg.seed,
        stagger=hp.env.stagger,
        expected_rewards=hp.env.expected_rewards,
        observation=cfg.observation,
    )
    if hp.env.normalize_reward:
        gamma = float(hp.algorithm.get("gamma", scenario.discount_factor))
        env = VecNormalize(env, norm_obs=False, norm_reward=True, gamma=gamma)
    return env


def _algo_kwargs(cfg: TrainConfig, hp: HyperParameters, scenario: Scenario) -> dict[str, Any]:
    kwargs = dict(hp.algorithm)
    kwargs.setdefault("gamma", scenario.discount_factor)
    rate = kwargs.get("learning_rate")
    if isinstance(rate, dict):
        if set(rate) != {"initial", "final"}:
            raise NBAValidationError(
                "learning_rate: a schedule needs exactly 'initial' and 'final'"
            )
        kwargs["learning_rate"] = LinearSchedule(float(rate["initial"]), float(rate["final"]), 1.0)
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[hp.policy.activation]
    kwargs["policy_kwargs"] = {"net_arch": list(hp.policy.net_arch), "activation_fn": activation}
    if hp.policy.mask_actions and get_algorithm(cfg.algo).masks_from_observation:
        kwargs["policy_kwargs"]["rule_mask"] = rule_mask_spec(scenario, cfg.observation)
    return kwargs


def _log_run_inputs(
    client: MlflowClient, run_id: str, cfg: TrainConfig, scenario: Scenario
) -> None:
    params = cfg.flat_params()
    params.update(
        {
            "scenario_name": scenario.name,
            "scenario_fingerprint": scenario.fingerprint(),
            "nba_version": nba.__version__,
            "git_commit": git_commit() or "unknown",
        }
    )
    log_params(client, run_id, params)
    assert cfg.hyperparameters is not None
    client.log_text(run_id, scenario.to_yaml(), "inputs/scenario.yaml")
    client.log_text(
        run_id,
        yaml.safe_dump(cfg.hyperparameters.model_dump(mode="json"), sort_keys=False),
        f"inputs/hyperparameters_{cfg.algo}.yaml",
    )
    client.log_text(run_id, cfg.model_dump_json(indent=2), "inputs/config.json")


# What ``resume`` may change: the step budget and settings that do not change what is learnt
# or how it is measured. Anything else that differs from the run's config is refused.
RESUME_APPLIES = frozenset(
    {
        "timesteps",
        "checkpoint_every_seconds",
        "checkpoint_dir",
        "torch_threads",
        "progress_bar",
        "register_model",
        "model_name",
    }
)


def _config_of_run(
    client: MlflowClient, run_id: str, given: dict[str, Any] | None = None
) -> tuple[str, TrainConfig]:
    """The stored config of an interrupted run, with ``given`` applied where it may be.

    A given value equal to the stored one is fine; one in :data:`RESUME_APPLIES` is applied
    (and the stored ``inputs/config.json`` updated, so a second resume keeps it); any other
    difference raises, naming the option, instead of being silently ignored.
    """
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MLflow raises its own exception types for unknown ids
        raise NBAValidationError(f"--resume: no run {run_id!r} ({exc})") from None
    if run.info.status == "FINISHED":
        raise NBAValidationError(f"--resume: run {run_id} already finished")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "inputs/config.json", tmp)
        cfg = TrainConfig.model_validate(json.loads(Path(path).read_text("utf-8")))
    changes: dict[str, Any] = {}
    for key, value in (given or {}).items():
        option = option_name(key)
        if key not in TrainConfig.model_fields:
            raise NBAValidationError(f"{option}: not a training setting")
        if key == "hyperparameters" and isinstance(value, str | Path):
            value = load_hyperparameters(Path(value), cfg.algo)
        current = getattr(cfg, key)
        if value == current:
            continue
        if key not in RESUME_APPLIES:
            if key == "hyperparameters":
                what = "other hyper-parameters; --resume cannot change them"
            else:
                what = f"{current!r}; --resume cannot change it to {value!r}"
            raise NBAValidationError(
                f"{option}: run {run_id} was trained with {what} (start a new run instead)"
            )
        changes[key] = value
    if changes:
        try:
            cfg = TrainConfig.model_validate({**cfg.model_dump(), **changes})
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0]) if error["loc"] else "resume"
            raise NBAValidationError(f"{option_name(field)}: {error['msg']}") from None
        client.log_text(run_id, cfg.model_dump_json(indent=2), "inputs/config.json")
        client.set_tag(
            run_id,
            "nba.resume.changed",
            ", ".join(f"{key}={value}" for key, value in sorted(changes.items()))[:5000],
        )
    return run_id, cfg


__all__ = ["TrainResult", "TrainingInterrupted", "train"]
