"""``nba decide``: one decision per customer of a customer-state store, scored by id."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from nba.cli.decide_scale import (
    AddressOption,
    EngineOption,
    RequestsOption,
    WorkersOption,
    decide_requests,
    store_path,
)
from nba.cli.options import (
    EpsilonOption,
    HoldoutControlOption,
    HoldoutSaltOption,
    HoldoutShareOption,
    JsonOption,
    ModelOption,
    TrackingUriOption,
)
from nba.cli.output import console
from nba.cli.score import AsOfOption, CapacityOption, ScoreLogOption, ScoreSeedOption
from nba.errors import NBAError, NBAValidationError

StoreOption = Annotated[
    Path | None, typer.Option("--store", help="The customer-state store (SQLite file).")
]
CustomersOption = Annotated[
    Path | None,
    typer.Option(
        "--customers",
        "-c",
        help="CSV or parquet with a customer_id column: decide for these only (default: "
        "every customer in the store).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``decide`` to the ``nba`` app."""
    app.command()(decide)


def decide(
    model: ModelOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="decisions.parquet or .csv")],
    store: StoreOption = None,
    customers: CustomersOption = None,
    as_of: AsOfOption = None,
    capacity: CapacityOption = None,
    log: ScoreLogOption = None,
    epsilon: EpsilonOption = 0.0,
    seed: ScoreSeedOption = None,
    tracking_uri: TrackingUriOption = None,
    holdout_share: HoldoutShareOption = None,
    holdout_salt: HoldoutSaltOption = None,
    holdout_control: HoldoutControlOption = "no_action",
    requests: RequestsOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    workers: WorkersOption = 2,
    as_json: JsonOption = False,
) -> None:
    """Decide for every customer in a store: rules, capacity, exploration and log as `nba score`.

    A model trained on belief observations decides on each customer's belief over persona and
    stage (and levels) as the store holds it. A model trained on the full state takes persona
    and journey stage as inputs, which a company does not observe: each customer is decided on
    their MOST LIKELY persona and stage under the store's belief, the "act on the most likely
    state" baseline. Each decision row carries the belief summary (persona,
    persona_probability, stage, stage_probability) so a marketer sees how sure the twin is,
    and, where the twin is finite, expected_value (the chosen action's expected value under
    the twin, averaged over the belief) and best_<k>_action, best_<k>_expected_value (the
    three best allowed actions'). A model trained on another scenario than the store's is
    refused. With --log and --as-of, a rerun of the same store state, model and settings is
    not logged twice; without --as-of the time is now and every run is a new batch. With
    --holdout-share and --holdout-salt a persistent control group gets the control's decision
    (column holdout; logged as held out): `nba lift` compares the two groups later.
    With --requests (partitioned Parquet) instead of --store: by partition, here or on Ray.
    """
    from nba.cli.inputs import (
        TABLE_SUFFIXES,
        check_decision_log,
        check_output,
        load_scorer,
        parse_as_of,
    )
    from nba.cli.score import _capacity_limits
    from nba.serving.by_id import check_same_twin
    from nba.serving.scorer import Exploration
    from nba.store import CustomerStore

    limits = _capacity_limits(capacity or [])
    held_out = _holdout(holdout_share, holdout_salt, holdout_control)
    if requests is not None:
        settings = {"capacity": limits, "epsilon": epsilon, "seed": seed, "holdout": held_out}
        settings.update(log=log, tracking_uri=tracking_uri, store=store)
        decide_requests(requests, model, out, as_of, settings, engine, address, workers, as_json)
        return
    store = store_path(store, engine, address)
    check_output(out, "--out", TABLE_SUFFIXES)
    when = parse_as_of(as_of) or pd.Timestamp.now(tz="UTC")
    if log is not None:
        check_decision_log(log, "--log", must_exist=False)
    wanted = _customer_ids(customers) if customers is not None else None
    exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=seed) if epsilon else None
    scorer = load_scorer(model, tracking_uri, exploration)
    scorer.holdout = held_out
    with CustomerStore.open(store) as held:
        check_same_twin(scorer, held)
        decisions, timing = _decide(scorer, held, wanted, when, limits, log, model, epsilon, seed)
    from nba.cli.score import _write_decisions

    _write_decisions(decisions, out)
    _report(decisions, out, when, scorer, timing, as_json)


