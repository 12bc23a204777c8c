"""``nba score``: decisions for a file of customers, logged once for off-policy evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from nba.cli.inputs import trusted_scenario as load_trusted
from nba.cli.options import (
    EpsilonOption,
    ModelOption,
    TrackingUriOption,
    TrustedScenarioOption,
    seed_option,
)
from nba.cli.output import console
from nba.errors import NBAError, NBAValidationError

CapacityOption = Annotated[
    list[str] | None,
    typer.Option(
        "--capacity",
        help="CHANNEL=N contacts available in this batch (repeat); CHANNEL=none lifts the "
        "scenario's daily_capacity.",
    ),
]
ScoreLogOption = Annotated[
    Path | None,
    typer.Option(
        "--log",
        help="Append the decisions to this log, once: rerunning an interrupted run (same "
        "input file, model, settings and decision time) does not log them again.",
    ),
]
ScoreSeedOption = Annotated[
    int | None,
    seed_option(
        "Seed of the exploration. With --log and no --seed, a seed derived from the "
        "batch id, so that a rerun draws the same."
    ),
]
AsOfOption = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Decision time for rows without an as_of column (ISO 8601; default: now). "
        "With --log, 'now' is kept until the run finishes: a rerun after a crash decides "
        "at the same time.",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``score`` to the ``nba`` app."""
    app.command()(score)


def score(
    model: ModelOption,
    input_path: Annotated[Path, typer.Option("--input", "-i", help="customers.csv or .parquet")],
    output: Annotated[Path, typer.Option("--output", "-o", help="decisions.parquet or .csv")],
    capacity: CapacityOption = None,
    log: ScoreLogOption = None,
    epsilon: EpsilonOption = 0.0,
    seed: ScoreSeedOption = None,
    as_of: AsOfOption = None,
    tracking_uri: TrackingUriOption = None,
    trusted_scenario: TrustedScenarioOption = None,
) -> None:
    """Score customers from a file; write one decision per customer.

    Errors about the input name its data rows from 1 (the first row below the CSV header is
    row 1). Nothing is written, not even an empty log, unless every customer scores. The output
    file is replaced atomically. With --log a crash and a rerun duplicate nothing: the batch id
    is derived from what decides (input bytes, model, exploration and seed, capacity, decision
    time), and a batch already in the log is not logged again while the output is still written.
    """
    from nba.cli.inputs import (
        TABLE_SUFFIXES,
        check_decision_log,
        check_output,
        load_scorer,
        parse_as_of,
        read_table,
    )
    from nba.serving.scorer import Exploration

    check_output(output, "--output", TABLE_SUFFIXES)
    limits = _capacity_limits(capacity or [])
    when = parse_as_of(as_of)
    trusted = load_trusted(trusted_scenario)
    if log is not None:
        check_decision_log(log, "--log", must_exist=False)
    customers = read_table(input_path, "--input", first_row=1, text_columns=("customer_id",))
    if log is not None:
        decisions, note = _score_logged(
            model, tracking_uri, input_path, customers, limits, epsilon, seed, when, log, output,
            trusted,
        )  # fmt: skip
    else:
        exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=seed) if epsilon else None
        scorer = load_scorer(model, tracking_uri, exploration, trusted_scenario=trusted)
        decisions = scorer.score_batch(customers, capacity=limits or None, as_of=when)
        _write_decisions(decisions, output)
        note = ""
    counts = decisions["action_name"].value_counts().head(5)
    summary = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    console.print(f"scored {len(decisions):,} customers -> {output} ({summary}){note}")


def _capacity_limits(items: list[str]) -> dict[str, int | None]:
    """``--capacity CHANNEL=N`` (or ``CHANNEL=none``, no limit) options as a dict."""
    limits: dict[str, int | None] = {}
    for item in items:
        name, _, number = item.partition("=")
        if not (number.strip().isdigit() or number.strip().lower() == "none"):
            raise NBAValidationError(
                f"--capacity: expected CHANNEL=N or CHANNEL=none, got {item!r}"
            )
        limits[name.strip()] = None if number.strip().lower() == "none" else int(number)
    return limits


def _score_logged(
    model: str,
    tracking_uri: str | None,
    input_path: Path,
    customers: Any,
    limits: dict[str, int | None],
    epsilon: float,
    seed: int | None,
    when: Any,
    log: Path,
    output: Path,
    trusted: Any = None,
) -> tuple[Any, str]:
    """``nba score --log``: score, log once under a derived batch id, then write the output.

    Order matters for a crash at any point: the decision time is pinned in the log first (when
    it is "now"), the batch is logged in one transaction, the output is replaced atomically,
    and only then the pin is released. A rerun after a crash finds the pinned time, makes the
    same batch id and decisions, skips the logging that already happened and writes the output.
    """
    from nba.cli.inputs import (
        ScoreRun,
        derived_seed,
        file_sha256,
        load_scorer,
        model_fingerprint,
        remove_new_log,
        with_exploration,
    )
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration

    new_log = not log.exists()
    scorer = load_scorer(model, tracking_uri, trusted_scenario=trusted)
    run = ScoreRun(
        input_sha256=file_sha256(input_path, "--input"),
        model=model_fingerprint(model, scorer),
        epsilon=float(epsilon),
        seed=seed,
        capacity=tuple(sorted(limits.items())),
        as_of="column" if "as_of" in customers.columns else _moment(when),
    )
    decision_log = DecisionLog(log)
    pinned = False
    try:
        if run.as_of == "now":
            when, pinned = _pin_now(decision_log, run.key), True
        batch_id = run.batch_id(None if run.as_of == "column" else when)
        if epsilon:
            drawn = seed if seed is not None else derived_seed(batch_id)
            exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=drawn)
            scorer = with_exploration(scorer, exploration)
        logged_before = decision_log.batch(batch_id) is not None
        decisions = scorer.score_batch(
            customers, capacity=limits or None, as_of=when, log=decision_log, batch_id=batch_id
        )
        _write_decisions(decisions, output)
        if pinned:
            decision_log.finish_run(run.key)
    except NBAError:
        if pinned:  # nothing was logged: a rerun decides afresh
            decision_log.finish_run(run.key)
        decision_log.close()
        if new_log:
            remove_new_log(log)
        raise
    except BaseException:
        decision_log.close()  # the pin stays: a rerun repeats this run exactly
        raise
    decision_log.close()
    if logged_before:
        return decisions, f"; batch {batch_id[:18]}... was already in {log}, not logged again"
    return decisions, f"; logged to {log} as batch {batch_id[:18]}..."


def _moment(when: pd.Timestamp | None) -> str:
    """The decision time as a score run records it: ``now`` or the ``--as-of`` given."""
    return "now" if when is None else when.isoformat()


def _pin_now(decision_log: Any, key: str) -> pd.Timestamp:
    """Pin "now" in the log for this run, or find the moment an interrupted attempt pinned."""
    when, resumed = decision_log.start_run(key, pd.Timestamp.now(tz="UTC"))
    if resumed:
        typer.echo(
            f"resuming an interrupted run of the same input, model and settings: "
            f"decisions as of {when.isoformat()}",
            err=True,
        )
    return when


def _write_decisions(decisions: Any, output: Path) -> None:
    """Replace ``output`` atomically: readers see the old file or the whole new one."""
    from nba.io import csv_bytes, write_bytes_atomic

    if output.suffix == ".parquet":
        data = decisions.to_parquet(index=False)
    else:
        data = csv_bytes(decisions)  # formula-like ids are quoted for spreadsheets
    write_bytes_atomic(output, data)
