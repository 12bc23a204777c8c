"""The ``nba`` command line. Every command has ``--help``; table output also has ``--json``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nba.cli_calibrate import register as register_calibration
from nba.cli_ope import register as register_ope
from nba.errors import NBAError, NBAValidationError

app = typer.Typer(
    name="nba",
    help="Next-best-action optimisation on a customer digital twin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

ScenarioOption = Annotated[
    str, typer.Option("--scenario", "-s", help="Built-in scenario name or path to a YAML file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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
    scenario: ScenarioOption = "retail",
    policies: PoliciesOption = "no_action,random,journey_map,myopic,optimal",
    customers: CustomersOption = 20_000,
    seed: SeedOption = 20_261_123,
    as_json: JsonOption = False,
) -> None:
    """Evaluate policies on one fixed cohort with common random numbers; print the table."""
    from nba.evaluation import evaluate_policies

    names = _split_names(policies, "--policies")
    with _progress(not as_json) as progress:
        task = progress.add_task("evaluating", total=None)
        report = evaluate_policies(
            scenario,
            names,
            n_customers=customers,
            seed=seed,
            on_day=lambda name, day: progress.update(task, description=f"{name}: day {day + 1}"),
        )
    table = report.table
    if as_json:
        typer.echo(table.to_json(orient="records", indent=2))
        return
    _print_evaluation(table, f"'{report.scenario.name}': {customers:,} customers, seed {seed}")


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
    from nba.io import write_bytes_atomic
    from nba.policies import make_baseline
    from nba.twin import CustomerTwin

    if out.suffix not in {".csv", ".parquet"}:
        raise NBAValidationError(f"--out: expected a .csv or .parquet path, got {str(out)!r}")
    twin = CustomerTwin(scenario, seed=seed)
    chosen = make_baseline(policy, twin, seed=seed)
    with _progress(True) as progress:
        task = progress.add_task(f"simulating {policy}", total=twin.scenario.horizon_days)
        result = rollout(twin, chosen, customers, seed, lambda day: progress.advance(task))
    daily = result.daily
    data = daily.to_parquet(index=False) if out.suffix == ".parquet" else daily.to_csv(index=False)
    write_bytes_atomic(out, data if isinstance(data, bytes) else data.encode())
    summary = result.summary()
    console.print(
        f"wrote {len(daily)} days to {out}: value {summary['value']:.2f} per customer, "
        f"{summary['contacts']:.1f} contacts, conversion {summary['conversion']:.1%}, "
        f"violations {summary['violations']}"
    )


@app.command()
def train(
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
    threads: Annotated[int | None, typer.Option("--threads", help="torch threads.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Train a policy, compare it with every baseline and the optimum, record it in MLflow."""
    from nba.training.trainer import train as run_training

    result = run_training(
        scenario=scenario,
        algo=algo,
        timesteps=timesteps,
        seed=seed,
        config=config,
        tracking_uri=tracking_uri,
        experiment=experiment,
        resume=resume,
        eval_every_steps=eval_every,
        eval_customers=eval_customers,
        checkpoint_every_seconds=checkpoint_every,
        torch_threads=threads,
        progress_bar=not as_json and error_console.is_terminal,
    )
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
    console.print(
        f"MLflow run {result.run_id}; model version {result.model_version} (alias 'candidate').\n"
        "Open the UI with: nba ui   (then browse experiment "
        f"'{experiment}')"
    )


