"""``nba loop``: the closed-loop simulation of the continuous loop against a hidden world."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nba.cli.options import JsonOption, TrackingUriOption
from nba.cli.output import console

WorldOption = Annotated[
    Path | None,
    typer.Option(
        "--world",
        "-w",
        help="World YAML (scenario, customers, twin_error, change, ...); default: retail, "
        "20,000 customers, response 30% wrong, sms response halving in week 6.",
    ),
]
WeeksOption = Annotated[
    int | None, typer.Option("--weeks", min=1, help="Loop weeks after the burn-in.")
]
CustomersOption = Annotated[
    int | None, typer.Option("--customers", "-n", min=200, help="The world's customers.")
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Folder for weeks.csv, gates.csv, summary.json, loop.png."),
]
MlflowOption = Annotated[
    bool, typer.Option("--mlflow", help="Log the loop as an MLflow run (experiment nba-loop).")
]


def loop(
    world: WorldOption = None,
    weeks: WeeksOption = None,
    customers: CustomersOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the whole loop.")] = 0,
    out: OutOption = None,
    mlflow: MlflowOption = False,
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run the continuous loop against a hidden world that only emits events.

    Each week: business as usual for a holdout, the champion for the rest, a challenger in a
    randomized test cell; the twin audited, refitted on drift, its policy gated. Prints per
    week the champion's value in the world's truth, its share of the gap to the best the
    system could serve, the gate's decisions (and whether each was right), and the lift.
    """
    from nba.loop.closed_loop import run_loop
    from nba.loop.loop_output import LOOP_EXPERIMENT, log_report, write_report
    from nba.loop.world import load_world

    spec = load_world(world, weeks=weeks, customers=customers)
    report = run_loop(spec, seed=seed, on_week=None if as_json else _print_week)
    if out is not None:
        write_report(report, spec, out)
    run_id = log_report(report, spec, tracking_uri, LOOP_EXPERIMENT) if mlflow else None
    if as_json:
        print(json.dumps({**report.summary, "mlflow_run_id": run_id}, default=str))
        return
    _print_summary(report.summary, run_id)


def _print_week(row: dict[str, Any]) -> None:
    gate = f", gate {row['gate']}" if row.get("gate") else ""
    drift = f", drift (z {row['audit_z']:+.1f}, worst action {row['worst_action_z']:.1f})"
    challenger = f" -> challenger {row['challenger_next']}" if row.get("challenger_next") else ""
    console.print(
        f"week {row['week']:>2} ({row['world']}) champion {row['champion']}: "
        f"value {row['champion_value']:.2f}, share {row['share_of_world_twin']:.2f} "
        f"(full information {row['share']:.2f}), lift {row['lift']:+.2f} "
        f"[{row['lift_lower']:+.2f}, {row['lift_upper']:+.2f}] true {row['true_lift']:+.2f}"
        f"{gate}{drift if row['drifted'] else ''}{challenger}"
    )


def _print_summary(summary: dict[str, Any], run_id: str | None) -> None:
    console.print(
        f"last week: share {summary['week12_share']:.3f} of the world twin's gap "
        f"({summary['week12_share_full_information']:.3f} of the full-information optimum's); "
        f"recovery after the change: {summary['recovery_weeks']} weeks; gate: "
        f"{summary['promotions']} of {summary['gate_decisions']} promoted, "
        f"{summary['false_promotions']} wrongly, {summary['held_back_better']} better held back; "
        f"lift covered the true lift: {summary['lift_covered']}"
    )
    if run_id:
        console.print(f"MLflow run {run_id}")


def register(app: typer.Typer) -> None:
    """Add ``loop`` to the ``nba`` app."""
    app.command("loop")(loop)
