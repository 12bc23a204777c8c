"""The ``nba`` command line. Every command has ``--help``; table output also has ``--json``."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nba.cli_calibrate import register as register_calibration
from nba.cli_ope import register as register_ope
from nba.errors import NBAError, NBAValidationError
from nba.progress import LineProgress

app = typer.Typer(
    name="nba",
    help="Next-best-action optimisation on a customer digital twin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)  # piped output: lines as long as they are, not cut at 80
error_console = Console(stderr=True)

ScenarioOption = Annotated[
    str, typer.Option("--scenario", "-s", help="Built-in scenario name or path to a YAML file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


TrackingUriOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow store for models:/ and runs:/ URIs."),
]
TrustedScenarioOption = Annotated[
    str | None,
    typer.Option(
        "--trusted-scenario",
        help="Built-in scenario name or YAML file the model must have been trained on: an "
        "export whose consent, contact rules or anything else differ is refused.",
    ),
]


@app.command()
def scenarios(as_json: JsonOption = False) -> None:
    """List the built-in scenarios and the size of their state spaces."""
    from nba.scenarios import builtin_scenario_names, load_scenario
    from nba.twin import CustomerTwin

    rows = []
    for name in builtin_scenario_names():
        twin = CustomerTwin(load_scenario(name), tabulate=False)
        sc = twin.scenario
        rows.append(
            {
                "scenario": name,
                "personas": len(sc.personas),
                "stages": len(sc.stages),
                "actions": len(sc.action_names),
                "states": twin.space.size,
                "horizon_days": sc.horizon_days,
            }
        )
    _emit(rows, as_json, title="Built-in scenarios")


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="Scenario YAML file to check.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a scenario file; print its fingerprint, or the problems field by field."""
    from nba.cli_inputs import check_input, reading
    from nba.scenarios import load_scenario

    check_input(path, "PATH")
    with reading("PATH", path):
        scenario = load_scenario(path)
    _emit([{"scenario": scenario.name, "fingerprint": scenario.fingerprint()}], as_json, "Valid")


