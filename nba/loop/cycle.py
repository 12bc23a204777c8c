"""One cycle of the continuous loop: ingest, audit, retrain, evaluate, gate, decide.

Each step is a small function of the cycle's context that returns its outcome (a word), its
values (numbers and names for MLflow and the ledger) and may stop the cycle with an exit code.
The cycle is one MLflow parent run (experiment ``nba-cycle``) with a child run per step
(params, metrics, the outcome as tag ``nba.cycle.outcome``). The ledger (:mod:`nba.loop.ledger`)
records each finished step atomically, so a rerun after a kill continues at the first
unfinished step, and a rerun of a finished cycle changes nothing and returns its exit code.

The audit (step 2) is the exact forecast (:func:`nba.calibration.exact_forecast.
expected_outcomes`): from every stored customer's belief at the start of the batch's
period and the sends the batch logged, the twin's expected purchase days in the period,
against the purchase days observed. The drift statistic is
``z = (observed - expected) / sqrt(expected)`` summed over customers (a Poisson z score of the
period's purchase days); the twin has drifted when ``|z|`` exceeds ``drift_threshold``
(default 4: a twin that is right crosses it about once in 16,000 periods). Drift triggers a
recalibration attempt (:func:`nba.calibration.fit.calibrate` on the batch, the store's twin as
template); the recalibrated twin is written beside the ledger for review, and the cycle goes on
with the store's twin (the store and its beliefs are bound to one twin: a new twin is a new
store, bootstrapped with ``nba ingest``). A failed recalibration ends the cycle with
:attr:`ExitCode.AUDIT_FAILED`.

The challenger (step 3) is trained on belief observations under the champion's registry name,
warm-started from the champion's exported weights (:mod:`nba.training.warm_start`: its actor
and critic start as the champion's, exactly; the optimiser and reward normaliser start fresh),
from scratch when there is no champion yet. Its hyper-parameters must give the champion's
network shape, else the training step fails naming the layer.
"""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd

from nba.loop.context import (
    CYCLE_EXPERIMENT,
    DAY,
    OUTCOME_TAG,
    STEPS,
    Context,
    CycleError,
    CycleResult,
    CycleSettings,
    ExitCode,
    StepResult,
)
from nba.loop.ledger import Ledger, cycle_key, file_sha256
from nba.loop.steps import STEP_FUNCTIONS, batch_events, cycle_holdout

__all__ = [
    "CYCLE_EXPERIMENT",
    "STEPS",
    "STEP_FUNCTIONS",
    "CycleError",
    "CycleResult",
    "CycleSettings",
    "ExitCode",
    "StepResult",
    "run_cycle",
]


# ----------------------------------------------------------------------------- the cycle
def run_cycle(settings: CycleSettings) -> CycleResult:
    """Run (or resume, or replay) the cycle that ``settings`` names."""
    from mlflow.tracking import MlflowClient

    from nba.tracking import ensure_experiment, resolve_tracking_uri

    began = time.perf_counter()
    events_hash, as_of = _check_inputs(settings)
    key = cycle_key(settings.store, events_hash, as_of.isoformat())
    folder = settings.state_dir or settings.store.with_name(settings.store.name + ".cycles")
    identity = {
        "store": str(settings.store.resolve()),
        "events_sha256": events_hash,
        "as_of": as_of.isoformat(),
    }
    ledger = Ledger(folder, key, identity)
    if ledger.finished is not None:  # the same cycle again: nothing changes
        done = ledger.finished
        return CycleResult(
            key,
            done["outcome"],
            done["exit_code"],
            ledger.data["parent_run_id"],
            [],
            ledger.path,
            time.perf_counter() - began,
            ledger.data["steps"],
        )
    uri = resolve_tracking_uri(settings.tracking_uri)
    client = MlflowClient(uri)
    parent = ledger.data["parent_run_id"]
    if parent is None:
        experiment = ensure_experiment(client, CYCLE_EXPERIMENT, uri)
        run = client.create_run(
            experiment,
            run_name=f"cycle-{as_of.date()}-{key[:8]}",
            tags={"nba.cycle.key": key, "nba.cycle.model": settings.model},
        )
        parent = run.info.run_id
        client.log_batch(
            parent,
            params=[_param(k, v) for k, v in {**identity, "model": settings.model}.items()],
        )
        ledger.set_parent(parent)
    else:
        client.update_run(parent, status="RUNNING")
    context = Context(settings, ledger, uri, as_of)
    ran: list[str] = []
    outcome, code = "done", int(ExitCode.DONE)
    try:
        for name in STEPS:
            record = ledger.step(name)
            if record is None:
                record = _run_step(client, parent, name, context)
                ran.append(name)
            if record.get("stop") is not None:
                outcome, code = f"{name}: {record['outcome']}", int(record["stop"])
                break
        else:
            outcome = _final_outcome(ledger)
            code = int(ledger.step("gate")["stop_after"] or ExitCode.DONE)  # type: ignore[index]
    except BaseException as error:
        client.set_tag(parent, "nba.error", f"{type(error).__name__}: {error}"[:5000])
        client.set_terminated(parent, "FAILED")
        raise
    client.set_tag(parent, OUTCOME_TAG, outcome)
    client.set_tag(parent, "nba.cycle.exit_code", str(code))
    client.set_terminated(parent, "FINISHED")
    ledger.finish(outcome, code)
    return CycleResult(
        key,
        outcome,
        code,
        parent,
        ran,
        ledger.path,
        time.perf_counter() - began,
        ledger.data["steps"],
    )


