"""One cycle of the continuous loop: ingest, audit, retrain, evaluate, gate, decide.

Each step is a small function of the cycle's context that returns its outcome (a word), its
values (numbers and names for MLflow and the ledger) and may stop the cycle with an exit code.
The cycle is one MLflow parent run (experiment ``nba-cycle``) with a child run per step
(params, metrics, the outcome as tag ``nba.cycle.outcome``). The ledger (:mod:`nba.loop.ledger`)
records each finished step atomically, so a rerun after a kill continues at the first
unfinished step, and a rerun of a finished cycle changes nothing and returns its exit code.

The audit (step 2) is the exact forecast (:func:`nba.calibration.exact_forecast.
expected_outcomes`): from each returning customer's stored belief at the start of the batch's
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
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.loop.ledger import Ledger, cycle_key, file_sha256

CYCLE_EXPERIMENT = "nba-cycle"
STEPS = ("ingest", "audit", "train", "evaluate", "gate", "decide")
OUTCOME_TAG = "nba.cycle.outcome"
DAY = pd.Timedelta(days=1)


class ExitCode(IntEnum):
    """What a scheduler reads: 0 done with the challenger promoted, 2 bad input, 3 the gate
    refused the challenger (the champion is kept and still decides), 4 the audit found drift
    and recalibration failed (nothing trained or decided)."""

    DONE = 0
    BAD_INPUT = 2
    GATE_REFUSED = 3
    AUDIT_FAILED = 4


class CycleError(NBAValidationError):
    """A cycle's input is unusable (names the option)."""


@dataclass(frozen=True)
class CycleSettings:
    """Everything one cycle needs; ``train_options`` go to :func:`nba.training.train`."""

    store: Path
    events: Path
    model: str
    as_of: str | None = None
    holdout_share: float | None = None
    holdout_salt: str | None = None
    holdout_control: str = "no_action"
    drift_threshold: float = 4.0
    train_steps: int = 200_000
    train_seed: int = 0
    train_config: Path | None = None  # hyper-parameter YAML (default: the packaged one)
    train_options: dict[str, Any] = field(default_factory=dict)
    decisions: Path | None = None
    out: Path | None = None
    tracking_uri: str | None = None
    epsilon: float = 0.0
    capacity: dict[str, int | None] = field(default_factory=dict)
    twin_customers: int = 2_000
    bootstrap: int = 200
    state_dir: Path | None = None


@dataclass
class CycleResult:
    """The cycle's end: outcome, exit code, parent run, steps done now, and the ledger file."""

    key: str
    outcome: str
    exit_code: int
    parent_run_id: str | None
    ran: list[str]
    ledger: Path
    seconds: float
    steps: dict[str, Any]


@dataclass
class StepResult:
    outcome: str
    values: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    stop: int | None = None  # an exit code ends the cycle after this step


@dataclass
class Context:
    settings: CycleSettings
    ledger: Ledger
    uri: str
    as_of: pd.Timestamp

    def values(self, step: str) -> dict[str, Any]:
        record = self.ledger.step(step)
        return {} if record is None else record["values"]

    @property
    def work(self) -> Path:
        return self.ledger.work_dir


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
    _holdout(settings)  # share and salt together, in range
    events_hash = file_sha256(settings.events)
    if settings.as_of is not None:
        as_of = utc_time(settings.as_of, "--as-of")
    else:  # the next day: midnight after the batch's last event
        as_of = _load_events(settings).events["timestamp"].max().floor("D") + DAY
    return events_hash, as_of


def _holdout(settings: CycleSettings) -> Any:
    from nba.holdout import Holdout

    share, salt = settings.holdout_share, settings.holdout_salt
    if share is None and salt is None:
        return None
    if share is None or salt is None:
        missing = "--holdout-share" if share is None else "--holdout-salt"
        raise CycleError(f"{missing}: needed with the other --holdout-* option")
    try:
        return Holdout(share, salt, settings.holdout_control)  # type: ignore[arg-type]
    except NBAValidationError as error:
        raise CycleError(f"--holdout-{error}") from None


def _load_events(settings: CycleSettings) -> Any:
    from nba.calibration.events import load_events

    try:
        log = load_events(settings.events, duplicates="drop")
    except NBAValidationError as error:
        raise CycleError(f"--events: {error}") from None
    if not len(log.events):
        raise CycleError(f"--events: {str(settings.events)!r} has no events")
    return log


