"""Where a closed loop's report goes: a folder of tables and a figure, and an MLflow run."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from nba.io import csv_bytes, write_bytes_atomic, write_text_atomic
from nba.loop.closed_loop import LoopReport
from nba.loop.world import WorldSpec

LOOP_EXPERIMENT = "nba-loop"
#: per-week columns logged as MLflow metrics (step = the loop week)
WEEK_METRICS = (
    "champion_value",
    "share",
    "share_of_world_twin",
    "regret",
    "treated_value",
    "holdout_value",
    "lift",
    "lift_lower",
    "lift_upper",
    "true_lift",
    "audit_z",
    "worst_action_z",
)


def write_report(report: LoopReport, spec: WorldSpec, folder: Path) -> list[Path]:
    """``weeks.csv``, ``gates.csv``, ``summary.json`` (with the world) and ``loop.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = [folder / "weeks.csv", folder / "gates.csv", folder / "summary.json"]
    write_bytes_atomic(written[0], csv_bytes(report.weeks))
    write_bytes_atomic(written[1], csv_bytes(report.gates))
    document = {
        "summary": report.summary,
        "world": spec.model_dump(mode="json"),
        "twin_errors": report.twin_errors,
    }
    write_text_atomic(written[2], json.dumps(document, indent=2, default=str))
    figure = _figure(report)
    if figure is not None:
        partial = folder / "loop.partial.png"
        figure.savefig(partial, dpi=110)
        partial.replace(folder / "loop.png")
        written.append(folder / "loop.png")
    return written


def log_report(
    report: LoopReport, spec: WorldSpec, tracking_uri: str | None, experiment: str
) -> str:
    """One MLflow run: the world as params, each week's measures as metrics, the folder's
    files as artifacts; the summary's numbers as the run's final metrics."""
    from mlflow.tracking import MlflowClient

    from nba.tracking import ensure_experiment, log_metrics, log_params, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    run = client.create_run(
        ensure_experiment(client, experiment, uri),
        run_name=f"loop-seed-{report.seed}",
        tags={"nba.kind": "closed_loop"},
    )
    run_id = run.info.run_id
    try:
        params = {k: json.dumps(v) for k, v in spec.model_dump(mode="json").items()}
        log_params(client, run_id, {**params, "seed": str(report.seed)})
        for row in report.weeks.to_dict(orient="records"):
            values = {k: row[k] for k in WEEK_METRICS if k in row}
            log_metrics(client, run_id, values, step=int(row["week"]))
        log_metrics(client, run_id, _numbers(report.summary), step=spec.weeks)
        with tempfile.TemporaryDirectory() as temporary:
            write_report(report, spec, Path(temporary))
            client.log_artifacts(run_id, temporary, "loop")
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _numbers(summary: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in summary.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _figure(report: LoopReport) -> Any:
    """The loop's figure (:mod:`nba.loop.figures`)."""
    from nba.loop.figures import loop_figure

    return loop_figure(report)
