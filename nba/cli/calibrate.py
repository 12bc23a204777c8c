"""``nba convert``, ``nba calibrate`` and ``nba audit``: a twin from event logs, and its audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from nba.cli.options import CustomerTableOption, JsonOption, bootstrap_option, seed_option
from nba.cli.output import cell, console, describe, emit
from nba.errors import NBAValidationError

if TYPE_CHECKING:
    from nba.calibration.events import EventLog
    from nba.scenario import Scenario

AUDIT_REPLICATES = 20  # per-arm KPIs: many customers per cell, little simulation noise
FORECAST_REPLICATES = 200  # per-customer forecasts: the mean of few runs adds to the MAE


HoldoutAfterOption = Annotated[
    str | None, typer.Option("--holdout-after", help="Ignore events from this date on.")
]
HoldoutFractionOption = Annotated[
    float,
    typer.Option("--holdout-fraction", min=0.0, max=0.9, help="Share of customers kept out."),
]
HoldoutOutOption = Annotated[
    Path | None,
    typer.Option("--holdout-out", help="Folder for the held-out customers' events."),
]
WindowOption = Annotated[
    int, typer.Option("--window-days", min=1, help="Response window after a contact.")
]
ObservationEndOption = Annotated[
    str | None,
    typer.Option(
        "--observation-end",
        help="When the log's record ends (ISO 8601, exclusive): silence up to it is evidence; "
        "an event at or after it is an error. Default: the midnight (UTC) after the last event.",
    ),
]
LevelsOption = Annotated[
    str,
    typer.Option(
        "--levels",
        help="auto: each customer's own purchase-rate and dropout levels, cut from BG/NBD's "
        "gamma and beta mixing distributions fitted to the log (their number chosen by the fit; "
        "the scenario's heterogeneity block); none: one level, a twin of segments.",
    ),
]
ReferenceTimeOption = Annotated[
    str | None, typer.Option("--reference-time", help="Calibration cutoff (ISO 8601).")
]
SegmentOption = Annotated[
    list[str] | None,
    typer.Option(
        "--segment",
        help="NAME=QUERY: a condition over the customer table (comparisons, in [...], "
        "and/or/not); repeatable.",
    ),
]
HoldoutStartOption = Annotated[
    str | None,
    typer.Option("--holdout-start", help="Forecast audit: first day of the holdout window."),
]
HoldoutEndOption = Annotated[
    str | None,
    typer.Option("--holdout-end", help="Forecast audit: end of the window (exclusive)."),
]
ReplicatesOption = Annotated[
    int | None,
    typer.Option(
        "--replicates", min=2, help="Twin runs per customer (default: 20; forecast audit: 200)."
    ),
]
PlacementOption = Annotated[
    str | None,
    typer.Option(
        "--placement",
        help="Forecast audit: 'filtered' (posterior from each history) or 'rules'.",
    ),
]
HistoryStartOption = Annotated[
    str | None,
    typer.Option(
        "--history-start",
        help="Forecast audit, filtered: read each customer from the log's first purchase "
        "('log', a panel), from their own first event ('first_event') or their own first "
        "purchase, as their start ('first_purchase'). Default: as the twin's calibration "
        "recorded, else 'log'.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add the calibration commands to the ``nba`` app."""
    app.command()(convert)
    app.command()(calibrate)
    app.command()(audit)


def convert(
    dataset: Annotated[str, typer.Argument(help="hillstrom, completejourney or bank_marketing.")],
    source: Annotated[Path, typer.Argument(help="The data set's file (or folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Events file (.parquet or .csv).")],
    customers: Annotated[
        Path | None, typer.Option("--customers", "-c", help="Customer table to write.")
    ] = None,
) -> None:
    """Turn a public data set into the event-log schema (see ``nba.calibration.events``)."""
    from nba.calibration.adapters import ADAPTERS
    from nba.calibration.events import save_events
    from nba.cli.inputs import TABLE_SUFFIXES, check_output, reading

    if dataset not in ADAPTERS:
        raise NBAValidationError(f"DATASET: unknown {dataset!r}; expected one of {list(ADAPTERS)}")
    if not source.exists():
        raise NBAValidationError(f"SOURCE: no such file or folder {str(source)!r}")
    check_output(out, "--out", TABLE_SUFFIXES)
    if customers is not None:
        check_output(customers, "--customers", TABLE_SUFFIXES)
    with reading("SOURCE", source):
        log = ADAPTERS[dataset](source)
    save_events(log, out, customers)
    counts = log.events["event"].value_counts()
    console.print(
        f"{len(log.events):,} events for {len(log.customer_ids):,} customers -> {out}: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)
    )


