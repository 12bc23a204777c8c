"""Publishing a trained policy: the comparison table, figures, export, pyfunc and registry.

The final phase of a run (:func:`publish`) does each of these once per step: a resume of a
run killed during (or right after) it finds what was already recorded (the tags below, the
logged model, the registered version of this run) and repeats none of it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient
from stable_baselines3.common.vec_env import VecNormalize

import nba
from nba.belief_policies import MostLikelyStatePolicy, QMDPPolicy
from nba.belief_values import BeliefValues
from nba.evaluation import CohortScorer, ExactScorer, evaluate_policies
from nba.policies import OptimalPolicy, make_baseline
from nba.progress import count, phase
from nba.scenario import Scenario
from nba.serving import pyfunc
from nba.serving.export import export_policy, served_policy
from nba.serving.pyfunc import ARTIFACT_KEY, logged_model_fields
from nba.serving.scorer import PolicyScorer
from nba.serving.spec import default_signing_key, load_exported
from nba.tracking import log_metrics, set_description
from nba.training import figures
from nba.training.callbacks import ExactEvaluationCallback
from nba.training.config import TrainConfig

BASELINE_NAMES = ("no_action", "random", "journey_map", "myopic", "optimal")
CANDIDATE_ALIAS = "candidate"
TABLE_ARTIFACT = "evaluation/evaluation.json"  # MLflow table: the UI shows it as one
# The final phase's progress, so a resume after a kill repeats none of it (no second logged
# model, no second registered version): the step whose table, figures and summary metrics are
# logged, and the step whose model is logged, registered and aliased. The logged model carries
# its step as a tag, so a resume finds a model logged just before a kill.
FINAL_EVALUATED_TAG = "nba.final.evaluated_at_step"
FINAL_DONE_TAG = "nba.final.done_at_step"
MODEL_STEP_TAG = "nba.timesteps"


@dataclass
class TrainResult:
    """What a run produced."""

    run_id: str
    table: pd.DataFrame
    history: list[dict[str, float]]
    export_dir: Path
    model_uri: str | None = None
    model_version: str | None = None
    reached_target: dict[str, float] | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def publish(
    client: MlflowClient,
    run_id: str,
    cfg: TrainConfig,
    scenario: Scenario,
    model: Any,
    scorer: ExactScorer | CohortScorer,
    evaluation: ExactEvaluationCallback,
    output_dir: Path,
) -> TrainResult:
    """Table, figures, export, logged model and registration, each done once per step.

    A resume of a run killed during (or right after) this phase finds what was already
    recorded (the tags above, the logged model, the registered version of this run) and
    repeats none of it.
    """
    step = int(model.num_timesteps)
    tags = client.get_run(run_id).data.tags
    run_dir = output_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    if tags.get(FINAL_EVALUATED_TAG) == str(step):
        table = _logged_table(client, run_id, run_dir)
    else:
        compared = 1 + len(BASELINE_NAMES) + (2 if cfg.observation == "belief" else 0)
        with phase(
            f"final evaluation: {compared} policies on "
            f"{cfg.eval_customers:,} customers, and exact scores"
        ):
            table, rollouts = _final_table(cfg, scenario, model, scorer)
        _log_table(client, run_id, table, run_dir, step, cfg.algo, scenario.name)
        with phase("figures: learning curve, journey flows, action mix"):
            _log_figures(
                client, run_id, scenario, cfg.algo, evaluation.history, table, rollouts, run_dir
            )
        summary = {"final/timesteps": step, "final/train_seconds": evaluation.elapsed}
        if evaluation.reached_at is not None:
            summary["final/seconds_to_target"] = evaluation.reached_at["elapsed_seconds"]
        log_metrics(client, run_id, summary, step=step)
        client.set_tag(run_id, FINAL_EVALUATED_TAG, str(step))
    env = model.get_env()
    export_dir = run_dir / "policy"
    value_scale = math.sqrt(env.ret_rms.var + env.epsilon) if isinstance(env, VecNormalize) else 1.0
    export_policy(
        model,
        scenario,
        export_dir,
        algo=cfg.algo,
        value_scale=value_scale,
        metadata={"mlflow_run_id": run_id, "timesteps": step},
        signing_key=default_signing_key(),  # signed when NBA_SIGNING_KEY is set
    )
    with phase(
        "exporting and registering the policy"
        if cfg.register_model
        else "exporting and logging the policy"
    ):
        model_uri = _logged_policy(client, run_id, step) or _log_pyfunc(
            client, run_id, scenario, export_dir, step
        )
        version = None
        if cfg.register_model:
            first_time = tags.get(FINAL_DONE_TAG) != str(step)
            version = register_once(
                client, run_id, cfg.registered_model_name, model_uri, move_alias=first_time
            )
    client.set_tag(run_id, FINAL_DONE_TAG, str(step))
    return TrainResult(
        run_id=run_id,
        table=table,
        history=evaluation.history,
        export_dir=export_dir,
        model_uri=model_uri,
        model_version=version,
        reached_target=evaluation.reached_at,
    )


def _logged_table(client: MlflowClient, run_id: str, folder: Path) -> pd.DataFrame:
    """The final table this run already logged (a resume after its final evaluation)."""
    path = client.download_artifacts(run_id, "evaluation/evaluation.csv", str(folder))
    return pd.read_csv(path)


def _logged_policy(client: MlflowClient, run_id: str, step: int) -> str | None:
    """The URI of the policy this run logged at ``step``, if a killed attempt got that far."""
    experiment_id = client.get_run(run_id).info.experiment_id
    for logged in client.search_logged_models(
        [experiment_id], filter_string=f"source_run_id = '{run_id}'"
    ):
        if (
            logged.name == "policy"
            and logged.status == LoggedModelStatus.READY
            and logged.tags.get(MODEL_STEP_TAG) == str(step)
        ):
            return logged.model_uri
    return None


def register_once(
    client: MlflowClient, run_id: str, name: str, model_uri: str, move_alias: bool
) -> str:
    """This run's registered version of ``model_uri``: the existing one, else a new one.

    The ``candidate`` alias moves to it when the version is new or the run's final phase had
    not finished (a kill between registering and aliasing); never back onto an older version.
    A sweep registers its best trial's model through this too.
    """
    model_id = model_uri.removeprefix("models:/")
    existing = [
        found
        for found in client.search_model_versions(f"run_id = '{run_id}'")
        if found.name == name
        and model_id in (found.model_id, found.source.removeprefix("models:/"))
    ]
    if existing:
        version = str(max(int(found.version) for found in existing))
    else:
        version = str(mlflow.register_model(model_uri, name).version)
        move_alias = True
    if move_alias:
        client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)
    client.set_tag(run_id, "nba.model_version", version)
    return version


def _final_table(
    cfg: TrainConfig, scenario: Scenario, model: Any, scorer: ExactScorer | CohortScorer
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Every policy on the evaluation cohort, with exact values where a policy has a table.

    A belief-trained policy is compared with the belief baselines (QMDP, most likely state) on
    the beliefs it is served; the full-state rows (the optimum above all) are the yardsticks
    with full information.
    """
    learned = served_policy(model, scenario, algo=cfg.algo)  # what the scorer will serve
    exact_scorer = scorer.exact_scorer if isinstance(scorer, CohortScorer) else scorer
    # the optimum the exact scorer already solved, not a second kernel and solve
    optimum_policy = OptimalPolicy(exact_scorer.twin, exact_scorer.optimum)
    policies: dict[str, Any] = {cfg.algo: learned}
    policies.update({name: name for name in BASELINE_NAMES})
    policies["optimal"] = optimum_policy
    if cfg.observation == "belief":  # on the exact scorer's kernel and optimum: built once
        twin, optimum = exact_scorer.twin, exact_scorer.optimum
        values = BeliefValues(twin, exact_scorer.kernel, optimum)
        policies["qmdp"] = QMDPPolicy(twin, values)
        policies["most_likely_state"] = MostLikelyStatePolicy(twin, optimum)
    report = evaluate_policies(
        scenario, policies, n_customers=cfg.eval_customers, seed=cfg.eval_seed
    )
    exact = {} if cfg.observation == "belief" else {cfg.algo: scorer.score(learned)}
    for name in ("no_action", "journey_map", "myopic"):
        exact[name] = exact_scorer.score(make_baseline(name, exact_scorer.twin))
    exact["optimal"] = exact_scorer.score(optimum_policy)
    table = report.table.copy()
    table["exact_value"] = [exact[p].value if p in exact else np.nan for p in table["policy"]]
    table["exact_share_of_optimum"] = [
        exact[p].share_of_optimum if p in exact else np.nan for p in table["policy"]
    ]
    return table, report.rollouts


