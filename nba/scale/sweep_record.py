"""The MLflow side of a sweep: the parent run, the trials table, closing every trial's run
honestly (Tune ends a stopped trial's process, so its run cannot close itself), registering
the best, and the figure of every learning curve."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests children under their parent
TRIAL_TAG = "nba.sweep.trial"
KIND_TAG = "nba.sweep.kind"
STOPPED_TAG = "nba.sweep.stopped_at_step"
TABLE_ARTIFACT = "sweep/trials.json"
FIGURE_ARTIFACT = "sweep/learning_curves.png"
COMPLETED, STOPPED, FAILED = "completed", "stopped early", "failed"


@dataclass
class SweepResult:
    """What a sweep (or a twins run) produced."""

    parent_run_id: str
    trials: pd.DataFrame
    seconds: float
    best_run_id: str | None = None
    model_version: str | None = None
    model_name: str | None = None


def register_best(client: Any, result: SweepResult, register: bool) -> None:
    """The best completed trial (highest final value): noted, and registered when asked."""
    table = result.trials
    completed = table[table["status"] == COMPLETED]
    if completed.empty:
        return
    best = completed.loc[completed["value"].idxmax()]
    result.best_run_id = str(best["run_id"])
    if register and result.model_name:
        from nba.training.publish import register_once

        result.model_version = register_once(
            client, result.best_run_id, result.model_name, str(best["model_uri"]), move_alias=True
        )
        table.loc[best.name, "model_version"] = result.model_version


@contextmanager
def failing(client: Any, parent: str) -> Iterator[None]:
    """The parent run closed FAILED (KILLED on Ctrl-C) with the error if the sweep breaks:
    never left RUNNING in the UI."""
    try:
        yield
    except BaseException as exc:
        client.set_tag(parent, "nba.error", f"{type(exc).__name__}: {exc}"[:5000])
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        client.set_terminated(parent, status)
        raise


def client_for(tracking_uri: str | None) -> tuple[Any, str]:
    """The store's client; also MLflow's current URI, as ``nba train`` sets it (registering a
    model goes through the fluent API)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from nba.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri), uri


def parent_run(client: Any, uri: str, experiment: str, name: str, kind: str) -> str:
    from nba.tracking import ensure_experiment, run_tags

    experiment_id = ensure_experiment(client, experiment, uri)
    run = client.create_run(experiment_id, run_name=name, tags=run_tags({KIND_TAG: kind}))
    return str(run.info.run_id)


def log_inputs(client: Any, run_id: str, params: dict[str, Any], texts: dict[str, str]) -> None:
    from nba.tracking import log_params

    log_params(client, run_id, {key: str(value) for key, value in params.items()})
    for path, text in texts.items():
        client.log_text(run_id, text, path)


def trials_table(
    client: Any, experiment: str, parent: str, grid: Any, keys: tuple[str, ...]
) -> pd.DataFrame:
    """One row per trial (its settings, status, last point, run), with stopped and failed
    trials' runs closed: Tune ends a stopped trial's process, so its run cannot close itself."""
    runs = _child_runs(client, experiment, parent)
    rows = []
    for number, trial in enumerate(grid):
        metrics = trial.metrics or {}
        run = runs.get(str(metrics.get("trial_id", "")))
        status = COMPLETED if metrics.get("completed") else FAILED if trial.error else STOPPED
        row: dict[str, Any] = {"trial": number, "status": status}
        for key in keys:
            value = trial.config.get(key)
            if isinstance(value, dict):
                row.update({path: _cell(v) for path, v in value.items()})
            elif value is not None:
                row[key] = Path(str(value)).stem
        row |= {
            "timesteps": metrics.get("timesteps"),
            "value": metrics.get("value"),
            "share_of_optimum": metrics.get("share_of_optimum"),
            "run_id": metrics.get("run_id") or (run.info.run_id if run else None),
            "model_uri": metrics.get("model_uri") or None,
            "model_version": metrics.get("model_version") or None,
            "error": str(trial.error).splitlines()[0][:300] if trial.error else None,
        }
        if run is not None and status != COMPLETED:
            _close_trial_run(client, run, status, row)
        rows.append(row)
    return pd.DataFrame(rows)


