"""``train``: learn a policy on the twin, prove it against baselines and the optimum, record it.

Every run is an MLflow run: flattened config, scenario hash and git commit as params; scenario
YAML, hyper-parameters and config as artifacts; SB3 metrics through :class:`MLflowWriter`;
exact periodic evaluation; the final comparison table (CSV, JSON and metrics); figures; and the
exported policy as a pyfunc model registered under ``nba-<scenario>`` with alias ``candidate``.
A run that fails is marked FAILED with the error; ``resume`` continues a killed run.
"""

from __future__ import annotations

import json
import math
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
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import get_linear_fn
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import nba
from nba.envs import TwinVecEnv
from nba.errors import NBAValidationError
from nba.evaluation import ExactScorer, evaluate_policies
from nba.policies import SB3Policy, make_baseline
from nba.scenario import Scenario
from nba.scenarios import load_scenario
from nba.serving import pyfunc
from nba.serving.export import export_policy
from nba.serving.pyfunc import ARTIFACT_KEY, example_input
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import load_exported
from nba.training import figures
from nba.training.callbacks import (
    AtomicCheckpointCallback,
    ExactEvaluationCallback,
    load_checkpoint_state,
    save_checkpoint,
)
from nba.training.config import HyperParameters, TrainConfig, load_hyperparameters
from nba.training.registry import get_algorithm
from nba.training.tracking import (
    MLflowWriter,
    ensure_experiment,
    git_commit,
    log_metrics,
    log_params,
    resolve_tracking_uri,
)

BASELINE_NAMES = ("no_action", "random", "journey_map", "myopic", "optimal")
CANDIDATE_ALIAS = "candidate"


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
    scenario: str = "retail",
    algo: str = "ppo",
    timesteps: int = 10_000_000,
    seed: int = 0,
    config: str | Path | HyperParameters | None = None,
    tracking_uri: str | None = None,
    experiment: str = "nba",
    resume: str | None = None,
    output_dir: str | Path = "nba-runs",
    callbacks: list[Any] | None = None,
    **options: Any,
) -> TrainResult:
    """Train ``algo`` on ``scenario`` for ``timesteps`` env steps; return run id and table.

    :param config: hyper-parameter YAML path (or a :class:`HyperParameters`); default: the
        packaged file for this algorithm and scenario.
    :param tracking_uri: MLflow URI; default ``MLFLOW_TRACKING_URI`` or ``./mlflow.db``.
    :param resume: id of an interrupted run to continue from its last checkpoint.
    :param options: further :class:`TrainConfig` fields (``eval_every_steps``, ...).
    """
    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    if resume:
        run_id, cfg = _config_of_run(client, resume)
    else:
        hyperparameters = (
            load_hyperparameters(Path(config), algo) if isinstance(config, str | Path) else config
        )
        cfg = TrainConfig(
            scenario=str(scenario),
            algo=algo,
            timesteps=timesteps,
            seed=seed,
            hyperparameters=hyperparameters,
            experiment=experiment,
            **options,
        ).resolved()
        run_id = None
    loaded = load_scenario(cfg.scenario)
    if run_id is None:
        experiment_id = ensure_experiment(client, cfg.experiment, uri)
        run = client.create_run(
            experiment_id,
            run_name=f"{cfg.algo}-{loaded.name}-seed{cfg.seed}",
            tags={"nba.scenario": loaded.name, "nba.algo": cfg.algo},
        )
        run_id = run.info.run_id
        _log_run_inputs(client, run_id, cfg, loaded)

    with mlflow.start_run(run_id=run_id):
        try:
            return _train_in_run(
                client, run_id, cfg, loaded, Path(output_dir), callbacks or [], bool(resume)
            )
        except BaseException as exc:
            client.set_tag(run_id, "nba.error", f"{type(exc).__name__}: {exc}"[:5000])
            raise


