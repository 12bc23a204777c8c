"""The calibration report: a markdown page with figures, written to a folder and to MLflow.

It is what a reviewer reads before trusting a fitted twin: how personas were chosen (the
criterion per k), what each persona looks like, every fitted quantity with its interval and
every assumed one with its prior, and the notes (dropped duplicates, identification limits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nba.calibration.audit import AuditResult
from nba.calibration.fit import CalibrationResult
from nba.io import csv_bytes, write_bytes_atomic, write_text_atomic
from nba.scenario import Scenario
from nba.types import IntArray


def write_report(result: CalibrationResult, folder: Path, audit: AuditResult | None = None) -> Path:
    """Write ``report.md``, ``parameters.csv``, ``scenario.yaml`` and figures into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    scenario = result.scenario
    scenario.to_yaml(folder / "scenario.yaml")
    write_bytes_atomic(folder / "parameters.csv", csv_bytes(result.parameters))
    _silhouette_figure(result, folder)
    _interval_figure(result, folder)
    table = result.snapshot.customers
    personas = pd.DataFrame(
        {
            "persona": [p.name for p in scenario.personas],
            "share": [p.share for p in scenario.personas],
            "cluster customers": _cluster_customers(table["persona"].to_numpy(), scenario),
            "base rate / day": [p.base_purchase_rate for p in scenario.personas],
            "basket": [p.basket_value for p in scenario.personas],
            "profile": [p.description for p in scenario.personas],
        }
    )
    fitted = result.parameters[result.parameters["source"] == "fitted"]
    assumed = result.parameters[result.parameters["source"] == "assumed"]
    lines = [
        f"# Calibration report: {scenario.name}",
        "",
        f"- data: {scenario.calibration.data if scenario.calibration else ''}",
        f"- reference time: {result.snapshot.reference.isoformat()}, response window "
        f"{result.snapshot.window_days} days",
        f"- customers: {len(table):,}; personas: {result.persona_model.k} "
        "(k-means; the fewest k explaining 90% of the variance, or the most tried)",
        f"- stage rules: active within {result.rules.active_days} days of the last purchase; "
        + (
            f"loyal from {result.rules.loyal_purchases} purchases a year"
            if result.rules.loyal_purchases
            else "no loyal stage (purchase frequency not observed)"
        )
        + f" ({result.rules.fitted_from})",
        f"- fitted quantities: {len(fitted)}, assumed: {len(assumed)}; fit took "
        f"{result.seconds:.1f} s",
        "",
        "## Personas",
        "",
        _markdown(personas),
        "",
        "![silhouette](silhouette.png)",
        "",
        "## Fitted quantities (95% bootstrap intervals)",
        "",
        _markdown(fitted),
        "",
        "![intervals](intervals.png)",
        "",
        "## Assumed quantities (priors)",
        "",
        _markdown(assumed),
    ]
    if result.notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in result.notes)]
    if audit is not None:
        lines += ["", "## Audit against held-out data", "", _markdown(audit.table)]
    path = folder / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def log_to_mlflow(result: CalibrationResult, folder: Path, tracking_uri: str | None = None) -> str:
    """Record the calibration as an MLflow run (params, metrics, report, scenario); its id."""
    from mlflow.tracking import MlflowClient

    from nba.tracking import ensure_experiment, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    experiment = ensure_experiment(client, "nba-calibration", uri)
    run = client.create_run(experiment, tags={"nba.kind": "calibration"})
    run_id = run.info.run_id
    try:
        scenario = result.scenario
        params = {
            "reference_time": result.snapshot.reference.isoformat(),
            "window_days": str(result.snapshot.window_days),
            "customers": str(len(result.snapshot.customers)),
            "personas": str(result.persona_model.k),
            "active_days": str(result.rules.active_days),
            "loyal_purchases": str(result.rules.loyal_purchases),
            "scenario_fingerprint": scenario.fingerprint()[:16],
        }
        for key, value in params.items():
            client.log_param(run_id, key, value)
        client.log_metric(run_id, "fit_seconds", result.seconds)
        for k, score in result.persona_model.silhouette.items():
            client.log_metric(run_id, "silhouette", score, step=k)
        client.log_metric(
            run_id, "fitted_quantities", float((result.parameters["source"] == "fitted").sum())
        )
        client.log_artifacts(run_id, str(folder), "calibration")
        client.set_terminated(run_id, "FINISHED")
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    return run_id


def _silhouette_figure(result: CalibrationResult, folder: Path) -> Path:
    scores = result.persona_model.silhouette
    fig = Figure(figsize=(5, 3))  # no pyplot: no global backend, nothing to close
    ax = fig.subplots()
    ax.plot(list(scores), list(scores.values()), marker="o")
    ax.axvline(result.persona_model.k, color="grey", linestyle="--", label="chosen k")
    ax.set_xlabel("personas (k)")
    ax.set_ylabel("silhouette score")
    ax.legend()
    fig.tight_layout()
    path = folder / "silhouette.png"
    fig.savefig(path, dpi=110)
    return path


def _interval_figure(result: CalibrationResult, folder: Path) -> Path:
    fitted = result.parameters.dropna(subset=["lower", "upper"])
    fitted = fitted[fitted["source"] == "fitted"]
    # relative width makes rates, lifts and money comparable on one axis
    scale = fitted["estimate"].abs().replace(0, 1.0)
    fig = Figure(figsize=(7, max(3, 0.22 * len(fitted))))
    ax = fig.subplots()
    y = np.arange(len(fitted))
    ax.errorbar(
        np.ones(len(fitted)),
        y,
        xerr=[
            (fitted["estimate"] - fitted["lower"]) / scale,
            (fitted["upper"] - fitted["estimate"]) / scale,
        ],
        fmt="o",
    )
    ax.set_yticks(y, fitted["name"], fontsize=7)
    ax.set_xlabel("estimate = 1; 95% interval relative to it")
    fig.tight_layout()
    path = folder / "intervals.png"
    fig.savefig(path, dpi=110)
    return path


def _markdown(frame: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    if frame.empty:
        return "(none)"
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    header = "| " + " | ".join(map(str, shown.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _cluster_customers(cluster: IntArray, scenario: Scenario) -> IntArray:
    """Customers of each scenario persona's persona-model cluster (rate tiers share theirs)."""
    tiers = scenario.calibration.persona_tiers if scenario.calibration else []
    tiers = tiers or [1] * len(scenario.personas)
    counts = np.bincount(cluster, minlength=len(tiers))
    return np.repeat(counts, tiers)
