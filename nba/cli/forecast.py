"""``nba forecast``: each customer's exact expected purchases, spend and P(alive) in a window."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nba.cli.decide_scale import AddressOption
from nba.cli.options import CustomerTableOption, JsonOption, ScenarioOption
from nba.cli.output import console, emit
from nba.errors import NBAValidationError

if TYPE_CHECKING:
    import pandas as pd

    from nba.calibration.events import EventLog
    from nba.scenario import Scenario

ENGINES = ("local", "ray")
#: options that only a Ray run reads, refused with --engine local rather than ignored
RAY_ONLY = ("--address", "--workers", "--partitions")

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
LookbackOption = Annotated[
    int, typer.Option("--lookback-days", min=1, help="Days of history the filter reads.")
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (this process) or ray (customer partitions as Ray tasks, the same table "
        "to the bit; pip install nba\\[ray]).",
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=1,
        help="CPUs of the local Ray cluster started for the run (default: every core); "
        "with --engine ray and no --address.",
    ),
]
PartitionsOption = Annotated[
    int | None,
    typer.Option(
        "--partitions",
        min=1,
        help="Customer partitions, one Ray task each (default: 4 per CPU of the cluster); "
        "with --engine ray.",
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
    lookback_days: LookbackOption = 365,
    engine: EngineOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = None,
    partitions: PartitionsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Forecast every customer's purchases, spend and P(alive) exactly (no simulation).

    Each customer's belief is filtered from their own history before the cutoff; the twin's
    forward equations then give the expectations over the window, under the plan if given.
    With --engine ray the customers are cut into partitions, each filtered and forecast in a
    Ray task (a local cluster, or the one at --address); the table is the same to the bit.
    """
    from nba.calibration.events import utc_time
    from nba.calibration.exact_forecast import COLUMNS, forecast_customers, parse_horizon
    from nba.cli.calibrate import _check_event_files, _load_events
    from nba.cli.inputs import TABLE_SUFFIXES, check_output, read_table, reading
    from nba.progress import phase
    from nba.scenarios import load_scenario

    days = parse_horizon(horizon, "--horizon")  # bad text fails before any file is read
    check_history_start(history_start)
    check_engine(engine, address, workers, partitions)
    if cutoff is not None:
        utc_time(cutoff, "--cutoff")
    check_output(out, "--out", TABLE_SUFFIXES)
    with reading("--scenario", scenario):
        twin_scenario = load_scenario(scenario)
    _check_event_files(events, customers)
    planned = None if plan is None else read_table(plan, "--plan", 1, ("customer_id",))
    log = _load_events(events, customers)
    settings: dict[str, Any] = {"cutoff": cutoff, "history_start": history_start}
    settings["lookback_days"] = lookback_days
    ran: dict[str, Any] = {}
    began = time.perf_counter()
    with phase(f"forecast: {len(log.customer_ids):,} customers over {days} days"):
        if engine == "ray":
            table, ran = _forecast_on_ray(
                twin_scenario, log, days, planned, settings, (address, workers, partitions)
            )
        else:
            table = forecast_customers(twin_scenario, log, days, planned, **settings)
    seconds = time.perf_counter() - began
    _write(table, out)
    summary = _summary(table, out, days, seconds)
    if as_json:
        print(json.dumps({**summary, **ran}))
        return
    emit([summary], False, title="Exact expected forecast (totals over customers)")
    nodes = f"{ran['nodes']} node{'s' * (ran['nodes'] != 1)}" if ran else ""
    where = f" (ray: {ran['partitions']} partitions on {nodes})" if ran else ""
    console.print(f"{len(table):,} rows ({', '.join(COLUMNS)}) -> {out}{where}")


def check_engine(
    engine: str, address: str | None, workers: int | None, partitions: int | None
) -> None:
    """Refuse an unknown ``--engine``, and Ray's options without it, before reading files."""
    from nba.scale import ScaleError
    from nba.scale.cluster import parse_address

    if engine not in ENGINES:
        raise ScaleError(f"--engine: expected one of {list(ENGINES)}, got {engine!r}")
    given = dict(zip(RAY_ONLY, (address, workers, partitions), strict=True))
    if engine == "local":
        for name, value in given.items():
            if value is not None:
                raise ScaleError(
                    f"{name}: only with --engine ray (the local engine is one process)"
                )
        return
    if address is not None:
        parse_address(address, "--address")
        if workers is not None:
            raise ScaleError(
                f"--workers: sizes a local Ray cluster; the cluster at {address!r} has the CPUs "
                "its nodes were started with"
            )


def _forecast_on_ray(
    scenario: Scenario,
    log: EventLog,
    days: int,
    planned: pd.DataFrame | None,
    settings: dict[str, Any],
    cluster: tuple[str | None, int | None, int | None],
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table over Ray tasks, and where it ran (engine, partitions, distinct nodes).

    ``cluster``: (address, workers, partitions) as given; without partitions, 4 per CPU of
    the cluster joined (a local one of ``workers`` CPUs when there is no address), so that a
    slow partition leaves the other CPUs work to do.
    """
    from nba.scale import import_ray
    from nba.scale.cluster import connect
    from nba.scale.ray_forecast import forecast_customers_on_ray

    address, workers, partitions = cluster
    connect(address, num_cpus=workers if address is None else None, name="--address")
    if partitions is None:
        cpus = int(import_ray().cluster_resources().get("CPU", 1))
        partitions = 4 * max(cpus, 1)
    run = forecast_customers_on_ray(
        scenario, log, days, planned, partitions=partitions, address=address, **settings
    )
    where = {"engine": "ray", "partitions": run.partitions, "nodes": len(set(run.node_ids))}
    return run.result, where


def _write(table: pd.DataFrame, out: Path) -> None:
    """The table to ``out`` atomically, as its suffix says (Parquet or CSV)."""
    from nba.io import csv_bytes, write_bytes_atomic

    if out.suffix == ".parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_bytes_atomic(out, buffer.getvalue())
    else:
        write_bytes_atomic(out, csv_bytes(table))


def _summary(table: pd.DataFrame, out: Path, days: int, seconds: float) -> dict[str, Any]:
    """Totals over customers, the same keys whichever engine ran."""
    return {
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


def check_history_start(value: str | None) -> None:
    """Refuse an unknown ``--history-start`` before reading files."""
    from nba.calibration.filtering import HISTORY_STARTS

    if value is not None and value not in HISTORY_STARTS:
        raise NBAValidationError(f"--history-start: {value!r} is not one of {list(HISTORY_STARTS)}")
