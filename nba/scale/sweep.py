"""Hyper-parameter sweeps and one policy per twin, as Ray Tune trials recorded in MLflow.

:func:`sweep` draws ``trials`` settings from the search space declared beside the
hyper-parameter files (:mod:`nba.training.search_space`) with Tune's seeded random search, and
trains each with ``nba train``'s own trainer. Every exact evaluation of the learning curve is
reported to an ASHA scheduler, which stops the trials that trail at each rung. Each trial is
an MLflow child run under one parent run; the parent holds the trials table, their learning
curves and the best trial, whose policy is registered (alias ``candidate``).

:func:`train_twins` trains one policy per twin (a scenario YAML per market, brand or region,
as ``nba calibrate`` writes them) in parallel, each a child run registered under its own
name (``nba-<twin>``).

A trial's configuration is sampled from the seed, so a rerun draws the same settings. Which
trials ASHA stops depends on the order results arrive in, which two workers do not fix.
Each trial takes one CPU; a cluster of N CPUs runs N trials at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd

from nba.evaluation import DEFAULT_CUSTOMERS
from nba.scale import ScaleError, import_ray

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests children under their parent
TRIAL_TAG = "nba.sweep.trial"
KIND_TAG = "nba.sweep.kind"
STOPPED_TAG = "nba.sweep.stopped_at_step"
TABLE_ARTIFACT = "sweep/trials.json"
FIGURE_ARTIFACT = "sweep/learning_curves.png"
COMPLETED, STOPPED, FAILED = "completed", "stopped early", "failed"


@dataclass(frozen=True)
class TrialJob:
    """What every trial trains with (plain values: it travels to the trials)."""

    scenario: str  # a built-in name or an absolute path
    algo: str
    timesteps: int
    seed: int
    observation: str
    eval_every_steps: int
    eval_customers: int
    tracking_uri: str
    experiment: str
    parent_run_id: str
    output_dir: str  # absolute: a trial runs in its own working directory
    checkpoint_dir: str
    hyperparameters: dict[str, Any] | None = None  # the base the space's values go into
    space_text: str | None = None  # the search space's YAML, parsed again in the trial
    register: bool = False  # one policy per twin: each trial registers its own
    kind: str = "sweep"


@dataclass
class SweepResult:
    """What a sweep (or a twins run) produced."""

    parent_run_id: str
    trials: pd.DataFrame
    seconds: float
    best_run_id: str | None = None
    model_version: str | None = None
    model_name: str | None = None


class _Reporter:
    """Hands every learning-curve point before the last to Tune; the last (measured after
    the final update) is reported once the run has published its policy, so ASHA's stop at
    the full budget never cuts a finished trial short of its model."""

    def __init__(self, timesteps: int, report: Callable[[dict[str, Any]], None]) -> None:
        self.timesteps = timesteps
        self.report = report

    def __call__(self, point: dict[str, float]) -> None:
        if point["timesteps"] < self.timesteps:
            self.report(_metrics(point))


def _metrics(point: dict[str, float]) -> dict[str, Any]:
    return {
        "timesteps": int(point["timesteps"]),
        "value": float(point["value"]),
        "share_of_optimum": float(point["share_of_optimum"]),
    }


def run_trial(config: dict[str, Any], job: TrialJob) -> None:
    """One trial: train with the sampled settings (or the twin's scenario), report to Tune."""
    from ray import tune

    from nba.training.config import HyperParameters
    from nba.training.search_space import parse_search_space
    from nba.training.trainer import train

    scenario = config.get("scenario", job.scenario)
    hyperparameters = (
        None if job.hyperparameters is None else HyperParameters(**job.hyperparameters)
    )
    if job.space_text is not None and hyperparameters is not None:
        space = parse_search_space(job.space_text, job.algo, hyperparameters)
        hyperparameters = space.apply(config.get("hp", {}))
    trial_id = tune.get_context().get_trial_id() or "trial"
    result = train(
        scenario=scenario,
        algo=job.algo,
        timesteps=job.timesteps,
        seed=job.seed,
        config=hyperparameters,
        tracking_uri=job.tracking_uri,
        experiment=job.experiment,
        output_dir=job.output_dir,
        checkpoint_dir=job.checkpoint_dir,
        observation=job.observation,
        eval_every_steps=job.eval_every_steps,
        eval_customers=job.eval_customers,
        register_model=job.register,
        run_tags={PARENT_TAG: job.parent_run_id, TRIAL_TAG: trial_id, KIND_TAG: job.kind},
        on_evaluation=_Reporter(job.timesteps, tune.report),
    )
    final = _metrics(result.history[-1])
    final |= {"completed": 1, "run_id": result.run_id, "model_uri": result.model_uri or ""}
    final["model_version"] = result.model_version or ""
    tune.report(final)


def sweep(
    scenario: str = "retail",
    algo: str = "ppo",
    trials: int = 8,
    timesteps: int = 1_000_000,
    *,
    space: str | Path | None = None,
    config: str | Path | None = None,
    rungs: int = 3,
    reduction_factor: int = 2,
    seed: int = 0,
    observation: str = "state",
    eval_customers: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    max_concurrent: int | None = None,
    tracking_uri: str | None = None,
    experiment: str = "nba",
    register: bool = True,
    model_name: str | None = None,
    output_dir: str | Path = "nba-runs",
) -> SweepResult:
    """Tune ``trials`` settings of ``algo`` on ``scenario`` with ASHA; register the best.

    :param rungs: learning-curve points per trial: ASHA's first rung comes after
        ``timesteps / rungs`` steps, and each later point is another chance to stop a trial.
    :param reduction_factor: ASHA keeps the best ``1 / reduction_factor`` at each rung.
    :param config: the base hyper-parameters (default: what ``nba train`` uses).
    :param space: the search space YAML (default: the packaged one beside the base file).
    :param address: a Ray cluster's ``HOST:PORT``; ``None`` starts a local one of ``workers``
        CPUs (default: every core).
    :param max_concurrent: trials at a time (default: as many as the cluster's CPUs allow);
        1 runs them in their drawn order, so which ASHA stops no longer depends on timing.
    """
    from nba.scale.cluster import connect
    from nba.training.search_space import load_search_space

    _check_counts(
        trials=trials, timesteps=timesteps, rungs=rungs, reduction_factor=reduction_factor
    )
    _check_observation(observation)
    if max_concurrent is not None:
        _check_counts(max_concurrent=max_concurrent)
    loaded, base = _scenario_and_base(scenario, algo, config)
    search = load_search_space(algo, scenario, space, base)
    connect(address, num_cpus=workers, name="--address")
    client, uri = _client(tracking_uri)
    name = model_name or f"nba-{Path(scenario).stem}"
    parent = _parent_run(client, uri, experiment, f"sweep-{algo}-{loaded.name}", "sweep")
    _log_inputs(
        client,
        parent,
        {
            "scenario": loaded.name,
            "scenario_fingerprint": loaded.fingerprint(),
            "algo": algo,
            "trials": trials,
            "timesteps": timesteps,
            "rungs": rungs,
            "reduction_factor": reduction_factor,
            "seed": seed,
            "observation": observation,
            "space": search.where,
            **{f"space.{path}": text for path, text in search.describe().items()},
        },
        {"inputs/space.yaml": search.to_yaml(), "inputs/hyperparameters.yaml": _yaml(base)},
    )
    job = TrialJob(
        scenario=_resolved_scenario(scenario),
        algo=algo,
        timesteps=timesteps,
        seed=seed,
        observation=observation,
        eval_every_steps=max(1, timesteps // rungs),
        eval_customers=eval_customers or DEFAULT_CUSTOMERS,
        experiment=experiment,
        parent_run_id=parent,
        hyperparameters=base.model_dump(mode="json"),
        space_text=search.to_yaml(),
        **_paths(output_dir, uri),
    )
    began = time.perf_counter()
    grid = _fit(
        job,
        {"hp": search.tune_space()},
        trials,
        seed,
        _asha(timesteps, rungs, reduction_factor),
        f"sweep-{parent[:12]}",
        max_concurrent,
    )
    table = _trials_table(client, experiment, parent, grid, ("hp",))
    seconds = time.perf_counter() - began
    result = SweepResult(parent, table, seconds, model_name=name if register else None)
    completed = table[table["status"] == COMPLETED]
    if not completed.empty:
        best = completed.loc[completed["value"].idxmax()]
        result.best_run_id = str(best["run_id"])
        if register:
            from nba.training.publish import register_once

            result.model_version = register_once(
                client, result.best_run_id, name, str(best["model_uri"]), move_alias=True
            )
            table.loc[best.name, "model_version"] = result.model_version
    _close_parent(client, parent, result, "sweep")
    return result


def train_twins(
    scenarios: Sequence[str],
    algo: str = "ppo",
    timesteps: int = 1_000_000,
    *,
    config: str | Path | None = None,
    seed: int = 0,
    observation: str = "state",
    eval_every_steps: int | None = None,
    eval_customers: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    tracking_uri: str | None = None,
    experiment: str = "nba",
    register: bool = True,
    output_dir: str | Path = "nba-runs",
) -> SweepResult:
    """Train one policy per twin in parallel; each is registered as ``nba-<twin>``."""
    from nba.scale.cluster import connect

    if not scenarios:
        raise ScaleError("--scenario: give at least one twin")
    stems = [Path(s).stem for s in scenarios]
    repeated = sorted({stem for stem in stems if stems.count(stem) > 1})
    if repeated:
        raise ScaleError(
            f"--scenario: twins must have distinct names (each registers as nba-<name>); "
            f"{', '.join(repeated)} is given twice"
        )
    _check_counts(timesteps=timesteps)
    _check_observation(observation)
    resolved = [_resolved_scenario(s) for s in scenarios]
    bases = [_scenario_and_base(one, algo, config)[1] for one in resolved]  # each checked
    base = bases[0]
    connect(address, num_cpus=workers, name="--address")
    client, uri = _client(tracking_uri)
    parent = _parent_run(client, uri, experiment, f"twins-{algo}-{len(scenarios)}", "twins")
    _log_inputs(
        client,
        parent,
        {"algo": algo, "timesteps": timesteps, "seed": seed, "twins": ", ".join(stems)},
        {},
    )
    job = TrialJob(
        scenario=resolved[0],
        algo=algo,
        timesteps=timesteps,
        seed=seed,
        observation=observation,
        eval_every_steps=eval_every_steps or max(1, timesteps // 4),
        eval_customers=eval_customers or DEFAULT_CUSTOMERS,
        experiment=experiment,
        parent_run_id=parent,
        hyperparameters=None if config is None else base.model_dump(mode="json"),
        register=register,
        kind="twins",
        **_paths(output_dir, uri),
    )
    from ray import tune

    began = time.perf_counter()
    grid = _fit(
        job, {"scenario": tune.grid_search(resolved)}, 1, seed, None, f"twins-{parent[:12]}"
    )
    table = _trials_table(client, experiment, parent, grid, ("scenario",))
    result = SweepResult(parent, table, time.perf_counter() - began)
    _close_parent(client, parent, result, "twins")
    return result


def _check_observation(observation: str) -> None:
    if observation not in ("state", "belief"):
        raise ScaleError(f"--observation: expected state or belief, got {observation!r}")


def _check_counts(**counts: int) -> None:
    minimum = {"trials": 1, "timesteps": 1, "rungs": 1, "reduction_factor": 2, "max_concurrent": 1}
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum[name]:
            option = "--" + name.replace("_", "-")
            raise ScaleError(f"{option}: expected a whole number >= {minimum[name]}, got {value!r}")


def _resolved_scenario(scenario: str) -> str:
    """A path as every trial sees it (trials run in their own folders); a name as it is."""
    path = Path(scenario)
    return str(path.resolve()) if path.suffix in (".yaml", ".yml") or path.exists() else scenario


def _scenario_and_base(scenario: str, algo: str, config: str | Path | None) -> tuple[Any, Any]:
    from nba.scenarios import load_scenario
    from nba.training.config import default_hyperparameters, load_hyperparameters
    from nba.training.registry import ALGORITHMS

    if algo not in ALGORITHMS:
        raise ScaleError(
            f"--algo: unknown algorithm {algo!r}; expected one of {sorted(ALGORITHMS)}"
        )
    loaded = load_scenario(scenario)
    if config is not None:
        return loaded, load_hyperparameters(Path(config), algo)
    return loaded, default_hyperparameters(algo, scenario)


def _client(tracking_uri: str | None) -> tuple[Any, str]:
    """The store's client; also MLflow's current URI, as ``nba train`` sets it (registering a
    model goes through the fluent API)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from nba.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri), uri


def _parent_run(client: Any, uri: str, experiment: str, name: str, kind: str) -> str:
    from nba.tracking import ensure_experiment, run_tags

    experiment_id = ensure_experiment(client, experiment, uri)
    run = client.create_run(experiment_id, run_name=name, tags=run_tags({KIND_TAG: kind}))
    return str(run.info.run_id)


def _log_inputs(client: Any, run_id: str, params: dict[str, Any], texts: dict[str, str]) -> None:
    from nba.tracking import log_params

    log_params(client, run_id, {key: str(value) for key, value in params.items()})
    for path, text in texts.items():
        client.log_text(run_id, text, path)


def _yaml(hyperparameters: Any) -> str:
    import yaml

    return yaml.safe_dump(hyperparameters.model_dump(mode="json"), sort_keys=False)


class _Paths(TypedDict):
    tracking_uri: str
    output_dir: str
    checkpoint_dir: str


def _paths(output_dir: str | Path, uri: str) -> _Paths:
    """Where trials write, absolute: each trial runs in its own working directory."""
    out = Path(output_dir).resolve()
    return {
        "tracking_uri": _absolute_uri(uri),
        "output_dir": str(out),
        "checkpoint_dir": str(out / "checkpoints"),
    }


def _absolute_uri(uri: str) -> str:
    """A relative SQLite or file URI made absolute: trials run in their own folders."""
    for prefix in ("sqlite:///", "file://"):
        if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
            return prefix + str(Path(uri[len(prefix) :]).resolve())
    if "://" not in uri:
        return str(Path(uri).resolve())
    return uri


def _asha(timesteps: int, rungs: int, reduction_factor: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="timesteps",
        max_t=timesteps,
        grace_period=max(1, timesteps // rungs),
        reduction_factor=reduction_factor,
    )


def _fit(
    job: TrialJob,
    space: dict[str, Any],
    samples: int,
    seed: int,
    scheduler: Any,
    name: str,
    max_concurrent: int | None = None,
) -> Any:
    import_ray()
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="value",
            mode="max",
            num_samples=samples,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=seed),
            max_concurrent_trials=max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(Path(job.output_dir) / "tune"), verbose=0
        ),
    )
    return tuner.fit()


def _trials_table(
    client: Any, experiment: str, parent: str, grid: Any, keys: tuple[str, ...]
) -> pd.DataFrame:
    """One row per trial (its settings, status, last point, run), with stopped and failed
    trials' runs closed: Tune ends a stopped trial's process, so its run cannot close itself."""
    runs = _child_runs(client, experiment, parent)
    rows = []
    for number, trial in enumerate(grid):
        metrics = trial.metrics or {}
        run = runs.get(str(metrics.get("trial_id", "")))
        status = COMPLETED if metrics.get("completed") else FAILED if trial.error else STOPPED
        row: dict[str, Any] = {"trial": number, "status": status}
        for key in keys:
            value = trial.config.get(key)
            if isinstance(value, dict):
                row.update({path: _cell(v) for path, v in value.items()})
            elif value is not None:
                row[key] = Path(str(value)).stem
        row |= {
            "timesteps": metrics.get("timesteps"),
            "value": metrics.get("value"),
            "share_of_optimum": metrics.get("share_of_optimum"),
            "run_id": metrics.get("run_id") or (run.info.run_id if run else None),
            "model_uri": metrics.get("model_uri") or None,
            "model_version": metrics.get("model_version") or None,
            "error": str(trial.error).splitlines()[0][:300] if trial.error else None,
        }
        if run is not None and status != COMPLETED:
            _close_trial_run(client, run, status, row)
        rows.append(row)
    return pd.DataFrame(rows)


def _child_runs(client: Any, experiment: str, parent: str) -> dict[str, Any]:
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=5000
    )
    return {run.data.tags.get(TRIAL_TAG, ""): run for run in runs}


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _close_trial_run(client: Any, run: Any, status: str, row: dict[str, Any]) -> None:
    """A stopped trial's run is KILLED (resumable, like a run stopped by a signal), whether its
    process was ended before it could close the run (RUNNING) or while it was marking it
    FAILED with Tune's stop (a ``SystemExit``); a failed trial's run is FAILED with its error."""
    run_id = run.info.run_id
    if status == STOPPED:
        client.set_tag(run_id, STOPPED_TAG, str(row["timesteps"]))
        if "nba.error" in run.data.tags:
            client.delete_tag(run_id, "nba.error")
        client.set_terminated(run_id, "KILLED")
    elif run.info.status == "RUNNING":
        client.set_tag(run_id, "nba.error", row["error"] or "trial failed")
        client.set_terminated(run_id, "FAILED")


def _close_parent(client: Any, parent: str, result: SweepResult, kind: str) -> None:
    from nba.tracking import log_metrics, set_description

    table = result.trials
    counts = {
        status: int((table["status"] == status).sum()) for status in (COMPLETED, STOPPED, FAILED)
    }
    metrics: dict[str, Any] = {
        f"{kind}/seconds": result.seconds,
        f"{kind}/trials_completed": counts[COMPLETED],
        f"{kind}/trials_stopped_early": counts[STOPPED],
        f"{kind}/trials_failed": counts[FAILED],
    }
    if result.best_run_id is not None:
        best = table[table["run_id"] == result.best_run_id].iloc[0]
        metrics |= {"best/value": best["value"], "best/share_of_optimum": best["share_of_optimum"]}
        client.set_tag(parent, "nba.sweep.best_run_id", result.best_run_id)
    if result.model_version is not None:
        client.set_tag(parent, "nba.model_version", f"{result.model_name}/{result.model_version}")
    log_metrics(client, parent, metrics, step=0)
    shown = table.drop(columns=["model_uri"]).astype({"run_id": "string"})
    client.log_table(parent, shown, TABLE_ARTIFACT)
    _log_curves(client, parent, table, result.best_run_id)
    set_description(client, parent, _description(kind, counts, table, result))
    client.set_terminated(parent, "FINISHED" if counts[COMPLETED] else "FAILED")


def _description(
    kind: str, counts: dict[str, int], table: pd.DataFrame, result: SweepResult
) -> str:
    done = f"{counts[COMPLETED]} of {len(table)} trials completed"
    if kind == "sweep":
        done += f", {counts[STOPPED]} stopped early by ASHA"
    if counts[FAILED]:
        done += f", {counts[FAILED]} failed"
    if result.best_run_id is None:
        return f"{kind}: {done}; no trial finished."
    best = table[table["run_id"] == result.best_run_id].iloc[0]
    text = f"{kind}: {done}; best run {result.best_run_id} (value {best['value']:.3f}"
    text += f", share of optimum {best['share_of_optimum']:.3f})"
    if result.model_version:
        text += f", registered as {result.model_name} version {result.model_version}"
    return text + "."


def _log_curves(client: Any, parent: str, table: pd.DataFrame, best_run_id: str | None) -> None:
    import tempfile

    from nba.scale.sweep_figure import sweep_figure

    curves, best = {}, None
    for row in table.to_dict("records"):
        if isinstance(row["run_id"], str):
            # one point per step, the last logged (a step's point is redone after its update)
            history = client.get_metric_history(row["run_id"], "eval/value")
            points = {p.step: p.value for p in sorted(history, key=lambda p: (p.step, p.timestamp))}
            curves[int(row["trial"])] = (list(points), list(points.values()), str(row["status"]))
            if row["run_id"] == best_run_id:
                best = int(row["trial"])
    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_figure(curves, Path(tmp) / Path(FIGURE_ARTIFACT).name, best)
        client.log_artifact(parent, str(path), str(Path(FIGURE_ARTIFACT).parent))


def as_json(result: SweepResult) -> dict[str, Any]:
    """The result as plain JSON (the CLI's ``--json``)."""
    return {
        "parent_run_id": result.parent_run_id,
        "best_run_id": result.best_run_id,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "seconds": round(result.seconds, 3),
        "trials": json.loads(result.trials.to_json(orient="records")),
    }