def _scenario_source(context: Context, scenario: Any) -> str:
    """A name or YAML path :func:`load_scenario` turns back into the store's exact twin."""
    from nba.scenarios import BUILTIN_SCENARIOS, load_scenario

    if scenario.name in BUILTIN_SCENARIOS:
        if load_scenario(scenario.name).fingerprint() == scenario.fingerprint():
            return str(scenario.name)
    path = context.work / "twin.yaml"
    if not path.exists():
        scenario.to_yaml(path)
    return str(path)


# ----------------------------------------------------------------------------- the steps
def ingest_step(context: Context) -> StepResult:
    """Snapshot the batch's returning customers' beliefs at the period start, then ingest.

    The snapshot is what the audit forecasts from; it is written before the ingest and reused
    by a rerun, so a kill between the ingest's commit and the ledger's record changes nothing.
    """
    from nba.store import CustomerStore

    log = _load_events(context.settings)
    period_start = log.events["timestamp"].min().floor("D")
    snapshot = context.work / "belief_before.npz"
    with CustomerStore.open(context.settings.store) as store:
        if not snapshot.exists():
            batch_ids = pd.Index(log.events["customer_id"].astype(str).unique())
            known = batch_ids.intersection(store.customer_ids())
            if len(known):
                ids, joint = store.belief(known, as_of=period_start)
            else:
                ids, joint = pd.Index([], dtype=object), np.zeros((0,), dtype=np.float32)
            temporary = snapshot.with_name("belief_before.tmp.npz")
            np.savez(temporary, ids=np.asarray(ids, dtype=str), joint=joint)
            temporary.replace(snapshot)
        report = store.ingest(log, now=context.as_of)
    values = {k: v for k, v in report.to_dict().items() if k not in ("now",)}
    values["period_start"] = period_start.isoformat()
    values["period_end"] = log.events["timestamp"].max().isoformat()
    added = int(report.events_added)
    return StepResult("ingested" if added else "nothing new", values)


def audit_step(context: Context) -> StepResult:
    """Expected against observed purchase days of the batch's period (module docstring)."""
    from nba.belief import BeliefTracker
    from nba.calibration.exact_forecast import expected_outcomes
    from nba.store import CustomerStore

    settings = context.settings
    log = _load_events(settings).events
    start = pd.Timestamp(context.values("ingest")["period_start"])
    end = log["timestamp"].max()
    days = max(1, math.ceil((end - start) / DAY))
    saved = np.load(context.work / "belief_before.npz", allow_pickle=False)
    ids = pd.Index(saved["ids"].astype(str))
    params = {"statistic": "poisson_z_purchase_days", "threshold": settings.drift_threshold}
    if not len(ids):
        return StepResult("no returning customers to audit", {"customers": 0}, params)
    with CustomerStore.open(settings.store) as store:
        scenario = store.scenario
    tracker = BeliefTracker(scenario)
    joint = saved["joint"].astype(np.float64)
    flat = joint.reshape(len(ids), -1, joint.shape[-1])
    belief = tracker.state_belief(flat, ids, np.zeros(len(ids)), start, 0)
    window = log[(log["timestamp"] >= start) & log["customer_id"].astype(str).isin(ids)]
    plan, mapped, unmapped = _send_plan(scenario, window, ids, start, days)
    expected = expected_outcomes(scenario, belief, days, plan, start_weekday=int(start.day_of_week))
    bought = window[window["event"] == "purchased"]
    observed = float(bought.groupby(["customer_id", bought["timestamp"].dt.floor("D")]).ngroups)
    total = float(expected.purchases.sum())
    z = (observed - total) / math.sqrt(total) if total > 0 else 0.0
    values = {
        "customers": len(ids),
        "days": days,
        "observed_purchase_days": observed,
        "expected_purchase_days": total,
        "relative_error": (observed - total) / total if total > 0 else 0.0,
        "z": z,
        "sends_mapped": mapped,
        "sends_unknown": unmapped,
    }
    if abs(z) <= settings.drift_threshold:
        return StepResult("passed", values, params)
    recalibrated, why = _recalibrate(context, scenario)
    if recalibrated is None:
        values["recalibration_error"] = why
        return StepResult("drift; recalibration failed", values, params, stop=ExitCode.AUDIT_FAILED)
    values["recalibrated_twin"] = str(recalibrated)
    return StepResult("drift; recalibrated twin written for review", values, params)