def _report(
    decisions: pd.DataFrame,
    out: Path,
    when: pd.Timestamp,
    scorer: Any,
    timing: dict[str, float],
    as_json: bool,
) -> None:
    """What was decided: a JSON summary, or a line or two for a person."""
    counts = decisions["action_name"].value_counts()
    if as_json:
        summary = {
            "customers": len(decisions),
            "out": str(out),
            "as_of": when.isoformat(),
            "model_version": str(scorer.model_version),
            "actions": {str(k): int(v) for k, v in counts.items()},
            "observation": scorer.features.observation,
            **{k: round(v, 4) for k, v in timing.items()},
        }
        if "expected_value" in decisions:
            summary["expected_value_mean"] = round(float(decisions["expected_value"].mean()), 6)
        print(json.dumps(summary))
        return
    shown = ", ".join(f"{name} {count:,}" for name, count in counts.head(5).items())
    console.print(f"decided for {len(decisions):,} customers -> {out} ({shown})")
    if "expected_value" in decisions:
        console.print(
            f"expected value under the twin: {decisions['expected_value'].mean():,.4f} per "
            "customer (columns expected_value, best_<k>_action, best_<k>_expected_value)"
        )


def _decide(
    scorer: Any,
    store: Any,
    wanted: list[str] | None,
    when: pd.Timestamp,
    limits: dict[str, int | None],
    log: Path | None,
    model: str,
    epsilon: float,
    seed: int | None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Decide, logging under a batch id derived from what decides (state, model, settings)."""
    from nba.cli.inputs import derived_seed, model_fingerprint, remove_new_log, with_exploration
    from nba.serving.by_id import decide_state, decide_timed, read_store, split_state
    from nba.serving.decision_log import DecisionLog
    from nba.serving.scorer import Exploration

    if log is None:
        return decide_timed(scorer, store, wanted, when, limits or None)
    began = time.perf_counter()
    answered = read_store(scorer, store, wanted, when)  # None: every customer, one scan
    read = time.perf_counter()
    request, _ = split_state(scorer, answered.state)
    rows = pd.util.hash_pandas_object(request, index=False).to_numpy().tobytes()
    if answered.belief is not None:  # a belief model decides on it: another belief, another batch
        rows += answered.belief.tobytes()
    key = json.dumps(
        [model_fingerprint(model, scorer), epsilon, seed, sorted(limits.items()), scorer.holdout],
        default=str,
    )
    batch_id = "decide-" + hashlib.sha256(rows + key.encode()).hexdigest()
    if epsilon:
        drawn = seed if seed is not None else derived_seed(batch_id)
        exploration = Exploration(kind="epsilon", epsilon=epsilon, seed=drawn)
        scorer = with_exploration(scorer, exploration)
    new_log = not log.exists()
    decision_log = DecisionLog(log)
    try:
        decisions = decide_state(
            scorer,
            answered.state,
            limits or None,
            log=decision_log,
            batch_id=batch_id,
            belief=answered.belief,
        )
    except NBAError:
        decision_log.close()
        if new_log:
            remove_new_log(log)
        raise
    except BaseException:
        decision_log.close()
        raise
    decision_log.close()
    return decisions, {"state_s": read - began, "score_s": time.perf_counter() - read}


def _holdout(share: float | None, salt: str | None, control: str) -> Any:
    """The --holdout-* options as a :class:`~nba.holdout.Holdout` (``None``: no holdout)."""
    from nba.holdout import Holdout

    if share is None and salt is None:
        return None
    if share is None or salt is None:
        given, missing = ("--holdout-salt", "--holdout-share")[:: 1 if share is None else -1]
        raise NBAValidationError(f"{missing}: needed with {given}")
    try:
        return Holdout(share, salt, control)  # type: ignore[arg-type]
    except NBAValidationError as error:
        raise NBAValidationError(f"--holdout-{error}") from None


def _customer_ids(path: Path) -> list[str]:
    """The ``customer_id`` column of ``--customers`` (text, as the store keys them)."""
    from nba.cli.inputs import read_table

    table = read_table(path, "--customers", first_row=1, text_columns=("customer_id",))
    if "customer_id" not in table.columns:
        raise NBAValidationError(f"--customers: {str(path)!r} has no customer_id column")
    return [str(x) for x in table["customer_id"]]