def _log_table(
    client: MlflowClient,
    run_id: str,
    table: pd.DataFrame,
    folder: Path,
    step: int,
    algo: str,
    scenario_name: str,
) -> None:
    """The comparison table as an MLflow table (and CSV), a few headline metrics, the note.

    Every KPI of every policy stays in the table artifact, where the UI shows it as a table;
    as metrics only the numbers compared across runs: each policy's value and share of the
    optimum, and the learned policy's exact share.
    """
    csv_path, json_path = folder / "evaluation.csv", folder / "evaluation.json"
    table.to_csv(csv_path, index=False)
    client.log_artifact(run_id, str(csv_path), "evaluation")
    logged = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    if TABLE_ARTIFACT in logged:  # a resumed run replaces its table (log_table would append)
        json_path.write_text(table.to_json(orient="split", index=False))
        client.log_artifact(run_id, str(json_path), "evaluation")
    else:
        client.log_table(run_id, table, TABLE_ARTIFACT)
    values: dict[str, float] = {}
    for row in table.to_dict(orient="records"):
        for key in ("value", "share_of_optimum"):
            values[f"final/{row['policy']}/{key}"] = row[key]
    rows = table.set_index("policy")
    if "exact_share_of_optimum" in rows and algo in rows.index:
        values[f"final/{algo}/exact_share_of_optimum"] = rows.loc[algo, "exact_share_of_optimum"]
    log_metrics(client, run_id, values, step=step)
    set_description(client, run_id, _run_description(algo, scenario_name, step, rows))