def calibrate(
    events: Annotated[Path, typer.Option("--events", "-e", help="Event log (CSV or parquet).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scenario YAML to write.")],
    customers: CustomerTableOption = None,
    holdout_after: HoldoutAfterOption = None,
    holdout_fraction: HoldoutFractionOption = 0.0,
    holdout_out: HoldoutOutOption = None,
    window_days: WindowOption = 14,
    reference_time: ReferenceTimeOption = None,
    observation_end: ObservationEndOption = None,
    levels: LevelsOption = "none",
    max_personas: Annotated[int, typer.Option("--max-personas", min=2)] = 12,
    bootstrap: Annotated[int, bootstrap_option(20)] = 200,
    seed: Annotated[int, seed_option("Seed of the holdout split, clustering and bootstrap.")] = 0,
    name: Annotated[str, typer.Option("--name", help="Scenario name.")] = "calibrated",
    mlflow: Annotated[bool, typer.Option(help="Log the report as an MLflow run.")] = True,
    as_json: JsonOption = False,
) -> None:
    """Fit a scenario from an event log; writes the YAML and a report (also to MLflow).

    A purchase-only log (no sends) is accepted: the twin then takes the template's channels
    and actions, and their response quantities are assumed (the summary says so).
    """
    from nba.calibration.fit import calibrate as fit
    from nba.calibration.report import log_to_mlflow, write_report
    from nba.cli.inputs import check_output
    from nba.progress import phase

    check_output(out, "--out", (".yaml", ".yml"))
    if holdout_fraction > 0 and holdout_out is None:
        raise NBAValidationError("--holdout-out: needed with --holdout-fraction")
    if holdout_out is not None and holdout_out.exists() and not holdout_out.is_dir():
        raise NBAValidationError(f"--holdout-out: {str(holdout_out)!r} is not a folder")
    _check_event_files(events, customers)
    with phase(f"calibration: reading {events.name}"):
        log = _load_events(events, customers)
    if holdout_fraction > 0 and holdout_out is not None:
        log = _hold_out(log, holdout_fraction, holdout_out, seed)
    with phase(
        "calibration: fitting personas, stages, rates and responses, "
        f"{bootstrap} bootstrap replicates"
    ):
        result = fit(
            log,
            reference_time=reference_time,
            window_days=window_days,
            holdout_after=holdout_after,
            observation_end=observation_end,
            levels=levels,
            name=name,
            k_range=range(2, max_personas + 1),
            n_bootstrap=bootstrap,
            seed=seed,
            data_label=events.name,
        )
    result.scenario.to_yaml(out)
    folder = out.with_suffix("").with_name(out.stem + "_report")
    with phase("calibration: writing the report"):
        report = write_report(result, folder)
    run_id = None
    if mlflow:
        with phase("calibration: logging the report to MLflow"):
            run_id = log_to_mlflow(result, folder)
    _summarise(result, out, report, run_id, as_json)


def _summarise(result: Any, out: Path, report: Path, run_id: str | None, as_json: bool) -> None:
    """The calibration's summary: one JSON object, or the parameter table, a line and notes
    (a purchase-only log's says what is assumed and why)."""
    calibration = result.scenario.calibration
    observables = calibration.observables if calibration is not None else {}
    summary = {
        "scenario": str(out),
        "report": str(report),
        "customers": len(result.snapshot.customers),
        "personas": result.persona_model.k,
        "silhouette": result.persona_model.silhouette,
        "fitted": int((result.parameters["source"] == "fitted").sum()),
        "assumed": int((result.parameters["source"] == "assumed").sum()),
        "seconds": round(result.seconds, 2),
        "mlflow_run": run_id,
        "sends_logged": observables.get("sends_logged", True),
        "observation_end": observables.get("observation_end"),
        "reference_time": result.snapshot.reference.isoformat(),
        "levels": _levels(result.scenario),
        "notes": list(result.notes),
    }
    if as_json:
        print(json.dumps(summary, default=str))
        return
    emit(
        result.parameters.round(6).to_dict(orient="records"),
        False,
        title=f"Calibrated {result.scenario.name}",
    )
    console.print(
        f"{summary['personas']} personas (silhouette by k: {cell(summary['silhouette'])}); "
        f"{summary['fitted']} fitted, {summary['assumed']} assumed; {summary['seconds']} s. "
        f"Scenario -> {out}; report -> {report}"
    )
    if summary["levels"]:
        levels = summary["levels"]
        console.print(
            f"Each customer's own levels: {levels['rate']} purchase-rate x {levels['dropout']} "
            "dropout (heterogeneity.* rows of the table)"
        )
    for note in result.notes:
        console.print(f"Note: {note}")


def _levels(scenario: Any) -> dict[str, int] | None:
    """How many rate and dropout levels the twin carries, or None without levels."""
    block = scenario.heterogeneity
    if block is None:
        return None
    return {"rate": len(block.rate_levels), "dropout": len(block.dropout_levels)}


def _hold_out(log: EventLog, fraction: float, folder: Path, seed: int) -> EventLog:
    """Write a random ``fraction`` of the customers' events to ``folder`` (for ``nba audit``)
    and return the log of the others, which calibration then fits."""
    from nba.calibration.events import save_events

    ids = log.customer_ids
    held = np.random.default_rng(seed).random(len(ids)) < fraction
    folder.mkdir(parents=True, exist_ok=True)
    save_events(
        log.for_customers(ids[held]),
        folder / "events.parquet",
        folder / "customers.parquet" if log.customers is not None else None,
    )
    return log.for_customers(ids[~held])


