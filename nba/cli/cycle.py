"""``nba cycle``: one cycle of the continuous loop, with exit codes a scheduler can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from nba.cli.options import (
    EpsilonOption,
    HoldoutControlOption,
    HoldoutSaltOption,
    HoldoutShareOption,
    JsonOption,
    TrackingUriOption,
)
from nba.cli.output import console
from nba.cli.score import CapacityOption


def register(app: typer.Typer) -> None:
    """Add ``cycle`` to the ``nba`` app."""
    app.command()(cycle)


EventsOption = Annotated[
    Path, typer.Option("--events", "-e", help="The new events (CSV or parquet, event schema).")
]

CycleModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Registered model name (its 'champion' decides).")
]

AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="When the next day's decisions are made (ISO 8601, UTC); default midnight "
        "after the batch's last event. Part of the cycle's identity.",
    ),
]

DriftThresholdOption = Annotated[
    float,
    typer.Option(
        "--drift-threshold",
        help="Recalibrate when |z| of the period's purchase days (observed against the "
        "twin's exact forecast) exceeds this.",
    ),
]

TrainStepsOption = Annotated[
    int, typer.Option("--train-steps", help="Env steps of the challenger's training.")
]

TrainConfigOption = Annotated[
    Path | None,
    typer.Option("--train-config", help="Hyper-parameter YAML (default: the packaged one)."),
]

DecisionsOption = Annotated[
    Path | None,
    typer.Option(
        "--decisions",
        help="Decision log (SQLite): yesterday's decisions are the off-policy evidence, "
        "today's are appended.",
    ),
]

OutOption = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="The next day's decisions (.parquet or .csv)."),
]

StateDirOption = Annotated[
    Path | None,
    typer.Option("--state-dir", help="Where cycle ledgers live (default: STORE.cycles/)."),
]


def cycle(
    store: Annotated[Path, typer.Option("--store", help="The customer-state store (SQLite file).")],
    events: EventsOption,
    model: CycleModelOption,
    as_of: AsOfOption = None,
    holdout_share: HoldoutShareOption = None,
    holdout_salt: HoldoutSaltOption = None,
    holdout_control: HoldoutControlOption = "no_action",
    drift_threshold: DriftThresholdOption = 4.0,
    train_steps: TrainStepsOption = 200_000,
    train_config: TrainConfigOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the challenger's training.")] = 0,
    decisions: DecisionsOption = None,
    out: OutOption = None,
    capacity: CapacityOption = None,
    epsilon: EpsilonOption = 0.0,
    state_dir: StateDirOption = None,
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest, audit, retrain, evaluate off-policy, gate, and decide for the next day.

    Exit codes: 0 done, the challenger promoted; 3 the gate refused it (the champion kept
    and deciding); 4 drift found and recalibration failed (nothing trained or decided); 2 bad
    input. Rerunning a cycle (same store, events content, --as-of) changes nothing and exits
    with the recorded code; after a kill it continues at the first unfinished step.
    """
    from nba.cli.score import _capacity_limits
    from nba.loop.cycle import CycleSettings, run_cycle

    settings = CycleSettings(
        store=store,
        events=events,
        model=model,
        as_of=as_of,
        holdout_share=holdout_share,
        holdout_salt=holdout_salt,
        holdout_control=holdout_control,
        drift_threshold=drift_threshold,
        train_steps=train_steps,
        train_seed=seed,
        train_config=train_config,
        decisions=decisions,
        out=out,
        tracking_uri=tracking_uri,
        epsilon=epsilon,
        capacity=_capacity_limits(capacity or []),
        state_dir=state_dir,
    )
    result = run_cycle(settings)
    _report(result, as_json)
    if result.exit_code:
        raise typer.Exit(code=result.exit_code)


def _report(result: Any, as_json: bool) -> None:
    """The cycle's outcome: a JSON summary, or a line per step for a person."""
    if as_json:
        summary = {
            "cycle": result.key,
            "outcome": result.outcome,
            "exit_code": result.exit_code,
            "parent_run_id": result.parent_run_id,
            "ran": result.ran,
            "ledger": str(result.ledger),
            "seconds": round(result.seconds, 3),
            "steps": {k: v["outcome"] for k, v in result.steps.items()},
        }
        print(json.dumps(summary))
        return
    replay = "" if result.ran else " (recorded; nothing rerun)"
    console.print(f"cycle {result.key}: {result.outcome}{replay}, exit {result.exit_code}")
    for name, record in result.steps.items():
        console.print(f"  {name}: {record['outcome']}")