def _run_description(algo: str, scenario_name: str, steps: int, rows: pd.DataFrame) -> str:
    """``ppo on retail, 30.0M steps: exact share 0.962 of the optimum (value 39.6 vs 22.2 no
    action)``: exact numbers where the table has them, else the cohort's."""
    exact = "exact_share_of_optimum" in rows and pd.notna(rows.loc[algo, "exact_share_of_optimum"])
    share_key, value_key = (
        ("exact_share_of_optimum", "exact_value") if exact else ("share_of_optimum", "value")
    )
    text = (
        f"{algo} on {scenario_name}, {count(steps)} steps: {'exact ' if exact else ''}share "
        f"{rows.loc[algo, share_key]:.3f} of the optimum (value {rows.loc[algo, value_key]:.1f}"
    )
    if "no_action" in rows.index:
        text += f" vs {rows.loc['no_action', value_key]:.1f} no action"
    return text + ")"


def _log_figures(
    client: MlflowClient,
    run_id: str,
    scenario: Scenario,
    algo: str,
    history: list[dict[str, float]],
    table: pd.DataFrame,
    rollouts: dict[str, Any],
    folder: Path,
) -> None:
    rows = table.set_index("policy")
    shares = rows["exact_share_of_optimum"]
    references = {name: float(shares[name]) for name in ("myopic", "journey_map") if name in shares}
    for name in ("qmdp", "most_likely_state"):  # belief baselines: cohort shares (no table)
        if name in rows.index:
            references[name] = float(rows.loc[name, "share_of_optimum"])
    compared = {name: rollouts[name] for name in (algo, "journey_map", "optimal")}
    mixes = {name: rollouts[name] for name in (algo, "optimal")}
    paths = [
        figures.learning_curve(history, references, folder / "learning_curve.png"),
        figures.journey_flow(scenario, compared, folder / "journey_flow.html"),
        figures.flow_matrices(scenario, compared, folder / "journey_flow.png"),
        figures.action_mix(scenario, mixes, folder / "action_mix.png"),
    ]
    for path in paths:
        client.log_artifact(run_id, str(path), "figures")


def _log_pyfunc(
    client: MlflowClient, run_id: str, scenario: Scenario, export_dir: Path, step: int
) -> str:
    # the export was written a moment ago from this scenario: check it against it
    scorer = PolicyScorer(load_exported(export_dir, trusted_scenario=scenario))
    with warnings.catch_warnings():
        # integer columns are intended: the scorer rejects missing values with a clear error
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        info = mlflow.pyfunc.log_model(
            name="policy",
            python_model=str(Path(pyfunc.__file__).with_name("pyfunc_model.py")),  # no pickling
            artifacts={ARTIFACT_KEY: str(export_dir)},
            model_config={"model_version": f"run:{run_id}"},
            **logged_model_fields(scorer),  # no input schema: MLflow drops no field
            pip_requirements=[f"nba=={nba.__version__}", "numpy", "pandas"],
            tags={MODEL_STEP_TAG: str(step)},  # registration: register_once, once
        )
    return info.model_uri