def audit(
    scenario: Annotated[Path, typer.Option("--scenario", "-s", help="Calibrated scenario YAML.")],
    events: Annotated[Path, typer.Option("--events", "-e", help="Held-out event log.")],
    customers: CustomerTableOption = None,
    segment: SegmentOption = None,
    holdout_start: HoldoutStartOption = None,
    holdout_end: HoldoutEndOption = None,
    replicates: ReplicatesOption = None,
    placement: PlacementOption = None,
    history_start: HistoryStartOption = None,
    seed: Annotated[int, seed_option("Seed of the twin's simulation.")] = 0,
    strict: Annotated[bool, typer.Option(help="Exit with status 1 when a KPI fails.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Simulate the twin on held-out customers under the logged actions; compare KPI by KPI.

    With ``--holdout-start`` and ``--holdout-end`` it audits per-customer purchase-count
    forecasts in that window against reality and a BG/NBD baseline instead.
    """
    from nba.calibration.audit import audit as run_audit
    from nba.cli.inputs import check_input, reading
    from nba.progress import phase
    from nba.scenario import Scenario

    if (holdout_start is None) != (holdout_end is None):
        raise NBAValidationError("--holdout-start, --holdout-end: give both or neither")
    segments = _segments(segment or []) if holdout_start is None else {}
    check_input(scenario, "--scenario")
    with reading("--scenario", scenario):
        twin_scenario = Scenario.from_yaml(scenario)
    _check_event_files(events, customers)
    log = _load_events(events, customers)
    if holdout_start is not None and holdout_end is not None:
        if segment:
            raise NBAValidationError("--segment: not used by the forecast audit")
        window = (holdout_start, holdout_end)
        result = _forecast(twin_scenario, log, window, replicates, placement, history_start, seed)
        title = "Twin purchase-count forecast vs held-out reality and BG/NBD"
    else:
        for option, value in (("--placement", placement), ("--history-start", history_start)):
            if value is not None:
                raise NBAValidationError(f"{option}: only used by the forecast audit")
        with phase(f"audit: simulating the twin for {len(log.customer_ids):,} customers"):
            result = run_audit(
                twin_scenario,
                log,
                segments=segments,
                replicates=replicates or AUDIT_REPLICATES,
                seed=seed,
            )
        title = "Twin vs held-out reality"
    rows = result.table.round(5).to_dict(orient="records")
    if as_json:
        print(json.dumps({"summary": result.summary(), "kpis": rows}, default=str))
    else:
        emit(rows, False, title=title)
        verdict = "PASS" if result.passed else "FAIL"
        console.print(f"{verdict}: {describe(result.summary())}")
    if strict and not result.passed:
        raise typer.Exit(1)


def _forecast(
    scenario: Scenario,
    log: EventLog,
    window: tuple[str, str],
    replicates: int | None,
    placement: str | None,
    history_start: str | None,
    seed: int,
) -> Any:
    """The forecast audit: per-customer purchase counts in ``window`` against reality."""
    from nba.calibration.forecast import forecast_audit
    from nba.progress import phase

    with phase(f"audit: forecasting {len(log.customer_ids):,} customers' purchases"):
        return forecast_audit(
            scenario,
            log,
            *window,
            replicates=replicates or FORECAST_REPLICATES,
            placement=placement or "filtered",
            history_start=history_start,
            seed=seed,
        )


def _segments(items: list[str]) -> dict[str, str]:
    """``NAME=QUERY`` options as a dict, each query parsed now (bad text fails before any file
    is read); the restricted condition language of :mod:`nba.calibration.segments`."""
    from nba.calibration.segments import Segment

    segments: dict[str, str] = {}
    for item in items:
        key, sep, query = item.partition("=")
        name, query = key.strip(), query.strip()
        if not sep or not name or not query:
            raise NBAValidationError(f"--segment: expected NAME=QUERY, got {item[:80]!r}")
        if name in segments:
            raise NBAValidationError(f"--segment: {name!r} is given twice")
        Segment.parse(name, query)
        segments[name] = query
    return segments


def _check_event_files(events: Path, customers: Path | None) -> None:
    """Refuse unreadable event/customer files before any work (or progress line) starts."""
    from nba.cli.inputs import sniff_table

    sniff_table(events, "--events")
    if customers is not None:
        sniff_table(customers, "--customers")


def _load_events(events: Path, customers: Path | None) -> EventLog:
    """The event log (and customer table), read after :func:`_check_event_files`; a failure
    further into a file (a ragged row) is still one line naming the option."""
    from nba.calibration.events import load_events
    from nba.cli.inputs import reading

    option = "--events" if customers is None else "--events/--customers"
    with reading(option, events if customers is None else f"{events}', '{customers}"):
        return load_events(events, customers, duplicates="drop")