@app.command()
def solve(
    scenario: ScenarioOption = "retail",
    as_json: JsonOption = False,
) -> None:
    """Solve a finite scenario exactly by dynamic programming; compare with "no action"."""
    from nba import optimal
    from nba.kernel import build_kernel
    from nba.scenarios import load_scenario

    loaded = load_scenario(scenario)
    started = time.perf_counter()
    kernel = build_kernel(loaded)
    built = time.perf_counter()
    best = optimal.solve(kernel)
    solved = time.perf_counter()
    idle = optimal.evaluate(kernel, optimal.no_action_policy(kernel))
    rows = [
        {"policy": "optimal (DP)", "value_per_customer": round(best.value, 4)},
        {"policy": "no action", "value_per_customer": round(idle.value, 4)},
    ]
    if as_json:
        payload = {
            "scenario": loaded.name,
            "fingerprint": loaded.fingerprint(),
            "states": kernel.n_states,
            "actions": kernel.n_actions,
            "horizon_days": kernel.horizon,
            "discount_factor": kernel.discount,
            "kernel_seconds": round(built - started, 3),
            "solve_seconds": round(solved - built, 3),
            "policies": rows,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _emit(rows, False, title=f"Scenario '{loaded.name}': expected discounted value per customer")
    console.print(
        f"{kernel.n_states:,} states x {kernel.n_actions} actions x {kernel.horizon} days; "
        f"kernel {built - started:.2f}s, dynamic programming {solved - built:.2f}s. "
        f"The optimum is worth {best.value - idle.value:+.2f} per customer over doing nothing."
    )


PoliciesOption = Annotated[
    str,
    typer.Option(
        "--policies",
        "-p",
        help="Comma-separated baselines: no_action, random, journey_map, myopic, optimal.",
    ),
]
CustomersOption = Annotated[int, typer.Option("--customers", "-n", min=2, help="Cohort size.")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the evaluation cohort.")]


@app.command()
def evaluate(
    scenario: Annotated[
        str | None,
        typer.Option(
            "--scenario",
            "-s",
            help="Built-in scenario name or path to a YAML file (default: retail, or the "
            "scenario a --model was trained on).",
        ),
    ] = None,
    policies: PoliciesOption = "no_action,random,journey_map,myopic,optimal",
    customers: CustomersOption = 20_000,
    seed: SeedOption = 20_261_123,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="A trained policy to add to the table, as served: models:/NAME@ALIAS, "
            "models:/NAME/VERSION, runs:/RUN_ID/policy, a run id or an export directory "
            "(repeat for several). Without --scenario, its own scenario.",
        ),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow URI (default ./mlflow.db).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Evaluate policies on one fixed cohort with common random numbers; print the table."""
    from nba.evaluation import evaluate_policies

    named: dict[str, Any] = {name: name for name in _split_names(policies, "--policies")}
    if model:
        from nba.cli_inputs import load_scorer

        for source in model:
            scorer = load_scorer(_model_uri(source), tracking_uri)
            scenario = _scenario_for_model(scenario, scorer)
            label = str(scorer.model_version) if len(model) > 1 else "model"
            if label in named:  # two exports of one run, or two local folders
                label = source
            named[label] = scorer.as_policy(label)
    with _progress(True) as progress:  # on stderr: never mixed into --json
        task = progress.add_task(f"evaluating policies on {customers:,} customers", total=None)
        report = evaluate_policies(
            scenario or "retail",
            named,
            n_customers=customers,
            seed=seed,
            on_day=lambda name, day: progress.update(task, description=f"{name}: day {day + 1}"),
        )
    table = report.table
    if as_json:
        typer.echo(table.to_json(orient="records", indent=2))
        return
    _print_evaluation(table, f"'{report.scenario.name}': {customers:,} customers, seed {seed}")


def _model_uri(source: str) -> str:
    """A bare 32-hex MLflow run id means that run's logged policy."""
    text = source.strip()
    if len(text) == 32 and all(ch in "0123456789abcdef" for ch in text):
        return f"runs:/{text}/policy"
    return text


def _trusted_scenario(source: str | None) -> Any:
    """The ``--trusted-scenario`` as a loaded scenario (refused early, naming the option)."""
    if source is None:
        return None
    from nba.scenarios import load_scenario

    try:
        return load_scenario(source)
    except NBAValidationError as exc:
        raise NBAValidationError(f"--trusted-scenario: {exc}") from None


def _scenario_for_model(scenario: Any, scorer: Any) -> Any:
    """The scenario to evaluate a model on: its own unless one with the same features is named."""
    from nba.features import FeatureBuilder
    from nba.parameters import ScenarioArrays
    from nba.scenarios import load_scenario

    own = scorer.policy.scenario
    if scenario is None:
        return own
    chosen = load_scenario(scenario)
    names = FeatureBuilder(ScenarioArrays.from_scenario(chosen)).names
    if names[: scorer.features.size] != scorer.features.names:
        raise NBAValidationError(
            f"--model: trained on scenario {own.name!r}, whose features differ from "
            f"--scenario {scenario!r}'s"
        )
    return chosen


@app.command()
def simulate(
    scenario: ScenarioOption = "retail",
    policy: Annotated[str, typer.Option("--policy", help="Baseline policy to run.")] = "myopic",
    customers: CustomersOption = 10_000,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Per-day KPIs, .csv or .parquet.")
    ] = Path("kpis.csv"),
) -> None:
    """Run one policy on a cohort and write per-day KPIs (totals over the cohort)."""
    from nba.evaluation import rollout
    from nba.io import csv_bytes, write_bytes_atomic
    from nba.policies import make_baseline
    from nba.twin import CustomerTwin

    if out.suffix not in {".csv", ".parquet"}:
        raise NBAValidationError(f"--out: expected a .csv or .parquet path, got {str(out)!r}")
    twin = CustomerTwin(scenario, seed=seed)
    chosen = make_baseline(policy, twin, seed=seed)
    with _progress(True) as progress:
        days = twin.scenario.horizon_days
        task = progress.add_task(f"simulating {policy}", total=days, unit="days")
        result = rollout(twin, chosen, customers, seed, lambda day: progress.advance(task))
    daily = result.daily
    data = daily.to_parquet(index=False) if out.suffix == ".parquet" else csv_bytes(daily)
    write_bytes_atomic(out, data)
    summary = result.summary()
    console.print(
        f"wrote {len(daily)} days to {out}: value {summary['value']:.2f} per customer, "
        f"{summary['contacts']:.1f} contacts, conversion {summary['conversion']:.1%}, "
        f"violations {summary['violations']}"
    )


@app.command()
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
        with _stdout_to_stderr():  # stdout holds only the table, or only the JSON
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
    _print_evaluation(result.table, f"run {result.run_id}")
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

    from nba.training.tracking import resolve_tracking_uri

    command = f"nba train --resume {stopped.run_id}"
    if tracking_uri and tracking_uri != resolve_tracking_uri(None):
        command += f" --tracking-uri {shlex.quote(tracking_uri)}"
    typer.echo(
        f"{stopped.signal_name}: run {stopped.run_id} stopped, checkpoint saved, marked KILLED."
        f"\nResume it with:\n  {command}",
        err=True,
    )
    raise typer.Exit(128 + stopped.signal_number)


@app.command()
def score(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Export directory, models:/NAME@ALIAS or runs:/...")
    ],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="customers.csv or .parquet")],
    output: Annotated[Path, typer.Option("--output", "-o", help="decisions.parquet or .csv")],
    capacity: Annotated[
        list[str] | None,
        typer.Option(
            "--capacity",
            help="CHANNEL=N contacts available in this batch (repeat); CHANNEL=none lifts the "
            "scenario's daily_capacity.",
        ),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="Append the decisions to this log, once: rerunning an interrupted run (same "
            "input file, model, settings and decision time) does not log them again.",
        ),
    ] = None,
    epsilon: Annotated[
        float, typer.Option("--epsilon", min=0.0, max=1.0, help="Epsilon-greedy exploration.")
    ] = 0.0,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="Seed of the exploration. With --log and no --seed, a seed derived from the "
            "batch id, so that a rerun draws the same.",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Decision time for rows without an as_of column (ISO 8601; default: now). "
            "With --log, 'now' is kept until the run finishes: a rerun after a crash decides "
            "at the same time.",
        ),
    ] = None,
    tracking_uri: TrackingUriOption = None,
    trusted_scenario: TrustedScenarioOption = None,
) -> None:
    """Score customers from a file; write one decision per customer.

    Errors about the input name its data rows from 1 (the first row below the CSV header is
    row 1). Nothing is written, not even an empty log, unless every customer scores. The output
    file is replaced atomically. With --log a crash and a rerun duplicate nothing: the batch id
    is derived from what decides (input bytes, model, exploration and seed, capacity, decision
    time), and a batch already in the log is not logged again while the output is still written.
    """
    from nba.cli_inputs import (
        TABLE_SUFFIXES,
        check_decision_log,
        check_output,
        load_scorer,
        parse_as_of,
        read_table,
    )
    from nba.serving.scorer import Exploration

    check_output(output, "--output", TABLE_SUFFIXES)
    limits: dict[str, int | None] = {}
    for item in capacity or []:
        name, _, number = item.partition("=")
        if not (number.strip().isdigit() or number.strip().lower() == "none"):
            raise NBAValidationError(
                f"--capacity: expected CHANNEL=N or CHANNEL=none, got {item!r}"
            )
        limits[name.strip()] = None if number.strip().lower() == "none" else int(number)
    when = parse_as_of(as_of)
    trusted = _trusted_scenario(trusted_scenario)
    if log is not None:
        check_decision_log(log, "--log", must_exist=False)
    customers = read_table(input_path, "--input", first_row=1, text_columns=("customer_id",))
    if log is not None:
        decisions, note = _score_logged(
            model, tracking_uri, input_path, customers, limits, epsilon, seed, when, log, output,
            trusted,
        )  # fmt: skip
    else:
        exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=seed) if epsilon else None
        scorer = load_scorer(model, tracking_uri, exploration, trusted_scenario=trusted)
        decisions = scorer.score_batch(customers, capacity=limits or None, as_of=when)
        _write_decisions(decisions, output)
        note = ""
    counts = decisions["action_name"].value_counts().head(5)
    summary = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    console.print(f"scored {len(decisions):,} customers -> {output} ({summary}){note}")


