"""``nba forecast``: each customer's exact expected purchases, spend and P(alive) in a window."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from nba.cli.options import CustomerTableOption, JsonOption, ScenarioOption
from nba.cli.output import console, emit
from nba.errors import NBAValidationError

HorizonOption = Annotated[
    str,
    typer.Option("--horizon", help="Window length: days ('273d', '273') or weeks ('39w')."),
]
CutoffOption = Annotated[
    str | None,
    typer.Option(
        "--cutoff",
        help="End of the observation window and start of the forecast (ISO 8601, UTC); "
        "silence up to it is evidence. Default: midnight after the log's last event.",
    ),
]
PlanOption = Annotated[
    Path | None,
    typer.Option(
        "--plan",
        help="Planned sends in the window (CSV or parquet: customer_id, timestamp, channel, "
        "action). Default: no action.",
    ),
]
HistoryStartOption = Annotated[
    str | None,
    typer.Option(
        "--history-start",
        help="Read each customer from the log's first purchase ('log', a panel), from their "
        "own first event ('first_event') or from their own first purchase, as their start "
        "('first_purchase'). Default: as the twin's calibration recorded, else 'log'.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``nba forecast`` to the app."""
    app.command()(forecast)


def forecast(
    scenario: ScenarioOption,
    events: Annotated[Path, typer.Option("--events", "-e", help="Event log (CSV or parquet).")],
    horizon: HorizonOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Forecast table (.parquet or .csv).")],
    customers: CustomerTableOption = None,
    cutoff: CutoffOption = None,
    plan: PlanOption = None,
    history_start: HistoryStartOption = None,
    lookback_days: Annotated[
        int, typer.Option("--lookback-days", min=1, help="Days of history the filter reads.")
    ] = 365,
    as_json: JsonOption = False,
) -> None:
    """Forecast every customer's purchases, spend and P(alive) exactly (no simulation).

    Each customer's belief is filtered from their own history before the cutoff; the twin's
    forward equations then give the expectations over the window, under the plan if given.
    """
    from nba.calibration.events import utc_time
    from nba.calibration.exact_forecast import COLUMNS, forecast_customers, parse_horizon
    from nba.cli.calibrate import _check_event_files, _load_events
    from nba.cli.inputs import TABLE_SUFFIXES, check_output, read_table, reading
    from nba.io import csv_bytes, write_bytes_atomic
    from nba.progress import phase
    from nba.scenarios import load_scenario

    days = parse_horizon(horizon, "--horizon")  # bad text fails before any file is read
    check_history_start(history_start)
    if cutoff is not None:
        utc_time(cutoff, "--cutoff")
    check_output(out, "--out", TABLE_SUFFIXES)
    with reading("--scenario", scenario):
        twin_scenario = load_scenario(scenario)
    _check_event_files(events, customers)
    planned = None if plan is None else read_table(plan, "--plan", 1, ("customer_id",))
    log = _load_events(events, customers)
    began = time.perf_counter()
    with phase(f"forecast: {len(log.customer_ids):,} customers over {days} days"):
        table = forecast_customers(
            twin_scenario,
            log,
            days,
            planned,
            cutoff=cutoff,
            history_start=history_start,
            lookback_days=lookback_days,
        )
    seconds = time.perf_counter() - began
    if out.suffix == ".parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_bytes_atomic(out, buffer.getvalue())
    else:
        write_bytes_atomic(out, csv_bytes(table))
    summary = {
        "out": str(out),
        "customers": len(table),
        "window_start": table["window_start"].iloc[0].isoformat() if len(table) else None,
        "horizon_days": days,
        "expected_purchases": float(table["expected_purchases"].sum()),
        "expected_baskets": float(table["expected_baskets"].sum()),
        "expected_spend": float(table["expected_spend"].sum()),
        "mean_p_alive_end": float(table["p_alive_end"].mean()) if len(table) else None,
        "seconds": round(seconds, 3),
    }
    if as_json:
        print(json.dumps(summary))
        return
    emit([summary], False, title="Exact expected forecast (totals over customers)")
    console.print(f"{len(table):,} rows ({', '.join(COLUMNS)}) -> {out}")


def check_history_start(value: str | None) -> None:
    """Refuse an unknown ``--history-start`` before reading files."""
    from nba.calibration.filtering import HISTORY_STARTS

    if value is not None and value not in HISTORY_STARTS:
        raise NBAValidationError(f"--history-start: {value!r} is not one of {list(HISTORY_STARTS)}")
