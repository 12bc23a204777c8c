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
import math
import signal
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
import yaml
from mlflow.entities import LoggedModelStatus, RunStatus
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from pydantic import ValidationError
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import nba
from nba.envs import TwinVecEnv
from nba.errors import NBAValidationError
from nba.evaluation import ExactScorer, evaluate_policies
from nba.policies import make_baseline
from nba.progress import count, phase
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.serving import pyfunc
from nba.serving.export import export_policy, served_policy
from nba.serving.pyfunc import ARTIFACT_KEY, logged_model_fields
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import default_signing_key, load_exported
from nba.signals import handled
from nba.tracking import (
    ensure_experiment,
    git_commit,
    log_metrics,
    log_params,
    resolve_tracking_uri,
    run_tags,
    set_description,
)
from nba.training import figures
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
from nba.training.registry import get_algorithm
from nba.training.tracking import MLflowWriter

BASELINE_NAMES = ("no_action", "random", "journey_map", "myopic", "optimal")
CANDIDATE_ALIAS = "candidate"
TABLE_ARTIFACT = "evaluation/evaluation.json"  # MLflow table: the UI shows it as one
# The final phase's progress, so a resume after a kill repeats none of it (no second logged
# model, no second registered version): the step whose table, figures and summary metrics are
# logged, and the step whose model is logged, registered and aliased. The logged model carries
# its step as a tag, so a resume finds a model logged just before a kill.
FINAL_EVALUATED_TAG = "nba.final.evaluated_at_step"
FINAL_DONE_TAG = "nba.final.done_at_step"
MODEL_STEP_TAG = "nba.timesteps"


