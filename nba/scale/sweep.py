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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from nba.evaluation import DEFAULT_CUSTOMERS
from nba.scale import ScaleError, import_ray
from nba.scale.sweep_record import (
    KIND_TAG,
    PARENT_TAG,
    TRIAL_TAG,
    SweepResult,
    client_for,
    close_parent,
    failing,
    log_inputs,
    parent_run,
    register_best,
    trials_table,
)


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
        1 runs them in their drawn order (ASHA's stops can still vary: a short trial may
        finish before Tune has read its last result).
    """
    from nba.scale.cluster import connect
    from nba.training.search_space import load_search_space

    counts = {"trials": trials, "timesteps": timesteps, "rungs": rungs}
    _check_counts(**counts, reduction_factor=reduction_factor, max_concurrent=max_concurrent or 1)
    _check_observation(observation)
    loaded, base = _scenario_and_base(scenario, algo, config)
    search = load_search_space(algo, scenario, space, base)
    connect(address, num_cpus=workers, name="--address")
    client, uri = client_for(tracking_uri)
    name = model_name or f"nba-{Path(scenario).stem}"
    parent = parent_run(client, uri, experiment, f"sweep-{algo}-{loaded.name}", "sweep")
    params = {"scenario": loaded.name, "scenario_fingerprint": loaded.fingerprint(), "algo": algo}
    params |= {"trials": trials, "timesteps": timesteps, "rungs": rungs, "seed": seed}
    params |= {"reduction_factor": reduction_factor, "observation": observation}
    params |= {"space": search.where, **{f"space.{k}": v for k, v in search.describe().items()}}
    texts = {"inputs/space.yaml": search.to_yaml(), "inputs/hyperparameters.yaml": _yaml(base)}
    log_inputs(client, parent, params, texts)
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
    with failing(client, parent):
        asha = _asha(timesteps, rungs, reduction_factor)
        param_space = {"hp": search.tune_space()}
        grid = _fit(job, param_space, trials, seed, asha, f"sweep-{parent[:12]}", max_concurrent)
        table = trials_table(client, experiment, parent, grid, ("hp",))
        result = SweepResult(parent, table, time.perf_counter() - began)
        result.model_name = name if register else None
        register_best(client, result, register)
        close_parent(client, parent, result, "sweep")
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
    client, uri = client_for(tracking_uri)
    parent = parent_run(client, uri, experiment, f"twins-{algo}-{len(scenarios)}", "twins")
    log_inputs(
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
    with failing(client, parent):
        param_space = {"scenario": tune.grid_search(resolved)}
        grid = _fit(job, param_space, 1, seed, None, f"twins-{parent[:12]}")
        table = trials_table(client, experiment, parent, grid, ("scenario",))
        result = SweepResult(parent, table, time.perf_counter() - began)
        close_parent(client, parent, result, "twins")
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
