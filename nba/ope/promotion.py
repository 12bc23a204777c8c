"""A high-confidence promotion gate for registered policies.

``promote(model, challenger)`` moves the registry alias ``champion`` to the challenger version
only when the **lower** bound of the challenger's 95% interval exceeds the incumbent's point
estimate. The evidence, in order of preference:

1. **Decision logs** with joined outcomes (real customers): both policies are evaluated
   off-policy on the same logged decisions (one-step value: mean reward per decision), with
   the same out-of-fold reward model and estimator (doubly robust by default).
2. **The twin**, only when a scenario is named: both policies run on one cohort with common
   random numbers (:func:`nba.evaluation.evaluate_policies`), and the challenger's rollout
   interval is compared with the incumbent's value.
3. Neither: no promotion. The gate is safe by default.

With no champion yet, the incumbent is the "no action" policy: a first champion must beat
doing nothing with confidence. Every decision, promoted or refused, is recorded as an MLflow
run (experiment ``nba-promotion``) whose tags carry the decision, method, estimator, bounds,
versions and reasons, with the full evidence as ``evidence.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.errors import NBAValidationError
from nba.ope.base import Estimator
from nba.ope.decision_log import DecisionRecords, Missing, read_decision_log
from nba.ope.registry import make_bandit_estimator
from nba.ope.report import diagnostics, reward_predictions
from nba.ope.target import (
    ScorerPolicy,
    TargetKind,
    allowed_actions,
    model_features,
    policy_probabilities,
)
from nba.policy_head import one_hot
from nba.serving.scorer import PolicyScorer

CHAMPION_ALIAS = "champion"
PROMOTION_EXPERIMENT = "nba-promotion"
NO_ACTION = "no_action"


@dataclass
class PromotionDecision:
    """What the gate decided and why."""

    model: str
    challenger_version: str
    champion_version: str | None
    promoted: bool
    method: str  # "ope", "twin", or "none"
    estimator: str | None
    challenger_estimate: float | None = None
    challenger_lower: float | None = None
    challenger_upper: float | None = None
    incumbent: str = NO_ACTION
    incumbent_estimate: float | None = None
    reasons: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateSettings:
    """How the evidence is gathered.

    :param log: decision log (SQLite) of recent decisions; outcomes joined as in
        :func:`nba.ope.decision_log.read_decision_log`.
    :param scenario: twin scenario to evaluate on when there are no usable logs.
    """

    log: str | Path | None = None
    outcomes: str | Path | pd.DataFrame | None = None
    since: str | None = None
    missing: Missing = "error"
    scenario: str | Path | None = None
    estimator: str | Estimator = "dr"  # a registered name or a configured instance
    target: TargetKind = "greedy"
    n_boot: int = 1000
    confidence: float = 0.95
    seed: int = 0
    twin_customers: int = 20_000
    twin_seed: int = 20_261_123

    def __post_init__(self) -> None:
        make_bandit_estimator(self.estimator)  # a misspelt estimator fails before any work


def promote(
    model: str,
    challenger: str | int,
    settings: GateSettings | None = None,
    *,
    tracking_uri: str | None = None,
    record: bool = True,
) -> PromotionDecision:
    """Gate ``model`` version ``challenger``; move ``champion`` to it only on strong evidence."""
    from mlflow.tracking import MlflowClient

    from nba.tracking import resolve_tracking_uri

    settings = settings or GateSettings()
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    version = str(challenger)
    _check_version(client, model, version)
    champion = _champion(client, model)
    decision = PromotionDecision(
        model=model,
        challenger_version=version,
        champion_version=champion,
        promoted=False,
        method="none",
        estimator=None,
        incumbent=f"{model} v{champion}" if champion else NO_ACTION,
    )
    if champion == version:
        decision.reasons.append(f"version {version} is already the champion")
    else:
        _gather(decision, settings, uri)
    if record:
        decision.run_id = _record(client, uri, decision)
    if decision.promoted:
        client.set_registered_model_alias(model, CHAMPION_ALIAS, version)
    return decision


def _gather(decision: PromotionDecision, settings: GateSettings, uri: str) -> None:
    """Fill in the evidence and the verdict."""
    model, version, champion = (
        decision.model,
        decision.challenger_version,
        decision.champion_version,
    )
    challenger = _scorer(model, version, uri)
    incumbent = _scorer(model, champion, uri) if champion else None
    records = _recent_logs(settings)
    if records is not None and len(records):
        _evaluate_logs(decision, settings, records, challenger, incumbent)
    elif settings.scenario is not None:
        _evaluate_twin(decision, settings, challenger, incumbent)
        if records is not None:
            decision.details["log"] = "no decisions with outcomes in the window; used the twin"
    else:
        why = "no decisions with outcomes in the log" if records is not None else "no decision log"
        decision.reasons.append(f"no evidence: {why} and no twin scenario; refusing by default")
        return
    lower, best = decision.challenger_lower, decision.incumbent_estimate
    assert lower is not None and best is not None
    decision.promoted = bool(lower > best)
    verb = "exceeds" if decision.promoted else "does not exceed"
    decision.reasons.append(
        f"challenger v{version} lower {settings.confidence:.0%} bound {lower:.4f} {verb} "
        f"{decision.incumbent} estimate {best:.4f} ({decision.method}, {decision.estimator})"
    )


def _recent_logs(settings: GateSettings) -> DecisionRecords | None:
    if settings.log is None:
        return None
    records = read_decision_log(
        settings.log, settings.outcomes, since=settings.since, missing=settings.missing
    )
    return records if records.reward is not None else None


def _evaluate_logs(
    decision: PromotionDecision,
    settings: GateSettings,
    records: DecisionRecords,
    challenger: PolicyScorer,
    incumbent: PolicyScorer | None,
) -> None:
    names = list(challenger.action_names)
    records.check_catalogue(names)
    features = model_features(challenger, records.features, records.feature_names)
    allowed = allowed_actions(challenger, features, records.probabilities)
    data = records.bandit(
        policy_probabilities(challenger, features, allowed, settings.target), names
    )
    if incumbent is not None:
        records.check_catalogue(list(incumbent.action_names))
        theirs = model_features(incumbent, records.features, records.feature_names)
        baseline = policy_probabilities(incumbent, theirs, allowed, settings.target)
    else:
        baseline = one_hot(np.zeros(len(records), dtype=np.int64), len(names))
    estimator = make_bandit_estimator(settings.estimator)
    predictions = reward_predictions(data, seed=settings.seed) if estimator.needs_model else None
    interval = estimator.interval(
        data,
        predictions,
        n_boot=settings.n_boot,
        confidence=settings.confidence,
        seed=settings.seed,
    )
    decision.method, decision.estimator = "ope", estimator.label
    decision.challenger_estimate = interval.estimate
    decision.challenger_lower, decision.challenger_upper = interval.lower, interval.upper
    decision.incumbent_estimate = estimator.estimate(data.with_target(baseline), predictions)
    decision.details.update(
        {
            "decisions": len(records),
            "since": settings.since,
            "first_decision": records.decided_at.min().isoformat(),
            "last_decision": records.decided_at.max().isoformat(),
            "overlap": diagnostics(data),
        }
    )


def _evaluate_twin(
    decision: PromotionDecision,
    settings: GateSettings,
    challenger: PolicyScorer,
    incumbent: PolicyScorer | None,
) -> None:
    from nba.evaluation import evaluate_policies
    from nba.features import FeatureBuilder
    from nba.parameters import ScenarioArrays
    from nba.scenarios import load_scenario

    scenario = load_scenario(settings.scenario)
    arrays = ScenarioArrays.from_scenario(scenario)
    for scorer in (challenger, incumbent):
        if scorer is None:
            continue
        # a belief model is rolled out on beliefs (nba.evaluation.rollout): its own layout
        names = FeatureBuilder(arrays, observation=scorer.features.observation).names
        if names[: scorer.features.size] != scorer.features.names:
            raise NBAValidationError(
                f"--scenario: {scenario.name!r} builds other features than the model was trained on"
            )
    policies: dict[str, Any] = {"challenger": ScorerPolicy(challenger, "challenger")}
    policies["incumbent"] = ScorerPolicy(incumbent, "incumbent") if incumbent else NO_ACTION
    report = evaluate_policies(
        scenario,
        policies,
        n_customers=settings.twin_customers,
        seed=settings.twin_seed,
        include_references=False,
    )
    table = report.table.set_index("policy")
    decision.method, decision.estimator = "twin", "rollout"
    decision.challenger_estimate = float(table.loc["challenger", "value"])
    decision.challenger_lower = float(table.loc["challenger", "lower"])
    decision.challenger_upper = float(table.loc["challenger", "upper"])
    decision.incumbent_estimate = float(table.loc["incumbent", "value"])
    decision.details.update(
        {
            "scenario": scenario.name,
            "customers": settings.twin_customers,
            "seed": settings.twin_seed,
            "violations": int(table["violations"].sum()),
        }
    )
    if settings.confidence != 0.95:
        decision.details["note"] = "twin rollouts report 95% intervals"


def _scorer(model: str, version: str, uri: str) -> PolicyScorer:
    import mlflow

    mlflow.set_tracking_uri(uri)
    return PolicyScorer.load(f"models:/{model}/{version}", model_version=version)


def _check_version(client: Any, model: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(model, version)
    except MlflowException:
        raise NBAValidationError(
            f"--challenger: no version {version!r} of registered model {model!r}"
        ) from None


def _champion(client: Any, model: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, CHAMPION_ALIAS).version)
    except MlflowException:
        return None


def _record(client: Any, uri: str, decision: PromotionDecision) -> str:
    """One MLflow run per gate decision: tags for search, metrics for plots, JSON for audit."""
    from nba.tracking import ensure_experiment, log_metrics

    experiment = ensure_experiment(client, PROMOTION_EXPERIMENT, uri)
    verdict = "promoted" if decision.promoted else "refused"
    tags = {
        "nba.promotion.decision": verdict,
        "nba.promotion.model": decision.model,
        "nba.promotion.challenger_version": decision.challenger_version,
        "nba.promotion.champion_version": decision.champion_version or "none",
        "nba.promotion.incumbent": decision.incumbent,
        "nba.promotion.method": decision.method,
        "nba.promotion.estimator": decision.estimator or "none",
        "nba.promotion.reasons": " | ".join(decision.reasons)[:5000],
    }
    bounds = {
        "challenger_estimate": decision.challenger_estimate,
        "challenger_lower": decision.challenger_lower,
        "challenger_upper": decision.challenger_upper,
        "incumbent_estimate": decision.incumbent_estimate,
    }
    tags.update({f"nba.promotion.{k}": f"{v:.6g}" for k, v in bounds.items() if v is not None})
    run = client.create_run(
        experiment, run_name=f"{decision.model}-v{decision.challenger_version}-{verdict}", tags=tags
    )
    run_id = run.info.run_id
    log_metrics(client, run_id, {k: v for k, v in bounds.items() if v is not None}, step=0)
    client.log_text(run_id, json.dumps(decision.as_dict(), indent=2, default=str), "evidence.json")
    client.set_terminated(run_id)
    client.set_model_version_tag(
        decision.model, decision.challenger_version, "nba.promotion.run_id", run_id
    )
    return run_id