def _final_outcome(ledger: Ledger) -> str:
    gate = ledger.step("gate") or {}
    return str(gate.get("outcome", "done"))


def _run_step(client: Any, parent: str, name: str, context: Context) -> dict[str, Any]:
    """One child run: the step, its params and metrics, its outcome as a tag; then the ledger."""
    from nba.tracking import log_metrics

    experiment = client.get_run(parent).info.experiment_id
    child = client.create_run(
        experiment,
        run_name=name,
        tags={"mlflow.parentRunId": parent, "nba.cycle.step": name},
    ).info.run_id
    began = time.perf_counter()
    try:
        result = STEP_FUNCTIONS[name](context)
    except BaseException as error:
        client.set_tag(child, "nba.error", f"{type(error).__name__}: {error}"[:5000])
        client.set_terminated(child, "FAILED")
        raise
    seconds = time.perf_counter() - began
    numbers = {
        k: float(v)
        for k, v in result.values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }
    log_metrics(client, child, {**numbers, "seconds": seconds}, step=0)
    texts = {k: v for k, v in result.values.items() if k not in numbers}
    params = {**result.params, **texts}
    if params:
        client.log_batch(child, params=[_param(k, v) for k, v in params.items()])
    client.set_tag(child, OUTCOME_TAG, result.outcome)
    client.set_terminated(child, "FINISHED")
    record = {
        "outcome": result.outcome,
        "values": result.values,
        "run_id": child,
        "seconds": round(seconds, 3),
        "stop": result.stop,
        "stop_after": result.params.get("exit_code"),
    }
    context.ledger.record_step(name, record)
    return record


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param

    return Param(key, str(value)[:6000])


def _check_inputs(settings: CycleSettings) -> tuple[str, pd.Timestamp]:
    """Every option a user can mistype, before the store or MLflow is touched."""
    from nba.calibration.events import utc_time

    if not settings.store.is_file():
        raise CycleError(f"--store: no customer store at {str(settings.store)!r}")
    if not settings.events.is_file():
        raise CycleError(f"--events: no events file at {str(settings.events)!r}")
    if settings.events.suffix not in (".parquet", ".csv"):
        raise CycleError(
            f"--events: expected a .parquet or .csv file, got {settings.events.name!r}"
        )
    if not settings.model or "/" in settings.model or ":" in settings.model:
        raise CycleError(f"--model: expected a registered model name, got {settings.model!r}")
    if not (math.isfinite(settings.drift_threshold) and settings.drift_threshold > 0):
        raise CycleError(
            f"--drift-threshold: expected a positive number, got {settings.drift_threshold}"
        )
    if settings.train_steps < 1:
        raise CycleError(f"--train-steps: expected at least 1, got {settings.train_steps}")
    if settings.train_config is not None and not settings.train_config.is_file():
        raise CycleError(f"--train-config: no file at {str(settings.train_config)!r}")
    if settings.decisions is not None and settings.decisions.is_dir():
        raise CycleError(f"--decisions: {str(settings.decisions)!r} is a folder, expected a file")
    if settings.out is not None and settings.out.suffix not in (".parquet", ".csv"):
        raise CycleError(f"--out: expected a .parquet or .csv file, got {settings.out.name!r}")
    cycle_holdout(settings)  # share and salt together, in range
    events_hash = file_sha256(settings.events)
    if settings.as_of is not None:
        as_of = utc_time(settings.as_of, "--as-of")
    else:  # the next day: midnight after the batch's last event
        as_of = batch_events(settings).events["timestamp"].max().floor("D") + DAY
    return events_hash, as_of
