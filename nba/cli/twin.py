"""``nba scenarios``, ``validate``, ``solve``, ``evaluate`` and ``simulate``: the twin and its
baselines from the command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nba.cli.options import CohortOption, JsonOption, ScenarioOption, seed_option
from nba.cli.output import console, emit, print_evaluation, progress_bar
from nba.errors import NBAValidationError


def register(app: typer.Typer) -> None:
    """Add the twin commands to the ``nba`` app."""
    for command in (scenarios, validate, solve, evaluate, simulate):
        app.command()(command)


def scenarios(as_json: JsonOption = False) -> None:
    """List the built-in scenarios and the size of their state spaces."""
    from nba.scenarios import builtin_scenario_names, load_scenario
    from nba.twin import CustomerTwin

    rows = []
    for name in builtin_scenario_names():
        sc = load_scenario(name)
        twin = CustomerTwin(sc, tabulate=False)
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
    emit(rows, as_json, title="Built-in scenarios")


def validate(
    path: Annotated[Path, typer.Argument(help="Scenario YAML file to check.")],
    as_json: JsonOption = False,
) -> None:
    """Validate a scenario file; print its fingerprint, or the problems field by field."""
    from nba.cli.inputs import check_input, reading
    from nba.scenarios import load_scenario

    check_input(path, "PATH")
    with reading("PATH", path):
        scenario = load_scenario(path)
    emit([{"scenario": scenario.name, "fingerprint": scenario.fingerprint()}], as_json, "Valid")


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
    emit(rows, False, title=f"Scenario '{loaded.name}': expected discounted value per customer")
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
SeedOption = Annotated[int, seed_option("Seed of the evaluation cohort.")]


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
    customers: CohortOption = 20_000,
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
        from nba.cli.inputs import load_scorer

        for source in model:
            scorer = load_scorer(_model_uri(source), tracking_uri)
            scenario = _scenario_for_model(scenario, scorer)
            label = str(scorer.model_version) if len(model) > 1 else "model"
            if label in named:  # two exports of one run, or two local folders
                label = source
            named[label] = scorer.as_policy(label)
    with progress_bar(True) as progress:  # on stderr: never mixed into --json
        task: Any = progress.add_task(f"evaluating policies on {customers:,} customers", total=None)
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
    print_evaluation(table, f"'{report.scenario.name}': {customers:,} customers, seed {seed}")


def _model_uri(source: str) -> str:
    """A bare 32-hex MLflow run id means that run's logged policy."""
    text = source.strip()
    if len(text) == 32 and all(ch in "0123456789abcdef" for ch in text):
        return f"runs:/{text}/policy"
    return text


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


def simulate(
    scenario: ScenarioOption = "retail",
    policy: Annotated[str, typer.Option("--policy", help="Baseline policy to run.")] = "myopic",
    customers: CohortOption = 10_000,
    seed: SeedOption = 0,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Per-day KPIs, .csv or .parquet.")
    ] = Path("kpis.csv"),
) -> None:
    """Run one policy on a cohort and write per-day KPIs (totals over the cohort)."""
    from nba.evaluation import rollout
    from nba.io import csv_bytes, write_bytes_atomic
    from nba.policies import make_baseline
    from nba.scenarios import load_scenario
    from nba.twin import CustomerTwin

    if out.suffix not in {".csv", ".parquet"}:
        raise NBAValidationError(f"--out: expected a .csv or .parquet path, got {str(out)!r}")
    loaded = load_scenario(scenario)
    twin = CustomerTwin(loaded, seed=seed)
    chosen = make_baseline(policy, twin, seed=seed)
    with progress_bar(True) as progress:
        days = loaded.horizon_days
        task: Any = progress.add_task(f"simulating {policy}", total=days, unit="days")
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


def _split_names(value: str, option: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise NBAValidationError(f"{option}: give at least one name")
    return names
