"""``nba train``: train a policy, compare it with the baselines and the optimum, record it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from nba.cli.options import JsonOption, ScenarioOption
from nba.cli.output import console, error_console, print_evaluation, stdout_to_stderr
from nba.errors import NBAValidationError


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``nba`` app."""
    app.command()(train)


def train(
    ctx: typer.Context,
    scenario: ScenarioOption = "retail",
    algo: Annotated[
        str, typer.Option("--algo", "-a", help="ppo, a2c, dqn or maskable_ppo.")
    ] = "ppo",
    timesteps: Annotated[int, typer.Option("--timesteps", "-t", min=1)] = 10_000_000,
    seed: Annotated[int, typer.Option("--seed", min=0)] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", help="Hyper-parameter YAML (default: packaged).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow URI (default ./mlflow.db).")
    ] = None,
    experiment: Annotated[str, typer.Option("--experiment")] = "nba",
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue an interrupted run by its id.")
    ] = None,
    eval_every: Annotated[
        int, typer.Option("--eval-every", min=1, help="Env steps between exact evaluations.")
    ] = 1_000_000,
    eval_customers: Annotated[int, typer.Option("--eval-customers", min=2)] = 20_000,
    checkpoint_every: Annotated[
        float, typer.Option("--checkpoint-every", help="Seconds between checkpoints.")
    ] = 30.0,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            help="torch intra-op threads (default 1: faster for these small networks, and far "
            "faster when the machine has other work).",
        ),
    ] = 1,
    register: Annotated[
        bool,
        typer.Option(
            "--register/--no-register",
            help="Register the policy in the Model Registry and move the 'candidate' alias to it.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Train a policy, compare it with every baseline and the optimum, record it in MLflow.

    SIGTERM or Ctrl-C saves a checkpoint, marks the run KILLED and prints how to resume it.
    With --resume, options not given come from the run; --timesteps sets a new total, and an
    option that would change what the run learns or measures is refused.
    """
    if not resume:  # a typo fails in a second, before torch loads or any store is created
        from nba.scenarios import load_scenario

        load_scenario(scenario)
        if config is not None and not config.is_file():
            raise NBAValidationError(f"--config: no such file {str(config)!r}")
    from nba.training.trainer import TrainingInterrupted
    from nba.training.trainer import train as run_training

    settings = _given_when_resuming(
        ctx,
        resume,
        scenario=scenario,
        algo=algo,
        timesteps=timesteps,
        seed=seed,
        config=config,
        experiment=experiment,
        eval_every_steps=eval_every,
        eval_customers=eval_customers,
        checkpoint_every_seconds=checkpoint_every,
        torch_threads=threads,
        register_model=register,
    )
    try:
        with stdout_to_stderr():  # stdout holds only the table, or only the JSON
            result = run_training(
                tracking_uri=tracking_uri,
                resume=resume,
                progress_bar=error_console.is_terminal,
                **settings,
            )
    except TrainingInterrupted as stopped:
        _report_interrupted(stopped, tracking_uri)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "model_uri": result.model_uri,
                    "model_version": result.model_version,
                    "table": json.loads(result.table.to_json(orient="records")),
                },
                indent=2,
            )
        )
        return
    print_evaluation(result.table, f"run {result.run_id}")
    registered = (
        f"model version {result.model_version} (alias 'candidate')"
        if result.model_version
        else "policy not registered (--register registers it as 'candidate')"
    )
    console.print(
        f"MLflow run {result.run_id}; {registered}.\n"
        "Open the UI with: nba ui   (then browse experiment "
        f"'{experiment}')"
    )


# ``nba train`` parameters whose names differ from the training function's
_TRAIN_PARAMETERS = {
    "eval_every_steps": "eval_every",
    "checkpoint_every_seconds": "checkpoint_every",
    "torch_threads": "threads",
    "register_model": "register",
}


def _given_when_resuming(ctx: typer.Context, resume: str | None, **settings: Any) -> dict[str, Any]:
    """Every setting for a new run; for --resume only those typed, so the run's own fill in."""
    if not resume:
        return settings
    given = {}
    for key, value in settings.items():
        # by name: typer vendors its own click, whose ParameterSource is not click's
        source = ctx.get_parameter_source(_TRAIN_PARAMETERS.get(key, key))
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            given[key] = value
    return given


def _report_interrupted(stopped: Any, tracking_uri: str | None) -> NoReturn:
    """Say which run stopped and the exact command that resumes it; exit 128 + signal."""
    import shlex

    from nba.tracking import resolve_tracking_uri

    command = f"nba train --resume {stopped.run_id}"
    if tracking_uri and tracking_uri != resolve_tracking_uri(None):
        command += f" --tracking-uri {shlex.quote(tracking_uri)}"
    typer.echo(
        f"{stopped.signal_name}: run {stopped.run_id} stopped, checkpoint saved, marked KILLED."
        f"\nResume it with:\n  {command}",
        err=True,
    )
    raise typer.Exit(128 + stopped.signal_number)