def _send_plan(
    scenario: Any, window: pd.DataFrame, ids: pd.Index, start: pd.Timestamp, days: int
) -> tuple[np.ndarray, int, int]:
    """(days, N) twin action per customer and day from the batch's sends, and how many sends
    mapped to a twin action and how many did not (those count as no action).

    A send names its channel and, in ``action``, the offer (as :mod:`nba.twin_events` logs it)
    or the campaign (``channel_campaign`` is an action's name, as calibration reads it).
    """
    sent = window[window["event"] == "sent"]
    plan = np.zeros((days, len(ids)), dtype=np.int64)
    by_offer = {(a.channel, a.offer): i + 1 for i, a in enumerate(scenario.actions)}
    by_name = {name: i for i, name in enumerate(scenario.action_names)}
    channel, offer = sent["channel"].astype(str), sent["action"].astype(str)
    index = np.array(
        [
            by_offer.get((c, o), by_name.get(f"{c}_{o}", -1))
            for c, o in zip(channel, offer, strict=True)
        ],
        dtype=np.int64,
    )
    row = ids.get_indexer(sent["customer_id"].astype(str))
    day = ((sent["timestamp"] - start) // DAY).to_numpy(dtype=np.int64)
    ok = (index > 0) & (row >= 0) & (day >= 0) & (day < days)
    plan[day[ok], row[ok]] = index[ok]
    return plan, int(ok.sum()), int(len(sent) - ok.sum())


def _recalibrate(context: Context, scenario: Any) -> tuple[Path | None, str]:
    """Refit the twin on the batch with the store's twin as template: (its YAML, "") or
    (``None``, why it failed)."""
    from nba.calibration.fit import calibrate

    try:
        result = calibrate(_load_events(context.settings), template=scenario, seed=0)
    except (ValueError, np.linalg.LinAlgError) as error:
        return None, f"{type(error).__name__}: {error}"[:500]
    path = context.work / "recalibrated.yaml"
    result.scenario.to_yaml(path)
    return path, ""


def train_step(context: Context) -> StepResult:
    """A challenger on belief observations, registered under the model's name (``candidate``),
    warm-started from the champion. Training stopped by a signal (SIGTERM, Ctrl-C) is
    checkpointed by :func:`nba.training.train`; the ledger keeps its run id and a rerun resumes
    that run instead of starting another."""
    from nba.store import CustomerStore
    from nba.training import train
    from nba.training.callbacks import TrainingInterrupted

    settings = context.settings
    champion = _champion_version(context)
    interrupted = context.ledger.noted("interrupted_training_run")
    init_from = _champion_export(context, champion) if champion else None
    try:
        if interrupted is not None:  # its config and warm start are the run's own
            result = train(
                resume=interrupted,
                timesteps=settings.train_steps,
                tracking_uri=context.uri,
                output_dir=str(context.work / "runs"),
            )
        else:
            with CustomerStore.open(settings.store) as store:
                source = _scenario_source(context, store.scenario)
            options = {
                "eval_every_steps": max(1, settings.train_steps // 2),
                "eval_customers": 2_000,
                **settings.train_options,
            }
            result = train(
                scenario=source,
                init_from=init_from,
                timesteps=settings.train_steps,
                seed=settings.train_seed,
                config=settings.train_config,
                tracking_uri=context.uri,
                observation="belief",
                register_model=True,
                model_name=settings.model,
                output_dir=str(context.work / "runs"),
                checkpoint_dir=str(context.work / "checkpoints"),
                **options,
            )
    except TrainingInterrupted as stopped:
        if stopped.run_id is not None:
            context.ledger.note("interrupted_training_run", stopped.run_id)
        raise
    values = {
        "training_run_id": result.run_id,
        "challenger_version": str(result.model_version),
        "warm_start": f"champion v{champion}" if init_from else "none: no champion yet",
    }
    if interrupted is not None:
        values["resumed_training_run"] = interrupted
    return StepResult("trained", values, {"timesteps": settings.train_steps})


def evaluate_step(context: Context) -> StepResult:
    """The challenger (and champion) off-policy on the logged decisions and on the twin."""
    from nba.evaluation import evaluate_policies
    from nba.ope.registry import make_bandit_estimator
    from nba.ope.report import reward_predictions
    from nba.ope.target import ScorerPolicy, allowed_actions, model_features, policy_probabilities
    from nba.store import CustomerStore

    settings = context.settings
    version = context.values("train")["challenger_version"]
    challenger = _load_version(context, version)
    champion_version = _champion_version(context)
    champion = _load_version(context, champion_version) if champion_version else None
    values: dict[str, Any] = {"champion_version": champion_version or "none"}
    records = _logged_records(context)
    if records is not None:
        estimator = make_bandit_estimator("dr")
        names = list(challenger.action_names)
        records.check_catalogue(names)
        features = model_features(challenger, records.features, records.feature_names)
        allowed = allowed_actions(challenger, features, records.probabilities)
        data = records.bandit(policy_probabilities(challenger, features, allowed, "greedy"), names)
        predictions = reward_predictions(data, seed=0)
        interval = estimator.interval(data, predictions, n_boot=settings.bootstrap, seed=0)
        values.update(
            {
                "ope_decisions": len(records),
                "ope_holdout_decisions": int(records.holdout.sum())
                if records.holdout is not None
                else 0,
                "ope_challenger": interval.estimate,
                "ope_challenger_lower": interval.lower,
                "ope_challenger_upper": interval.upper,
                "ope_logged_mean_reward": float(np.mean(records.reward)),
            }
        )
        if champion is not None:
            theirs = model_features(champion, records.features, records.feature_names)
            target = policy_probabilities(champion, theirs, allowed, "greedy")
            values["ope_champion"] = estimator.estimate(data.with_target(target), predictions)
    else:
        values["ope"] = "no logged decisions with outcomes in this batch"
    with CustomerStore.open(settings.store) as store:
        scenario = store.scenario
    policies: dict[str, Any] = {"challenger": ScorerPolicy(challenger, "challenger")}
    policies["champion"] = ScorerPolicy(champion, "champion") if champion else "no_action"
    report = evaluate_policies(
        scenario,
        policies,
        n_customers=settings.twin_customers,
        seed=20_261_123,
        include_references=False,
    )
    table = report.table.set_index("policy")
    values["twin_challenger"] = float(table.loc["challenger", "value"])
    values["twin_champion"] = float(table.loc["champion", "value"])
    return StepResult("evaluated", values)


def gate_step(context: Context) -> StepResult:
    """The promotion gate: ``champion`` moves only on a lower bound above the incumbent."""
    from nba.ope.promotion import GateSettings, promote
    from nba.store import CustomerStore

    settings = context.settings
    version = context.values("train")["challenger_version"]
    records = _logged_records(context)
    with CustomerStore.open(settings.store) as store:
        source = _scenario_source(context, store.scenario)
    # the gate's twin evidence builds full-state features: for a belief policy it has none,
    # so the decision log is its only evidence (no log with outcomes: refused, safely)
    belief = _load_version(context, version).features.observation == "belief"
    gate = GateSettings(
        log=settings.decisions if records is not None else None,
        outcomes=_outcomes(context) if records is not None else None,
        missing="drop",
        scenario=None if belief else source,
        n_boot=settings.bootstrap,
        twin_customers=settings.twin_customers,
    )
    decision = promote(settings.model, version, gate, tracking_uri=context.uri)
    values = {
        "promoted": int(decision.promoted),
        "method": decision.method,
        "challenger_version": version,
        "champion_version": decision.champion_version or "none",
        "gate_run_id": decision.run_id,
        "reasons": " | ".join(decision.reasons)[:5000],
    }
    for name in ("challenger_estimate", "challenger_lower", "incumbent_estimate"):
        if getattr(decision, name) is not None:
            values[name] = getattr(decision, name)
    code = int(ExitCode.DONE if decision.promoted else ExitCode.GATE_REFUSED)
    outcome = "promoted" if decision.promoted else "gate refused"
    return StepResult(outcome, values, {"exit_code": code})


def decide_step(context: Context) -> StepResult:
    """The next day's decisions by the champion: holdout, exploration, capacity, decision log."""
    from nba.cli.inputs import load_scorer
    from nba.cli.score import _write_decisions
    from nba.serving.by_id import decide_timed
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration
    from nba.store import CustomerStore

    settings = context.settings
    if _champion_version(context) is None:
        return StepResult("no champion: no decisions", {"customers": 0})
    exploration = None
    if settings.epsilon:
        seed = int(context.ledger.key[:8], 16)
        exploration = Exploration(kind="epsilon", epsilon=settings.epsilon, seed=seed)
    scorer = load_scorer(f"models:/{settings.model}@champion", context.uri, exploration)
    scorer.holdout = _holdout(settings)
    out = settings.out or context.work / f"decisions-{context.as_of.date()}.parquet"
    log = DecisionLog(settings.decisions) if settings.decisions is not None else None
    try:
        with CustomerStore.open(settings.store) as store:
            decisions, timing = decide_timed(
                scorer,
                store,
                None,
                context.as_of,
                settings.capacity or None,
                log=log,
                batch_id=f"cycle-{context.ledger.key}" if log is not None else None,
            )
    finally:
        if log is not None:
            log.close()
    _write_decisions(decisions, out)
    held = int(decisions["holdout"].sum()) if "holdout" in decisions else 0
    values = {
        "customers": len(decisions),
        "holdout_customers": held,
        "out": str(out),
        "model_version": str(scorer.model_version),
        **{k: round(v, 4) for k, v in timing.items()},
    }
    return StepResult("decided", values)


STEP_FUNCTIONS: dict[str, Callable[[Context], StepResult]] = {
    "ingest": ingest_step,
    "audit": audit_step,
    "train": train_step,
    "evaluate": evaluate_step,
    "gate": gate_step,
    "decide": decide_step,
}


# ----------------------------------------------------------------------------- helpers
def _load_version(context: Context, version: str) -> Any:
    import mlflow

    from nba.serving.scorer import PolicyScorer

    mlflow.set_tracking_uri(context.uri)
    return PolicyScorer.load(f"models:/{context.settings.model}/{version}", model_version=version)


def _champion_version(context: Context) -> str | None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        found = MlflowClient(context.uri).get_model_version_by_alias(
            context.settings.model, "champion"
        )
    except MlflowException:
        return None
    return str(found.version)


def _champion_export(context: Context, version: str) -> Path:
    """The champion's exported policy (plain weights and JSON), downloaded into the cycle's
    folder once (a resumed cycle reuses it)."""
    import mlflow

    target = context.work / f"champion-v{version}"
    if not target.exists():
        partial = context.work / f"champion-v{version}.partial"
        mlflow.set_tracking_uri(context.uri)
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{context.settings.model}/{version}", dst_path=str(partial)
        )
        partial.replace(target)
    return target


def _outcomes(context: Context) -> pd.DataFrame:
    """Each logged decision's reward: the customer's purchase value on the decision's day.

    Only decisions whose day the batch covers get an outcome (the others are dropped, not
    scored zero: their day has not been seen yet).
    """
    from nba.ope.decision_log import read_decision_log

    settings = context.settings
    assert settings.decisions is not None
    logged = read_decision_log(settings.decisions, None, missing="drop")
    events = _load_events(settings).events
    start = events["timestamp"].min().floor("D")
    end = events["timestamp"].max()
    decided = pd.DatetimeIndex(logged.decided_at)
    day = decided.floor("D")
    covered = (day >= start) & (day + DAY <= end.ceil("D"))
    frame = pd.DataFrame(
        {
            "customer_id": np.asarray(logged.customer_id, dtype=str),
            "decided_at": decided,
            "day": day,
        }
    )[covered]
    bought = events[events["event"] == "purchased"]
    spend = bought.groupby([bought["customer_id"].astype(str), bought["timestamp"].dt.floor("D")])[
        "value"
    ].sum()
    keys = pd.MultiIndex.from_arrays([frame["customer_id"], frame["day"]])
    frame["reward"] = spend.reindex(keys).fillna(0.0).to_numpy()
    return frame.loc[:, ["customer_id", "decided_at", "reward"]].reset_index(drop=True)


def _logged_records(context: Context) -> Any:
    """The decision log's decisions on the batch's days with their rewards (``None``: none)."""
    from nba.ope.decision_log import read_decision_log

    settings = context.settings
    if settings.decisions is None or not settings.decisions.exists():
        return None
    outcomes = _outcomes(context)
    if not len(outcomes):
        return None
    records = read_decision_log(settings.decisions, outcomes, missing="drop")
    return records if len(records) else None