@app.command()
def score(
    model: Annotated[
        str, typer.Option("--model", "-m", help="Export directory, models:/NAME@ALIAS or runs:/...")
    ],
    input_path: Annotated[Path, typer.Option("--input", "-i", help="customers.csv or .parquet")],
    output: Annotated[Path, typer.Option("--output", "-o", help="decisions.parquet or .csv")],
    capacity: Annotated[
        list[str] | None,
        typer.Option("--capacity", help="CHANNEL=N contacts available in this batch (repeat)."),
    ] = None,
    log: Annotated[Path | None, typer.Option("--log", help="Append decisions to this log.")] = None,
    epsilon: Annotated[
        float, typer.Option("--epsilon", min=0.0, max=1.0, help="Epsilon-greedy exploration.")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the exploration.")] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="MLflow store for models:/ and runs:/ URIs."),
    ] = None,
) -> None:
    """Score customers from a file; write one decision per customer.

    Errors about the input name its data rows from 1 (the first row below the CSV header is
    row 1). Nothing is written, not even an empty log, unless every customer scores.
    """
    from nba.cli_inputs import (
        TABLE_SUFFIXES,
        check_decision_log,
        check_output,
        load_scorer,
        read_table,
        remove_new_log,
    )
    from nba.io import write_bytes_atomic
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration

    check_output(output, "--output", TABLE_SUFFIXES)
    limits = {}
    for item in capacity or []:
        name, _, number = item.partition("=")
        if not number.strip().isdigit():
            raise NBAValidationError(f"--capacity: expected CHANNEL=N, got {item!r}")
        limits[name.strip()] = int(number)
    new_log = log is not None and not log.exists()
    if log is not None:
        check_decision_log(log, "--log", must_exist=False)
    customers = read_table(input_path, "--input", first_row=1)
    exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=seed) if epsilon else None
    scorer = load_scorer(model, tracking_uri, exploration)
    decision_log = DecisionLog(log) if log else None
    try:
        decisions = scorer.score_batch(customers, capacity=limits or None, log=decision_log)
    except BaseException:
        if decision_log is not None:
            decision_log.close()
            if new_log and log is not None:
                remove_new_log(log)
        raise
    if decision_log is not None:
        decision_log.close()
    if output.suffix == ".parquet":
        data = decisions.to_parquet(index=False)
    else:
        data = decisions.to_csv(index=False).encode()
    write_bytes_atomic(output, data)
    counts = decisions["action_name"].value_counts().head(5)
    summary = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    console.print(f"scored {len(decisions):,} customers -> {output} ({summary})")


@app.command()
def ui(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 5000,
    host: Annotated[str, typer.Option("--host", help="Bind address.")] = "127.0.0.1",
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri")] = None,
) -> None:
    """Start the MLflow UI on the local store (127.0.0.1 unless told otherwise)."""
    import os
    import subprocess

    from nba.training.tracking import DEFAULT_ARTIFACTS, resolve_tracking_uri

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
    try:
        subprocess.run(command, env=env, check=False)
    except KeyboardInterrupt:
        console.print("stopped")


def _split_names(value: str, option: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise NBAValidationError(f"{option}: give at least one name")
    return names


def _progress(enabled: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=error_console,
        disable=not enabled or not error_console.is_terminal,
        transient=True,
    )


def _print_evaluation(table: pd.DataFrame, title: str) -> None:
    """A compact terminal view; ``--json`` has every column at full precision."""
    view = Table(title=title, caption="per customer over the horizon; rates are shares")
    columns = [
        ("policy", lambda r: str(r["policy"])),
        ("value ± 95% CI", lambda r: f"{r['value']:.2f} ± {r['ci95_high'] - r['value']:.2f}"),
        ("share of optimum", lambda r: f"{r.get('share_of_optimum', float('nan')):.3f}"),
        *(
            [("exact share", lambda r: f"{r['exact_share_of_optimum']:.3f}")]
            if "exact_share_of_optimum" in table
            else []
        ),
        ("revenue", lambda r: f"{r['revenue']:.1f}"),
        ("cost", lambda r: f"{r['cost']:.2f}"),
        ("contacts", lambda r: f"{r['contacts']:.1f}"),
        ("conversion", lambda r: f"{r['conversion']:.3f}"),
        ("unsub", lambda r: f"{r['unsubscribe_rate']:.3f}"),
        ("churn", lambda r: f"{r['churn_rate']:.3f}"),
        ("blocked", lambda r: f"{r['blocked_requests']:.2f}"),
        ("violations", lambda r: str(r["violations"])),
    ]
    for i, (name, _) in enumerate(columns):
        view.add_column(name, justify="left" if i == 0 else "right")
    for row in table.to_dict(orient="records"):
        view.add_row(*(fmt(row) for _, fmt in columns))
    Console(width=max(console.width, 140)).print(view)


def _emit(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=title)
    for i, column in enumerate(rows[0] if rows else []):
        table.add_column(str(column), justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:,.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)


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
