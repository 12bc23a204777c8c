"""The ``nba`` command line. Every command has ``--help``; table output also has ``--json``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nba.errors import NBAError

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
    from nba.scenarios import load_scenario

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


def main() -> None:
    """Console entry point: our own errors become one clear line and exit code 2."""
    try:
        app()
    except NBAError as exc:
        error_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