def _score_logged(
    model: str,
    tracking_uri: str | None,
    input_path: Path,
    customers: Any,
    limits: dict[str, int | None],
    epsilon: float,
    seed: int | None,
    when: Any,
    log: Path,
    output: Path,
    trusted: Any = None,
) -> tuple[Any, str]:
    """``nba score --log``: score, log once under a derived batch id, then write the output.

    Order matters for a crash at any point: the decision time is pinned in the log first (when
    it is "now"), the batch is logged in one transaction, the output is replaced atomically,
    and only then the pin is released. A rerun after a crash finds the pinned time, makes the
    same batch id and decisions, skips the logging that already happened and writes the output.
    """
    from nba.cli_inputs import (
        ScoreRun,
        derived_seed,
        file_sha256,
        load_scorer,
        model_fingerprint,
        remove_new_log,
        with_exploration,
    )
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration

    new_log = not log.exists()
    scorer = load_scorer(model, tracking_uri, trusted_scenario=trusted)
    run = ScoreRun(
        input_sha256=file_sha256(input_path, "--input"),
        model=model_fingerprint(model, scorer),
        epsilon=float(epsilon),
        seed=seed,
        capacity=tuple(sorted(limits.items())),
        as_of="column"
        if "as_of" in customers.columns
        else ("now" if when is None else when.isoformat()),
    )
    decision_log = DecisionLog(log)
    pinned = False
    try:
        if run.as_of == "now":
            when, resumed = decision_log.start_run(run.key, pd.Timestamp.now(tz="UTC"))
            pinned = True
            if resumed:
                typer.echo(
                    f"resuming an interrupted run of the same input, model and settings: "
                    f"decisions as of {when.isoformat()}",
                    err=True,
                )
        batch_id = run.batch_id(None if run.as_of == "column" else when)
        if epsilon:
            drawn = seed if seed is not None else derived_seed(batch_id)
            exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=drawn)
            scorer = with_exploration(scorer, exploration)
        logged_before = decision_log.batch(batch_id) is not None
        decisions = scorer.score_batch(
            customers, capacity=limits or None, as_of=when, log=decision_log, batch_id=batch_id
        )
        _write_decisions(decisions, output)
        if pinned:
            decision_log.finish_run(run.key)
    except NBAError:
        if pinned:  # nothing was logged: a rerun decides afresh
            decision_log.finish_run(run.key)
        decision_log.close()
        if new_log:
            remove_new_log(log)
        raise
    except BaseException:
        decision_log.close()  # the pin stays: a rerun repeats this run exactly
        raise
    decision_log.close()
    if logged_before:
        return decisions, f"; batch {batch_id[:18]}... was already in {log}, not logged again"
    return decisions, f"; logged to {log} as batch {batch_id[:18]}..."


