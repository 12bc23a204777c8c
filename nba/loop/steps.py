"""The six steps of a cycle (:mod:`nba.loop.cycle`): ingest, audit, train, evaluate, gate,
decide, each a small function of the cycle's :class:`~nba.loop.context.Context`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.loop.context import DAY, Context, CycleError, CycleSettings, ExitCode, StepResult


def cycle_holdout(settings: CycleSettings) -> Any:
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


def batch_events(settings: CycleSettings) -> Any:
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
    """Snapshot every stored customer's belief at the period start, then ingest.

    The snapshot is what the audit forecasts from: every customer known before the batch, not
    only those with an event in it (a customer who bought is in the batch because they bought;
    forecasting only the batch's customers counts their purchases against too few forecasts).
    It is written before the ingest and reused by a rerun, so a kill between the ingest's
    commit and the ledger's record changes nothing.
    """
    from nba.store import CustomerStore

    log = batch_events(context.settings)
    period_start = log.events["timestamp"].min().floor("D")
    snapshot = context.work / "belief_before.npz"
    with CustomerStore.open(context.settings.store) as store:
        if not snapshot.exists():
            known = pd.Index(store.customer_ids())
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
    log = batch_events(settings).events
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
        result = calibrate(batch_events(context.settings), template=scenario, seed=0)
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
    scorer.holdout = cycle_holdout(settings)
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
    events = batch_events(settings).events
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
