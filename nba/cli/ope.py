"""``nba ope`` and ``nba promote``: off-policy evaluation and the promotion gate on the CLI.

Registered on the main app by :func:`register`, so the OPE commands live beside their package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from nba.cli.options import (
    JsonOption,
    ModelOption,
    NBootAlias,
    TrackingUriOption,
    bootstrap_count,
    bootstrap_option,
    seed_option,
)
from nba.cli.output import console, print_table
from nba.errors import NBAValidationError

LogOption = Annotated[
    Path | None, typer.Option("--log", help="Decision log (SQLite) written by the scorer.")
]
OutcomesOption = Annotated[
    Path | None,
    typer.Option(
        "--outcomes",
        help="CSV/Parquet: customer_id, decided_at, reward (default: the log's outcomes).",
    ),
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Only decisions at or after this ISO timestamp.")
]
MissingOption = Annotated[
    str, typer.Option("--missing", help="Decisions without outcome: error, drop or zero.")
]
TargetOption = Annotated[
    str, typer.Option("--target", help="Evaluate the model greedy (as served) or softmax.")
]
BOOTSTRAP_MIN = 2
BootstrapOption = Annotated[int, bootstrap_option(BOOTSTRAP_MIN)]
SeedOption = Annotated[int, seed_option("Seed of folds and bootstrap.")]


def ope(
    log: Annotated[
        Path, typer.Option("--log", help="Decision log (SQLite) written by the scorer.")
    ],
    model: ModelOption,
    estimators: Annotated[
        str,
        typer.Option(
            "--estimators",
            help="Comma-separated: dm, ips, snips, dr, switch_dr, dr_os or a registered one; "
            "parameters by name as tables label them: switch_dr(tau=20).",
        ),
    ] = "ips,snips,dr,switch_dr",
    outcomes: OutcomesOption = None,
    since: SinceOption = None,
    missing: MissingOption = "error",
    target: TargetOption = "greedy",
    bootstrap: BootstrapOption = 1000,
    n_boot: NBootAlias = None,
    seed: SeedOption = 0,
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """Estimate a model's value per decision from logged decisions and their outcomes."""
    from nba.cli.inputs import load_scorer, reading
    from nba.ope.decision_log import read_decision_log
    from nba.ope.registry import parse_estimators
    from nba.ope.report import diagnostics, evaluate_bandit
    from nba.ope.target import allowed_actions, model_features, policy_probabilities

    if not estimators.replace(",", "").strip():
        raise NBAValidationError("--estimators: give at least one name")
    names = parse_estimators(estimators)
    _check_evidence(log, outcomes)
    with reading("--outcomes" if outcomes is not None else "--log", outcomes or log):
        records = read_decision_log(log, outcomes, since=since, missing=_missing(missing))
    if not len(records):
        raise NBAValidationError(f"--log: no decisions in {str(log)!r} for this window")
    scorer = load_scorer(model, tracking_uri)
    actions = list(scorer.action_names)
    records.check_catalogue(actions)
    features = model_features(scorer, records.features, records.feature_names)
    allowed = allowed_actions(scorer, features, records.probabilities)
    probabilities = policy_probabilities(scorer, features, allowed, _target(target))
    data = records.bandit(probabilities, actions)
    intervals = evaluate_bandit(
        data, names, n_boot=bootstrap_count(bootstrap, n_boot, BOOTSTRAP_MIN), seed=seed
    )
    overlap = diagnostics(data)
    if as_json:
        payload = {
            "model": model,
            "log": str(log),
            "decisions": len(records),
            "diagnostics": overlap,
            "estimates": [interval.as_dict() for interval in intervals],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(
        title=f"{model} on {len(records):,} logged decisions",
        caption=(
            f"value per decision; logged policy {overlap['logged_mean_reward']:.4f}; "
            f"effective sample size {overlap['effective_sample_size']:,.0f}"
        ),
    )
    for i, column in enumerate(("estimator", "estimate", "95% interval", "std error")):
        table.add_column(column, justify="left" if i == 0 else "right")
    for interval in intervals:
        table.add_row(
            interval.estimator,
            f"{interval.estimate:.4f}",
            f"[{interval.lower:.4f}, {interval.upper:.4f}]",
            f"{interval.std_error:.4f}",
        )
    print_table(table)


def promote(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")],
    challenger: Annotated[str, typer.Option("--challenger", help="Version to promote.")],
    log: LogOption = None,
    outcomes: OutcomesOption = None,
    since: SinceOption = None,
    missing: MissingOption = "error",
    scenario: Annotated[
        str | None,
        typer.Option("--scenario", "-s", help="Twin scenario, used when there are no logs."),
    ] = None,
    estimator: Annotated[
        str, typer.Option("--estimator", help="OPE estimator for logs: dr, switch_dr(tau=20), ...")
    ] = "dr",
    target: TargetOption = "greedy",
    bootstrap: BootstrapOption = 1000,
    n_boot: NBootAlias = None,
    seed: SeedOption = 0,
    customers: Annotated[
        int, typer.Option("--customers", "-n", min=2, help="Twin cohort size.")
    ] = 20_000,
    tracking_uri: TrackingUriOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the 'champion' alias to a version only if its lower 95% bound beats the champion.

    Evidence: OPE on the decision log (with outcomes) or, without logs, the twin scenario;
    with neither it refuses. Exit code 0 when promoted, 1 when refused.
    """
    from nba.cli.inputs import reading, tracking_store
    from nba.ope.promotion import GateSettings
    from nba.ope.promotion import promote as run_gate

    # everything a user can mistype, before MLflow (and its store) is touched
    _missing(missing)
    _target(target)
    if scenario is not None:
        from nba.scenarios import load_scenario

        with reading("--scenario", scenario):
            load_scenario(scenario)
    if log is not None:
        _check_evidence(log, outcomes)
    elif outcomes is not None:
        raise NBAValidationError("--outcomes: needs --log")
    tracking_uri = tracking_store(tracking_uri, "--model")
    settings = GateSettings(
        log=log,
        outcomes=outcomes,
        since=since,
        missing=_missing(missing),
        scenario=scenario,
        estimator=_one_estimator(estimator),
        target=_target(target),
        n_boot=bootstrap_count(bootstrap, n_boot, BOOTSTRAP_MIN),
        seed=seed,
        twin_customers=customers,
    )
    decision = run_gate(model, challenger, settings, tracking_uri=tracking_uri)
    if as_json:
        typer.echo(json.dumps(decision.as_dict(), indent=2, default=str))
    else:
        verdict = "[bold green]promoted[/]" if decision.promoted else "[bold red]refused[/]"
        console.print(f"{model} v{challenger}: {verdict} (evidence run {decision.run_id})")
        for reason in decision.reasons:
            console.print(f"  - {reason}")
    if not decision.promoted:
        raise typer.Exit(code=1)


def _check_evidence(log: Path, outcomes: Path | None) -> None:
    """The decision log (and outcomes file) exist and are what they claim, before any work."""
    from nba.cli.inputs import TABLE_SUFFIXES, check_decision_log, check_input

    check_decision_log(log, "--log", must_exist=True)
    if outcomes is not None:
        check_input(outcomes, "--outcomes", TABLE_SUFFIXES)


def _missing(value: str) -> str:
    if value not in ("error", "drop", "zero"):
        raise NBAValidationError(f"--missing: expected error, drop or zero, got {value!r}")
    return value


def _target(value: str) -> str:
    if value not in ("greedy", "softmax"):
        raise NBAValidationError(f"--target: expected greedy or softmax, got {value!r}")
    return value


def register(app: typer.Typer) -> None:
    """Add ``ope`` and ``promote`` to the ``nba`` app."""
    app.command("ope")(ope)
    app.command("promote")(promote)


def _one_estimator(text: str) -> Any:
    """``--estimator``: one registered name, parameters as tables label them."""
    from nba.ope.registry import parse_estimators

    parsed = parse_estimators(text)
    if len(parsed) != 1:
        raise NBAValidationError(f"--estimator: give one estimator, got {len(parsed)}")
    return parsed[0]