def _write_decisions(decisions: Any, output: Path) -> None:
    """Replace ``output`` atomically: readers see the old file or the whole new one."""
    from nba.io import csv_bytes, write_bytes_atomic

    if output.suffix == ".parquet":
        data = decisions.to_parquet(index=False)
    else:
        data = csv_bytes(decisions)  # formula-like ids are quoted for spreadsheets
    write_bytes_atomic(output, data)


@app.command()
def ui(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 5000,
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri")] = None,
) -> None:
    """Start the MLflow UI on the local store (127.0.0.1 unless told otherwise).

    The server runs in its own process group; Ctrl-C, SIGTERM or SIGHUP to this command stops
    the whole group, so no server worker outlives it.
    """
    import os
    import subprocess

    from nba.training.tracking import DEFAULT_ARTIFACTS, resolve_tracking_uri

    _check_port_free(host, port)
    uri = resolve_tracking_uri(tracking_uri)
    console.print(f"MLflow UI for {uri} at http://{host}:{port}  (Ctrl+C to stop)")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        uri,
    ]
    if uri.startswith("sqlite:"):
        command += ["--artifacts-destination", str(Path(DEFAULT_ARTIFACTS).resolve())]
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        with _signals_as_interrupt():
            code = server.wait()
    except KeyboardInterrupt:
        console.print("stopped")
        code = 0
    finally:
        _stop_process_group(server)
    if code:
        raise typer.Exit(code)


