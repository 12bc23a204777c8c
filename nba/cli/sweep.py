"""``nba sweep`` and ``nba train-twins``: many trainings at once on Ray, recorded in MLflow.

``sweep`` tunes one algorithm on one scenario with Ray Tune and ASHA over the search space
beside the hyper-parameter files; ``train-twins`` trains one policy per calibrated twin. Both
need ``pip install nba[ray]`` (:mod:`nba.scale.sweep`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nba.cli.decide_scale import AddressOption
from nba.cli.options import JsonOption, ScenarioOption, TrackingUriOption
from nba.cli.output import console, stdout_to_stderr

AlgoOption = Annotated[
    str, typer.Option("--algo", "-a", help="Algorithm: ppo, a2c, dqn or maskable_ppo.")
]
TimestepsOption = Annotated[
    int, typer.Option("--timesteps", "-t", min=1, help="Env steps per trial (ASHA's budget).")
]
SeedOption = Annotated[int, typer.Option("--seed", min=0, help="Seed of the draws and trials.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Base hyper-parameter YAML (default: nba train's)."),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers", min=1, help="Trials at a time on a local cluster (default: every core)."
    ),
]
ExperimentOption = Annotated[str, typer.Option("--experiment", help="MLflow experiment.")]
RegisterOption = Annotated[
    bool,
    typer.Option("--register/--no-register", help="Register the policy (alias 'candidate')."),
]
ObservationOption = Annotated[
    str, typer.Option("--observation", help="state or belief (as nba train).")
]
OutputOption = Annotated[
    Path,
    typer.Option("--output-dir", help="Local folder for exports, checkpoints and Tune's files."),
]


def register(app: typer.Typer) -> None:
    """Add ``sweep`` and ``train-twins`` to the ``nba`` app."""
    app.command()(sweep)
    app.command("train-twins")(train_twins)


def sweep(
    scenario: ScenarioOption = "retail",
    algo: AlgoOption = "ppo",
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Settings to try.")] = 8,
    timesteps: TimestepsOption = 1_000_000,
    space: Annotated[
        Path | None,
        typer.Option("--space", help="Search space YAML (default: <algo>.space.yaml, packaged)."),
    ] = None,
    config: ConfigOption = None,
    rungs: Annotated[
        int, typer.Option("--rungs", min=1, help="Evaluations per trial; ASHA may stop at each.")
    ] = 3,
    reduction_factor: Annotated[
        int, typer.Option("--reduction-factor", min=2, help="ASHA keeps 1/this at each rung.")
    ] = 2,
    seed: SeedOption = 0,
    observation: ObservationOption = "state",
    address: AddressOption = None,
    workers: WorkersOption = None,
    max_concurrent: Annotated[
        int | None,
        typer.Option(
            "--max-concurrent",
            min=1,
            help="Trials at a time (default: one per CPU); 1 runs them in their drawn order.",
        ),
    ] = None,
    experiment: ExperimentOption = "nba",
    tracking_uri: TrackingUriOption = None,
    register_best: RegisterOption = True,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="Registered name (default: nba-SCENARIO).")
    ] = None,
    output_dir: OutputOption = Path("nba-runs"),
    as_json: JsonOption = False,
) -> None:
    """Tune an algorithm on a scenario: Ray Tune trials, ASHA early stopping, MLflow child runs.

    Each trial trains as `nba train` does, with settings drawn from the search space; every
    evaluation is a rung where ASHA stops the trials that trail. The best completed trial's
    policy is registered. Review it in the MLflow UI: the parent run holds the trials table and
    every learning curve, the children are the trials.
    """
    from nba.scale.sweep import sweep as run_sweep

    with stdout_to_stderr():  # stdout holds only the table, or only the JSON
        result = run_sweep(
            scenario,
            algo,
            trials,
            timesteps,
            space=space,
            config=config,
            rungs=rungs,
            reduction_factor=reduction_factor,
            seed=seed,
            observation=observation,
            address=address,
            workers=workers,
            max_concurrent=max_concurrent,
            tracking_uri=tracking_uri,
            experiment=experiment,
            register=register_best,
            model_name=model_name,
            output_dir=output_dir,
        )
    _print(result, as_json, "sweep")


def train_twins(
    scenarios: Annotated[
        list[str],
        typer.Option("--scenario", "-s", help="A twin (scenario YAML or name); give one per twin."),
    ],
    algo: AlgoOption = "ppo",
    timesteps: TimestepsOption = 1_000_000,
    config: ConfigOption = None,
    seed: SeedOption = 0,
    observation: ObservationOption = "state",
    address: AddressOption = None,
    workers: WorkersOption = None,
    experiment: ExperimentOption = "nba",
    tracking_uri: TrackingUriOption = None,
    register_each: RegisterOption = True,
    output_dir: OutputOption = Path("nba-runs"),
    as_json: JsonOption = False,
) -> None:
    """Train one policy per twin (market, brand, region) in parallel on Ray.

    Each twin is a child run of one parent run and is registered as nba-<twin> (alias
    'candidate'), so each market's scorer loads models:/nba-<twin>@candidate.
    """
    from nba.scale.sweep import train_twins as run_twins

    with stdout_to_stderr():
        result = run_twins(
            scenarios,
            algo,
            timesteps,
            config=config,
            seed=seed,
            observation=observation,
            address=address,
            workers=workers,
            tracking_uri=tracking_uri,
            experiment=experiment,
            register=register_each,
            output_dir=output_dir,
        )
    _print(result, as_json, "twins")


def _print(result: Any, as_json: bool, kind: str) -> None:
    from nba.scale.sweep_record import as_json as payload

    if as_json:
        typer.echo(json.dumps(payload(result), indent=2))
        return
    shown = result.trials.drop(columns=["model_uri", "error"], errors="ignore")
    console.print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    line = f"{kind} in {result.seconds:.0f} s; parent MLflow run {result.parent_run_id}"
    if result.best_run_id:
        line += f"; best run {result.best_run_id}"
    if result.model_version:
        line += f", registered as {result.model_name} version {result.model_version}"
    console.print(line + ".")