@dataclass
class TrainResult:
    """What a run produced."""

    run_id: str
    table: pd.DataFrame
    history: list[dict[str, float]]
    export_dir: Path
    model_uri: str | None = None
    model_version: str | None = None
    reached_target: dict[str, float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


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
    :param options: further :class:`TrainConfig` fields (``eval_every_steps``, ...).
    """
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    given: dict[str, Any] = {
        key: value
        for key, value in {
            "scenario": None if scenario is None else str(scenario),
            "algo": algo,
            "timesteps": timesteps,
            "seed": seed,
            "experiment": experiment,
            "hyperparameters": config,
        }.items()
        if value is not None
    }
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
        experiment_id = ensure_experiment(client, cfg.experiment, uri)
        run = client.create_run(
            experiment_id,
            run_name=f"{cfg.algo}-{loaded.name}-seed{cfg.seed}",
            tags=run_tags(
                {
                    "nba.scenario": loaded.name,
                    "nba.algo": cfg.algo,
                    MLFLOW_RUN_NOTE: f"{cfg.algo} on {loaded.name}, {count(cfg.timesteps)} steps, "
                    f"seed {cfg.seed}: training",
                }
            ),
        )
        run_id = run.info.run_id
        _log_run_inputs(client, run_id, cfg, loaded)

    checkpoints = RunCheckpoints(client, run_id, Path(cfg.checkpoint_dir) / run_id)
    # verified before the run is touched: a refused checkpoint leaves it as it was
    checkpoint = checkpoints.load(download=True) if resume else None
    stop = StopOnSignal()
    with _signals_to(stop.handler), mlflow.start_run(run_id=run_id):
        try:
            extra, folder = [*(callbacks or []), stop], Path(output_dir)
            result = _train_in_run(
                client, run_id, cfg, loaded, folder, extra, checkpoints, checkpoint
            )
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
) -> TrainResult:
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    model = _build_model(cfg, scenario)
    history: list[dict[str, float]] = []
    elapsed_before = 0.0
    if checkpoint is not None:
        checkpoint.restore(model)
        history = checkpoint.history
        elapsed_before = checkpoint.elapsed_seconds
        client.set_tag(run_id, "nba.resumed_at_step", str(model.num_timesteps))
    model.set_logger(Logger(folder=None, output_formats=[MLflowWriter(client, run_id)]))

    scorer = ExactScorer(scenario)
    evaluation = ExactEvaluationCallback(
        scorer,
        cfg.eval_every_steps,
        client,
        run_id,
        history,
        elapsed_before=elapsed_before,
        target_share=cfg.target_share,
        algo=cfg.algo,
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
    evaluated = not history or history[-1]["timesteps"] != model.num_timesteps
    if evaluated:
        evaluation.evaluate()
    if remaining > 0 or evaluated or checkpoint is None:
        checkpoints.save(model, history, evaluation.elapsed)
    if not checkpoints.logged():
        checkpoints.log()
    return _final_phase(client, run_id, cfg, scenario, model, scorer, evaluation, output_dir)


def _final_phase(
    client: MlflowClient,
    run_id: str,
    cfg: TrainConfig,
    scenario: Scenario,
    model: Any,
    scorer: ExactScorer,
    evaluation: ExactEvaluationCallback,
    output_dir: Path,
) -> TrainResult:
    """Table, figures, export, logged model and registration, each done once per step.

    A resume of a run killed during (or right after) this phase finds what was already
    recorded (the tags above, the logged model, the registered version of this run) and
    repeats none of it.
    """
    step = int(model.num_timesteps)
    tags = client.get_run(run_id).data.tags
    run_dir = output_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if tags.get(FINAL_EVALUATED_TAG) == str(step):
        table = _logged_table(client, run_id, run_dir)
    else:
        with phase(
            f"final evaluation: {1 + len(BASELINE_NAMES)} policies on "
            f"{cfg.eval_customers:,} customers, and exact scores"
        ):
            table, rollouts = _final_table(cfg, scenario, model, scorer)
        _log_table(client, run_id, table, run_dir, step, cfg.algo, scenario.name)
        with phase("figures: learning curve, journey flows, action mix"):
            _log_figures(
                client, run_id, scenario, cfg.algo, evaluation.history, table, rollouts, run_dir
            )
        summary = {"final/timesteps": step, "final/train_seconds": evaluation.elapsed}
        if evaluation.reached_at is not None:
            summary["final/seconds_to_target"] = evaluation.reached_at["elapsed_seconds"]
        log_metrics(client, run_id, summary, step=step)
        client.set_tag(run_id, FINAL_EVALUATED_TAG, str(step))
    env = model.get_env()
    export_dir = run_dir / "policy"
    value_scale = math.sqrt(env.ret_rms.var + env.epsilon) if isinstance(env, VecNormalize) else 1.0
    export_policy(
        model,
        scenario,
        export_dir,
        algo=cfg.algo,
        value_scale=value_scale,
        metadata={"mlflow_run_id": run_id, "timesteps": step},
        signing_key=default_signing_key(),  # signed when NBA_SIGNING_KEY is set
    )
    with phase(
        "exporting and registering the policy"
        if cfg.register_model
        else "exporting and logging the policy"
    ):
        model_uri = _logged_policy(client, run_id, step) or _log_pyfunc(
            client, run_id, scenario, export_dir, step
        )
        version = None
        if cfg.register_model:
            first_time = tags.get(FINAL_DONE_TAG) != str(step)
            version = _register_once(client, run_id, cfg, model_uri, move_alias=first_time)
    client.set_tag(run_id, FINAL_DONE_TAG, str(step))
    return TrainResult(
        run_id=run_id,
        table=table,
        history=evaluation.history,
        export_dir=export_dir,
        model_uri=model_uri,
        model_version=version,
        reached_target=evaluation.reached_at,
    )


def _logged_table(client: MlflowClient, run_id: str, folder: Path) -> pd.DataFrame:
    """The final table this run already logged (a resume after its final evaluation)."""
    path = client.download_artifacts(run_id, "evaluation/evaluation.csv", str(folder))
    return pd.read_csv(path)


def _logged_policy(client: MlflowClient, run_id: str, step: int) -> str | None:
    """The URI of the policy this run logged at ``step``, if a killed attempt got that far."""
    experiment_id = client.get_run(run_id).info.experiment_id
    for logged in client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    ):
        if (
            logged.name == "policy"
            and logged.status == LoggedModelStatus.READY
            and logged.tags.get(MODEL_STEP_TAG) == str(step)
        ):
            return logged.model_uri
    return None


def _register_once(
    client: MlflowClient, run_id: str, cfg: TrainConfig, model_uri: str, move_alias: bool
) -> str:
    """This run's registered version of ``model_uri``: the existing one, else a new one.

    The ``candidate`` alias moves to it when the version is new or the run's final phase had
    not finished (a kill between registering and aliasing); never back onto an older version.
    """
    name = cfg.registered_model_name
    model_id = model_uri.removeprefix("models:/")
    existing = [
        found
        for found in client.search_model_versions(f"run_id = '{run_id}'")
        if found.name == name
        and model_id in (found.model_id, found.source.removeprefix("models:/"))
    ]
    if existing:
        version = str(max(int(found.version) for found in existing))
    else:
        version = str(mlflow.register_model(model_uri, name).version)
        move_alias = True
    if move_alias:
        client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
    client.set_tag(run_id, "nba.model_version", version)
    return version


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
        kwargs["policy_kwargs"]["rule_mask"] = rule_mask_spec(scenario)
    return kwargs


def _final_table(
    cfg: TrainConfig, scenario: Scenario, model: Any, scorer: ExactScorer
) -> tuple[pd.DataFrame, dict[str, Any]]:
    learned = served_policy(model, scenario, algo=cfg.algo)  # what the scorer will serve
    policies: dict[str, Any] = {cfg.algo: learned}
    policies.update({name: name for name in BASELINE_NAMES})
    report = evaluate_policies(
        scenario, policies, n_customers=cfg.eval_customers, seed=cfg.eval_seed
    )
    exact = {cfg.algo: scorer.score(learned)}
    for name in ("no_action", "journey_map", "myopic", "optimal"):
        exact[name] = scorer.score(make_baseline(name, scorer.twin))
    table = report.table.copy()
    table["exact_value"] = [exact[p].value if p in exact else np.nan for p in table["policy"]]
    table["exact_share_of_optimum"] = [
        exact[p].share_of_optimum if p in exact else np.nan for p in table["policy"]
    ]
    return table, report.rollouts


def _log_table(
    client: MlflowClient,
    run_id: str,
    table: pd.DataFrame,
    folder: Path,
    step: int,
    algo: str,
    scenario_name: str,
) -> None:
    """The comparison table as an MLflow table (and CSV), a few headline metrics, the note.

    Every KPI of every policy stays in the table artifact, where the UI shows it as a table;
    as metrics only the numbers compared across runs: each policy's value and share of the
    optimum, and the learned policy's exact share.
    """
    csv_path, json_path = folder / "evaluation.csv", folder / "evaluation.json"
    table.to_csv(csv_path, index=False)
    client.log_artifact(run_id, str(csv_path), "evaluation")
    logged = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    if TABLE_ARTIFACT in logged:  # a resumed run replaces its table (log_table would append)
        json_path.write_text(table.to_json(orient="split", index=False))
        client.log_artifact(run_id, str(json_path), "evaluation")
    else:
        client.log_table(run_id, table, TABLE_ARTIFACT)
    values: dict[str, float] = {}
    for row in table.to_dict(orient="records"):
        for key in ("value", "share_of_optimum"):
            values[f"final/{row['policy']}/{key}"] = row[key]
    rows = table.set_index("policy")
    if "exact_share_of_optimum" in rows and algo in rows.index:
        values[f"final/{algo}/exact_share_of_optimum"] = rows.loc[algo, "exact_share_of_optimum"]
    log_metrics(client, run_id, values, step=step)
    set_description(client, run_id, _run_description(algo, scenario_name, step, rows))


def _run_description(algo: str, scenario_name: str, steps: int, rows: pd.DataFrame) -> str:
    """``ppo on retail, 30.0M steps: exact share 0.962 of the optimum (value 39.6 vs 22.2 no
    action)``: exact numbers where the table has them, else the cohort's."""
    exact = "exact_share_of_optimum" in rows and pd.notna(rows.loc[algo, "exact_share_of_optimum"])
    share_key, value_key = (
        ("exact_share_of_optimum", "exact_value") if exact else ("share_of_optimum", "value")
    )
    text = (
        f"{algo} on {scenario_name}, {count(steps)} steps: {'exact ' if exact else ''}share "
        f"{rows.loc[algo, share_key]:.3f} of the optimum (value {rows.loc[algo, value_key]:.1f}"
    )
    if "no_action" in rows.index:
        text += f" vs {rows.loc['no_action', value_key]:.1f} no action"
    return text + ")"


def _log_figures(
    client: MlflowClient,
    run_id: str,
    scenario: Scenario,
    algo: str,
    history: list[dict[str, float]],
    table: pd.DataFrame,
    rollouts: dict[str, Any],
    folder: Path,
) -> None:
    shares = table.set_index("policy")["exact_share_of_optimum"]
    references = {name: float(shares[name]) for name in ("myopic", "journey_map") if name in shares}
    compared = {name: rollouts[name] for name in (algo, "journey_map", "optimal")}
    mixes = {name: rollouts[name] for name in (algo, "optimal")}
    paths = [
        figures.learning_curve(history, references, folder / "learning_curve.png"),
        figures.journey_flow(scenario, compared, folder / "journey_flow.html"),
        figures.flow_matrices(scenario, compared, folder / "journey_flow.png"),
        figures.action_mix(scenario, mixes, folder / "action_mix.png"),
    ]
    for path in paths:
        client.log_artifact(run_id, str(path), "figures")


def _log_pyfunc(
    client: MlflowClient, run_id: str, scenario: Scenario, export_dir: Path, step: int
) -> str:
    # the export was written a moment ago from this scenario: check it against it
    scorer = PolicyScorer(load_exported(export_dir, trusted_scenario=scenario))
    with warnings.catch_warnings():
        # integer columns are intended: the scorer rejects missing values with a clear error
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        info = mlflow.pyfunc.log_model(
            name="policy",
            python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),  # no pickling
            artifacts={ARTIFACT_KEY: str(export_dir)},
            model_config={"model_version": f"run:{run_id}"},
            **logged_model_fields(scorer),  # no input schema: MLflow drops no field
            pip_requirements=[f"nba=={nba.__version__}", "numpy", "pandas"],
            tags={MODEL_STEP_TAG: str(step)},  # registration: _register_once, once
        )
    return info.model_uri


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