def _train_in_run(
    client: MlflowClient,
    run_id: str,
    cfg: TrainConfig,
    scenario: Scenario,
    output_dir: Path,
    extra_callbacks: list[Any],
    resumed: bool,
) -> TrainResult:
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    hp = cfg.hyperparameters
    assert hp is not None
    spec = get_algorithm(cfg.algo)
    env = _make_env(scenario, cfg, hp)
    checkpoint_dir = Path(cfg.checkpoint_dir) / run_id
    state = load_checkpoint_state(checkpoint_dir)
    if state is None and resumed:
        state = _download_checkpoint(client, run_id, checkpoint_dir)
    if state is None:
        model = spec.load()(
            "MlpPolicy",
            env,
            seed=cfg.seed,
            device="cpu",
            verbose=0,
            **_algo_kwargs(cfg, hp, scenario),
        )
        history: list[dict[str, float]] = []
        elapsed_before = 0.0
    else:
        model = spec.load().load(checkpoint_dir / "model.zip", env=env, device="cpu")
        if isinstance(env, VecNormalize) and "reward_normalizer" in state:
            stats = state["reward_normalizer"]
            env.ret_rms.mean, env.ret_rms.var, env.ret_rms.count = (
                stats["mean"],
                stats["var"],
                stats["count"],
            )
        history = list(state["history"])
        elapsed_before = float(state["elapsed_seconds"])
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
    checkpoint = AtomicCheckpointCallback(
        checkpoint_dir, cfg.checkpoint_every_seconds, history, lambda: evaluation.elapsed
    )
    remaining = cfg.timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(
            remaining,
            callback=[evaluation, checkpoint, *extra_callbacks],
            reset_num_timesteps=state is None,
            progress_bar=cfg.progress_bar,
        )
    if not history or history[-1]["timesteps"] != model.num_timesteps:
        evaluation.evaluate()
    save_checkpoint(model, checkpoint_dir, history, evaluation.elapsed)
    client.log_artifacts(run_id, str(checkpoint_dir), "checkpoint")

    run_dir = output_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    table, rollouts = _final_table(cfg, scenario, model, scorer)
    _log_table(client, run_id, table, run_dir, model.num_timesteps)
    _log_figures(client, run_id, scenario, cfg.algo, history, table, rollouts, run_dir)
    export_dir = run_dir / "policy"
    value_scale = math.sqrt(env.ret_rms.var + env.epsilon) if isinstance(env, VecNormalize) else 1.0
    export_policy(
        model,
        scenario,
        export_dir,
        algo=cfg.algo,
        value_scale=value_scale,
        metadata={"mlflow_run_id": run_id, "timesteps": int(model.num_timesteps)},
    )
    model_uri, version = _log_pyfunc(client, run_id, cfg, export_dir)
    summary = {
        "final/timesteps": model.num_timesteps,
        "final/train_seconds": evaluation.elapsed,
    }
    if evaluation.reached_at is not None:
        summary["final/seconds_to_target"] = evaluation.reached_at["elapsed_seconds"]
    log_metrics(client, run_id, summary, step=model.num_timesteps)
    return TrainResult(
        run_id=run_id,
        table=table,
        history=history,
        export_dir=export_dir,
        model_uri=model_uri,
        model_version=version,
        reached_target=evaluation.reached_at,
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
        kwargs["learning_rate"] = get_linear_fn(float(rate["initial"]), float(rate["final"]), 1.0)
    activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[hp.policy.activation]
    kwargs["policy_kwargs"] = {"net_arch": list(hp.policy.net_arch), "activation_fn": activation}
    return kwargs


def _final_table(
    cfg: TrainConfig, scenario: Scenario, model: Any, scorer: ExactScorer
) -> tuple[pd.DataFrame, dict[str, Any]]:
    learned = SB3Policy(model, cfg.algo)
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
    client: MlflowClient, run_id: str, table: pd.DataFrame, folder: Path, step: int
) -> None:
    csv_path, json_path = folder / "evaluation.csv", folder / "evaluation.json"
    table.to_csv(csv_path, index=False)
    json_path.write_text(table.to_json(orient="records", indent=2))
    client.log_artifact(run_id, str(csv_path), "evaluation")
    client.log_artifact(run_id, str(json_path), "evaluation")
    values: dict[str, float] = {}
    for row in table.to_dict(orient="records"):
        for key, value in row.items():
            if key != "policy":
                values[f"final/{row['policy']}/{key}"] = value
    log_metrics(client, run_id, values, step=step)


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
    paths = [
        figures.learning_curve(history, references, folder / "learning_curve.png"),
        figures.journey_flow(scenario, compared, folder / "journey_flow.html"),
        figures.flow_matrices(scenario, compared, folder / "journey_flow.png"),
        figures.action_mix(scenario, rollouts[algo], folder / "action_mix.png"),
    ]
    for path in paths:
        client.log_artifact(run_id, str(path), "figures")


def _log_pyfunc(
    client: MlflowClient, run_id: str, cfg: TrainConfig, export_dir: Path
) -> tuple[str, str | None]:
    scorer = PolicyScorer(load_exported(export_dir))
    example = example_input(scorer)
    with warnings.catch_warnings():
        # integer columns are intended: the scorer rejects missing values with a clear error
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(example, scorer.score_batch(example))
        info = mlflow.pyfunc.log_model(
            name="policy",
            python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),  # no pickling
            artifacts={ARTIFACT_KEY: str(export_dir)},
            model_config={"model_version": f"run:{run_id}"},
            signature=signature,
            input_example=example,
            pip_requirements=[f"nba=={nba.__version__}", "numpy", "pandas"],
            registered_model_name=cfg.registered_model_name if cfg.register_model else None,
        )
    version = None
    if cfg.register_model:
        version = str(info.registered_model_version)
        client.set_registered_model_alias(cfg.registered_model_name, CANDIDATE_ALIAS, version)
        client.set_tag(run_id, "nba.model_version", version)
    return info.model_uri, version


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


def _config_of_run(client: MlflowClient, run_id: str) -> tuple[str, TrainConfig]:
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MLflow raises its own exception types for unknown ids
        raise NBAValidationError(f"--resume: no run {run_id!r} ({exc})") from None
    if run.info.status == "FINISHED":
        raise NBAValidationError(f"--resume: run {run_id} already finished")
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "inputs/config.json", tmp)
        cfg = TrainConfig.model_validate(json.loads(Path(path).read_text("utf-8")))
    return run_id, cfg


def _download_checkpoint(
    client: MlflowClient, run_id: str, directory: Path
) -> dict[str, Any] | None:
    """Fetch the run's last logged checkpoint (resuming on another machine)."""
    try:
        client.download_artifacts(run_id, "checkpoint", str(directory.parent / f".{run_id}-dl"))
    except Exception:  # no checkpoint logged yet: a fresh start
        return None
    downloaded = directory.parent / f".{run_id}-dl" / "checkpoint"
    if not (downloaded / "state.json").is_file():
        return None
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("model.zip", "state.json"):
        (downloaded / name).replace(directory / name)
    return load_checkpoint_state(directory)


__all__ = ["TrainResult", "train"]