@app.command()
def serve(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Export directory, models:/NAME@ALIAS or runs:/...")
    ],
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="Server processes sharing the port (2: measured best)."
        ),
    ] = 2,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="Record every decision here; answers wait for the commit."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="NBA_SERVE_TOKEN",
            show_envvar=True,
            help="Require 'Authorization: Bearer TOKEN' on every route but /healthz "
            "(prefer the environment variable: options show in ps).",
        ),
    ] = None,
    reload_every: Annotated[
        float,
        typer.Option(
            "--reload-every", min=0.0, help="Seconds between checks that the alias moved; 0: never."
        ),
    ] = 30.0,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1, help="Largest /decide body.")
    ] = 1 << 20,
    max_batch_bytes: Annotated[
        int, typer.Option("--max-batch-bytes", min=1, help="Largest /decide/batch body.")
    ] = 16 << 20,
    max_batch_rows: Annotated[
        int, typer.Option("--max-batch-rows", min=1, help="Most customers per /decide/batch.")
    ] = 10_000,
    epsilon: Annotated[
        float, typer.Option("--epsilon", min=0.0, max=1.0, help="Epsilon-greedy exploration.")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the exploration.")] = None,
    tracking_uri: TrackingUriOption = None,
    trusted_scenario: TrustedScenarioOption = None,
) -> None:
    """Serve decisions over HTTP: POST /decide, POST /decide/batch, GET /healthz, GET /version.

    Loopback only unless --host says otherwise. For models:/NAME@ALIAS the server follows the
    alias: a new version is loaded in the background and swapped in without dropping requests.
    With --log every answered decision is in the log exactly once (the X-Request-ID header is
    its idempotency key). The OpenAPI document is at /openapi.json.
    """
    from nba.cli_inputs import check_decision_log, load_scorer, tracking_store
    from nba.serving import http
    from nba.serving.scorer import Exploration

    _check_port_free(host, port)
    if token is not None and not token.strip():
        raise NBAValidationError("--token: empty; give a secret or leave the option out")
    if log is not None:
        check_decision_log(log, "--log", must_exist=False)
    exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=seed) if epsilon else None
    trusted = _trusted_scenario(trusted_scenario)
    scorer = load_scorer(model, tracking_uri, exploration, trusted_scenario=trusted)
    registry = model.startswith(("models:/", "runs:/"))
    version = scorer.model_version
    pinned = None
    if model.startswith("models:/") and getattr(version, "version", None):
        pinned = f"models:/{version.name}/{version.version}"
    settings = http.ServeSettings(
        model=model,
        tracking_uri=tracking_store(tracking_uri) if registry else None,
        token=token.strip() if token else None,
        log=str(log) if log is not None else None,
        reload_every=reload_every,
        max_body_bytes=max_body_bytes,
        max_batch_bytes=max_batch_bytes,
        max_batch_rows=max_batch_rows,
        epsilon=epsilon,
        seed=getattr(scorer, "exploration_seed", seed) if epsilon else seed,
        pinned=pinned,
        # workers read it again: a file by its absolute path, whatever their directory
        trusted_scenario=(
            str(Path(trusted_scenario).resolve())
            if trusted_scenario and Path(trusted_scenario).is_file()
            else trusted_scenario
        ),
    )
    if log is not None:  # create the tables once, before workers open the file together
        from nba.serving.decision_log import DecisionLog

        DecisionLog(log).close()
    http.warm(scorer)
    following = " (following the alias)" if settings.follows_registry and reload_every else ""
    console.print(
        f"serving {version}{following} at http://{host}:{port} with {workers} worker(s)"
        f"{', logging to ' + str(log) if log else ''}  (Ctrl+C to stop)"
    )
    http.run(settings, scorer, host=host, port=port, workers=workers)