def _child_runs(client: Any, experiment: str, parent: str) -> dict[str, Any]:
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent}'", max_results=5000
    )
    return {run.data.tags.get(TRIAL_TAG, ""): run for run in runs}


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _close_trial_run(client: Any, run: Any, status: str, row: dict[str, Any]) -> None:
    """A stopped trial's run is KILLED (resumable, like a run stopped by a signal), whether its
    process was ended before it could close the run (RUNNING) or while it was marking it
    FAILED with Tune's stop (a ``SystemExit``); a failed trial's run is FAILED with its error."""
    run_id = run.info.run_id
    if status == STOPPED:
        client.set_tag(run_id, STOPPED_TAG, str(row["timesteps"]))
        if "nba.error" in run.data.tags:
            client.delete_tag(run_id, "nba.error")
        client.set_terminated(run_id, "KILLED")
    elif run.info.status == "RUNNING":
        client.set_tag(run_id, "nba.error", row["error"] or "trial failed")
        client.set_terminated(run_id, "FAILED")


def close_parent(client: Any, parent: str, result: SweepResult, kind: str) -> None:
    from nba.tracking import log_metrics, set_description

    table = result.trials
    counts = {
        status: int((table["status"] == status).sum()) for status in (COMPLETED, STOPPED, FAILED)
    }
    metrics: dict[str, Any] = {
        f"{kind}/seconds": result.seconds,
        f"{kind}/trials_completed": counts[COMPLETED],
        f"{kind}/trials_stopped_early": counts[STOPPED],
        f"{kind}/trials_failed": counts[FAILED],
    }
    if result.best_run_id is not None:
        best = table[table["run_id"] == result.best_run_id].iloc[0]
        metrics |= {"best/value": best["value"], "best/share_of_optimum": best["share_of_optimum"]}
        client.set_tag(parent, "nba.sweep.best_run_id", result.best_run_id)
    if result.model_version is not None:
        client.set_tag(parent, "nba.model_version", f"{result.model_name}/{result.model_version}")
    log_metrics(client, parent, metrics, step=0)
    shown = table.drop(columns=["model_uri"]).astype({"run_id": "string"})
    client.log_table(parent, shown, TABLE_ARTIFACT)
    _log_curves(client, parent, table, result.best_run_id)
    set_description(client, parent, _description(kind, counts, table, result))
    client.set_terminated(parent, "FINISHED" if counts[COMPLETED] else "FAILED")


def _description(
    kind: str, counts: dict[str, int], table: pd.DataFrame, result: SweepResult
) -> str:
    done = f"{counts[COMPLETED]} of {len(table)} trials completed"
    if kind == "sweep":
        done += f", {counts[STOPPED]} stopped early by ASHA"
    if counts[FAILED]:
        done += f", {counts[FAILED]} failed"
    if result.best_run_id is None:
        return f"{kind}: {done}; no trial finished."
    best = table[table["run_id"] == result.best_run_id].iloc[0]
    text = f"{kind}: {done}; best run {result.best_run_id} (value {best['value']:.3f}"
    text += f", share of optimum {best['share_of_optimum']:.3f})"
    if result.model_version:
        text += f", registered as {result.model_name} version {result.model_version}"
    return text + "."


def _log_curves(client: Any, parent: str, table: pd.DataFrame, best_run_id: str | None) -> None:
    import tempfile

    from nba.scale.sweep_figure import sweep_figure

    curves, best = {}, None
    for row in table.to_dict("records"):
        if isinstance(row["run_id"], str):
            # one point per step, the last logged (a step's point is redone after its update)
            history = client.get_metric_history(row["run_id"], "eval/value")
            points = {p.step: p.value for p in sorted(history, key=lambda p: (p.step, p.timestamp))}
            curves[int(row["trial"])] = (list(points), list(points.values()), str(row["status"]))
            if row["run_id"] == best_run_id:
                best = int(row["trial"])
    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_figure(curves, Path(tmp) / Path(FIGURE_ARTIFACT).name, best)
        client.log_artifact(parent, str(path), str(Path(FIGURE_ARTIFACT).parent))


def as_json(result: SweepResult) -> dict[str, Any]:
    """The result as plain JSON (the CLI's ``--json``)."""
    return {
        "parent_run_id": result.parent_run_id,
        "best_run_id": result.best_run_id,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "seconds": round(result.seconds, 3),
        "trials": json.loads(result.trials.to_json(orient="records")),
    }
