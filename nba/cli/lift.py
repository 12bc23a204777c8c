"""``nba lift``: treated vs the persistent holdout, per KPI and segment, over any period."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from nba.cli.options import (
    CustomerTableOption,
    JsonOption,
    TrackingUriOption,
    bootstrap_option,
    seed_option,
)
from nba.errors import NBAValidationError

EXPERIMENT = "nba-lift"


def read_decisions(path: Path, scenario: Any = None) -> pd.DataFrame:
    """The log's ``customer_id``, ``decided_at``, ``holdout`` and ``model_version`` (read by the
    decision log's own reader; a log from before holdouts has nobody held out). With a scenario
    whose feature layout the log's features follow, also ``persona`` and ``stage`` decoded from
    them (for ``--by``; a belief model's at their most likely values)."""
    from nba.serving.decision_log import read_decision_log

    records = read_decision_log(path, missing="zero")  # lift joins its own outcomes
    n = len(records.customer_id)
    frame = pd.DataFrame(
        {
            "customer_id": np.asarray(records.customer_id).astype(str),
            "decided_at": records.decided_at,
            "model_version": records.model_version,
            "holdout": np.zeros(n, bool) if records.holdout is None else records.holdout,
        }
    )
    if scenario is None or records.feature_names is None or not n:
        return frame
    from nba.features import FeatureBuilder
    from nba.parameters import ScenarioArrays

    try:
        builder = FeatureBuilder.for_names(
            ScenarioArrays.from_scenario(scenario), records.feature_names
        )
    except NBAValidationError:
        return frame  # features of another scenario: no segments from them
    state, _ = builder.decode(np.asarray(records.features, dtype=np.float64))
    frame["persona"] = np.asarray(scenario.persona_names)[state.persona]
    frame["stage"] = np.asarray(scenario.stage_names)[state.stage]
    return frame


OutcomesOption = Annotated[
    Path,
    typer.Option(
        "--outcomes", help="Events (CSV/Parquet, the calibration schema) or per-customer KPIs."
    ),
]
ScenarioOption = Annotated[
    str | None,
    typer.Option(
        "--scenario",
        "-s",
        help="Scenario for value (margin, contact costs) and persona/stage segments.",
    ),
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Segment column(s), comma-separated: persona, stage, ..."),
]


def lift(
    log: Annotated[Path, typer.Option("--log", help="Decision log (SQLite) written by nba.")],
    outcomes: OutcomesOption,
    scenario: ScenarioOption = None,
    by: ByOption = None,
    customers: CustomerTableOption = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First day (or time) of the period, UTC.")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="Last day of the period (a date is included whole), UTC."),
    ] = None,
    kpis: Annotated[
        str | None,
        typer.Option("--kpis", help="Comma-separated: value, revenue, purchases, ..."),
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="welch (normal) or bootstrap (percentile).")
    ] = "welch",
    bootstrap: Annotated[int, bootstrap_option(2)] = 1000,
    seed: Annotated[int, seed_option("Seed of the bootstrap.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the table as CSV.")] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Log the table and the lift figure to MLflow.")
    ] = False,
    experiment: Annotated[
        str, typer.Option("--experiment", help="MLflow experiment for --mlflow.")
    ] = EXPERIMENT,
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """Treated vs holdout mean per customer, per KPI and segment, with 95% intervals."""
    from nba.lift import cumulative_lift
    from nba.lift import lift as compute

    if interval not in ("welch", "bootstrap"):
        raise NBAValidationError(f"--interval: expected welch or bootstrap, got {interval!r}")
    loaded, decisions, events = _inputs(log, outcomes, customers, scenario)
    lo, hi = _bound(start, "--from", False), _bound(end, "--to", True)
    segments = _segments(by, decisions, scenario is not None)
    chosen = [k.strip() for k in kpis.split(",") if k.strip()] if kpis else None
    result = compute(
        decisions,
        events,
        kpis=chosen,
        by=segments,
        start=lo,
        end=hi,
        scenario=loaded,
        interval=interval,  # type: ignore[arg-type]
        n_boot=bootstrap,
        seed=seed,
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result.to_csv(out, index=False)
    run_id = None
    if mlflow:  # the cumulative figure needs events (per-customer KPI tables have no days)
        kpi = "value" if loaded is not None else "revenue"
        daily = "event" in events.columns
        cumulative = (
            cumulative_lift(decisions, events, kpi, lo, hi, scenario=loaded) if daily else None
        )
        run_id = _log_run(result, cumulative, experiment, tracking_uri, log, outcomes)
    _show(result, run_id, as_json)


def _segments(by: str | None, decisions: pd.DataFrame, scenario: bool) -> list[str] | None:
    """The ``--by`` columns, each one the decisions have."""
    segments = [s.strip() for s in by.split(",") if s.strip()] if by else None
    for column in segments or []:
        if column not in decisions.columns:
            hint = "" if scenario else " (pass --scenario to decode persona and stage)"
            raise NBAValidationError(f"--by: no column {column!r} in the decisions{hint}")
    return segments


def _inputs(
    log: Path, outcomes: Path, customers: Path | None, scenario: str | None
) -> tuple[Any, pd.DataFrame, pd.DataFrame]:
    """(the scenario or None, the logged decisions with any customer columns, the outcomes)."""
    from nba.cli.inputs import TABLE_SUFFIXES, check_decision_log, check_input, reading

    check_decision_log(log, "--log", must_exist=True)
    check_input(outcomes, "--outcomes", TABLE_SUFFIXES)
    if customers is not None:
        check_input(customers, "--customers", TABLE_SUFFIXES)
    loaded = None
    if scenario is not None:
        from nba.scenarios import load_scenario

        with reading("--scenario", scenario):
            loaded = load_scenario(scenario)
    with reading("--log", log):
        decisions = read_decisions(log, loaded)
    with reading("--outcomes", outcomes):
        events = _table(outcomes)
    if customers is not None:
        with reading("--customers", customers):
            table = _table(customers)
        if "customer_id" not in table.columns:
            raise NBAValidationError("--customers: no customer_id column")
        table["customer_id"] = table["customer_id"].astype(str)
        extra = [c for c in table.columns if c != "customer_id" and c not in decisions.columns]
        decisions["customer_id"] = decisions["customer_id"].astype(str)
        decisions = decisions.merge(table[["customer_id", *extra]], on="customer_id", how="left")
    return loaded, decisions, events


def _show(result: pd.DataFrame, run_id: str | None, as_json: bool) -> None:
    """The lift table as JSON or as a table for a person, and the MLflow run when logged."""
    from nba.cli.output import emit

    rows = [{str(k): v for k, v in row.items()} for row in result.to_dict(orient="records")]
    if as_json:
        typer.echo(json.dumps({"run_id": run_id, "rows": _plain(rows)}, indent=2, default=str))
        return
    period = f"{result.attrs.get('start', '')[:10]} to {str(result.attrs.get('end') or '...')[:10]}"
    emit(rows, False, f"Lift against the holdout, {period}")
    if run_id is not None:
        typer.echo(f"MLflow run {run_id}")


def _plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import math

    return [
        {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
        for r in rows
    ]


def _bound(text: str | None, option: str, inclusive_day: bool) -> pd.Timestamp | None:
    """A UTC bound; a plain date given to ``--to`` includes that whole day."""
    if text is None:
        return None
    try:
        stamp = pd.Timestamp(text)
    except (TypeError, ValueError):
        raise NBAValidationError(f"{option}: not a date or time: {text!r}") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if inclusive_day and len(text.strip()) <= 10:  # YYYY-MM-DD
        stamp += pd.Timedelta(days=1)
    return stamp


def _table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _log_run(
    table: pd.DataFrame,
    cumulative: pd.DataFrame | None,
    experiment: str,
    tracking_uri: str | None,
    log: Path,
    outcomes: Path,
) -> str:
    """One MLflow run: the table (CSV and metrics of the whole population) and the figure."""
    from mlflow.tracking import MlflowClient

    from nba.lift_figure import save_lift_figure
    from nba.tracking import ensure_experiment, log_metrics, log_params, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    run = client.create_run(ensure_experiment(client, experiment, uri), tags={"nba.kind": "lift"})
    run_id = run.info.run_id
    try:
        log_params(
            client,
            run_id,
            {
                "log": str(log),
                "outcomes": str(outcomes),
                "start": str(table.attrs.get("start")),
                "end": str(table.attrs.get("end")),
                "interval": str(table.attrs.get("interval")),
            },
        )
        overall = table[table["segment"] == "all"]
        metrics: dict[str, Any] = {}
        for row in overall.to_dict(orient="records"):
            for field in ("difference", "difference_lower", "difference_upper", "lift"):
                metrics[f"{row['kpi']}_{field}"] = row[field]
        metrics["treated_n"] = int(overall["treated_n"].iloc[0])
        metrics["control_n"] = int(overall["control_n"].iloc[0])
        log_metrics(client, run_id, metrics, step=0)
        with tempfile.TemporaryDirectory() as folder:
            table.to_csv(Path(folder) / "lift.csv", index=False)
            if cumulative is not None:
                cumulative.to_csv(Path(folder) / "cumulative_lift.csv", index=False)
                save_lift_figure(cumulative, Path(folder) / "lift.png")
            client.log_artifacts(run_id, folder, "lift")
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def register(app: typer.Typer) -> None:
    """Add ``lift`` to the ``nba`` app."""
    app.command("lift")(lift)