def _check_port_free(host: str, port: int) -> None:
    """Fail at once, naming the port, rather than after the server's own retries."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise NBAValidationError(f"--host: cannot resolve {host!r} ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as probe:
        # as servers do: a port whose old connections linger in TIME_WAIT is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise NBAValidationError(f"--port: {port} is already in use on {host}") from None
            raise NBAValidationError(
                f"--port: cannot listen on {host}:{port} ({exc.strerror})"
            ) from None


def _signals_as_interrupt() -> Any:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, like Ctrl-C, while the server runs."""
    import signal

    from nba.signals import handled

    def interrupt(signal_number: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return handled((signal.SIGTERM, signal.SIGHUP), interrupt)


def _stop_process_group(process: Any, grace_seconds: float = 10.0) -> None:
    """SIGTERM the process's group, SIGKILL whatever is left after the grace period."""
    import os
    import signal
    import subprocess

    for name in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, name)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone: take any worker it left behind with it
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break


def _split_names(value: str, option: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise NBAValidationError(f"{option}: give at least one name")
    return names


def _progress(enabled: bool) -> Progress | LineProgress:
    """rich's live bar in a terminal; elsewhere (logs, notebooks) a line every 30 s."""
    if enabled and not error_console.is_terminal:
        return LineProgress()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=error_console,
        disable=not enabled,
        transient=True,
    )


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """What libraries print while we work (MLflow's "View run" links, SB3's bar) goes to
    stderr: stdout carries only our result, so ``--json`` output always parses."""
    import os
    from contextlib import redirect_stdout

    bars = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(bars)
    if not error_console.is_terminal and before is None:  # tqdm bars are noise in a log
        os.environ[bars] = "false"
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        if before is None:
            os.environ.pop(bars, None)


def _print_evaluation(table: pd.DataFrame, title: str) -> None:
    """A compact terminal view; ``--json`` has every column at full precision."""
    view = Table(title=title, caption="per customer over the horizon; rates are shares")
    columns = [
        ("policy", lambda r: str(r["policy"])),
        ("value ± 95% CI", lambda r: f"{r['value']:,.2f} ± {r['ci95_high'] - r['value']:.2f}"),
        ("share of optimum", lambda r: _number(r.get("share_of_optimum", float("nan")), 3)),
        *(
            [("exact share", lambda r: _number(r["exact_share_of_optimum"], 3))]
            if "exact_share_of_optimum" in table
            else []
        ),
        ("revenue", lambda r: f"{r['revenue']:,.1f}"),
        ("cost", lambda r: f"{r['cost']:,.2f}"),
        ("contacts", lambda r: f"{r['contacts']:,.1f}"),
        ("conversion", lambda r: f"{r['conversion']:.3f}"),
        ("unsub", lambda r: f"{r['unsubscribe_rate']:.3f}"),
        ("churn", lambda r: f"{r['churn_rate']:.3f}"),
        ("blocked", lambda r: f"{r['blocked_requests']:,.2f}"),
        ("violations", lambda r: f"{int(r['violations']):,}"),
    ]
    for i, (name, _) in enumerate(columns):
        view.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in table.to_dict(orient="records"):
        view.add_row(*(Text(fmt(row)) for _, fmt in columns))
    _print_table(view)


def _emit(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    """Rows as JSON (strict: NaN becomes null) or as a table readable when piped.

    Numbers are formatted here, a column at a time (thousands separators, 3 decimals, or none
    for whole numbers); dicts and lists become "key value, ..." text, missing values "-".
    """
    if as_json:
        typer.echo(json.dumps(_plain(rows), indent=2, default=str))
        return
    table = Table(title=title)
    names = list(rows[0]) if rows else []
    for i, column in enumerate(names):
        values = [row.get(column) for row in rows]
        numeric = all(_is_number(v) or v is None for v in values)
        table.add_column(
            str(column),
            justify="right" if numeric and i else "left",
            no_wrap=numeric,
            overflow="fold",
            max_width=None if numeric else 60,
        )
    decimals = {column: 0 if _whole([row.get(column) for row in rows]) else 3 for column in names}
    for row in rows:
        table.add_row(*(Text(_cell(row.get(c), decimals[c])) for c in names))
    _print_table(table)


def _print_table(table: Table) -> None:
    """In a terminal, fit the terminal; piped or captured, as wide as the table needs, so no
    cell is cut short to "0.…"."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(needed, 80), soft_wrap=False).print(table)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _whole(values: list[Any]) -> bool:
    numbers = [float(v) for v in values if _is_number(v) and np.isfinite(v)]
    return bool(numbers) and all(n.is_integer() for n in numbers)


def _number(value: Any, decimals: int = 3) -> str:
    """``12,345.679``; ``-`` for missing; tiny values keep two significant digits."""
    if value is None or not np.isfinite(value):
        return "-" if value is None or np.isnan(value) else str(value)
    value = float(value)
    if decimals and value != 0 and abs(value) < 0.5 * 10.0**-decimals:
        return f"{value:.2g}"
    return f"{value:,.{decimals}f}"


def _cell(value: Any, decimals: int = 3) -> str:
    """One table cell as a person reads it: never a Python repr of a dict or list."""
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if _is_number(value):
        return _number(value, decimals)
    if isinstance(value, dict):
        return ", ".join(f"{key} {_cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def _describe(summary: dict[str, Any]) -> str:
    """A summary dict as one readable line: ``customers 1,500; mae_twin 1.299; ...``."""
    return "; ".join(f"{key} {_cell(value)}" for key, value in summary.items())


def _plain(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null (``json.dumps`` would write bare NaN)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


register_calibration(app)
register_ope(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: bad input becomes one line on stderr and exit code 2.

    Our own errors carry the option and the problem. A file the operating system or a decoder
    refuses (permissions, a folder for a file, bytes that are not UTF-8) where a command did not
    check it first is still bad input, not a crash: one line naming the file.
    """
    try:
        app(args=argv, prog_name="nba")
    except NBAError as exc:
        _fail(str(exc))
    except UnicodeDecodeError as exc:
        _fail(f"cannot read a file: not UTF-8 text ({exc.reason} at offset {exc.start})")
    except OSError as exc:
        if exc.filename is None:
            raise
        _fail(f"{exc.filename}: {exc.strerror or exc}")


def _fail(message: str) -> NoReturn:
    """Print ``error: message`` as exactly one line (no wrapping, no markup) and exit 2."""
    from rich.markup import escape

    parts = [line.strip() for line in message.splitlines()]
    text = "; ".join(part for part in parts if part and set(part) != {"^"})
    error_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    sys.exit(2)


if __name__ == "__main__":
    main()
