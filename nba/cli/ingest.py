"""``nba ingest``: add a batch of events to a customer-state store (created on first use).

Bootstrapping a store from a full history is the same command on the full log, with the
calibrated twin as ``--scenario``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nba.cli.options import JsonOption
from nba.cli.output import emit
from nba.errors import NBAValidationError


def register(app: typer.Typer) -> None:
    """Add ``nba ingest`` to the app."""
    app.command()(ingest)


def ingest(
    events: Annotated[
        Path, typer.Option("--events", "-e", help="Event batch (CSV or parquet, event schema).")
    ],
    store: Annotated[Path, typer.Option("--store", help="The store's SQLite file.")],
    scenario: Annotated[
        str | None,
        typer.Option(
            "--scenario",
            "-s",
            help="Twin the store is built for (built-in name or YAML). Creates the store when "
            "the file does not exist; for an existing store it must be the same scenario.",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="The ingest time (ISO 8601, UTC): later events are refused, beliefs are "
            "computed as of it. Default: the wall clock.",
        ),
    ] = None,
    consent_required: Annotated[
        bool,
        typer.Option(
            "--consent-required/--persona-consent",
            help="For a new store: a customer without `consented` events may be contacted "
            "only on channels that need no consent (default), or gets the default consent of "
            "their most likely persona (--persona-consent: only where the log has no consent).",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Ingest events into a customer-state store: idempotent, one transaction per batch.

    Each customer with a new event gets their observed state (contact pressure, days since
    the last contact per cap rule, opt-out, discount habit) and their belief over persona and
    stage recomputed from their whole history. The same batch twice changes nothing.
    """
    from nba.calibration.events import load_events, utc_time
    from nba.cli.calibrate import _check_event_files
    from nba.cli.inputs import reading
    from nba.scenarios import load_scenario
    from nba.store import CustomerStore

    if now is not None:
        utc_time(now, "--now")
    if store.is_dir():
        raise NBAValidationError(f"--store: {str(store)!r} is a folder, expected a file")
    if not store.exists() and scenario is None:
        raise NBAValidationError(
            f"--store: no store at {str(store)!r}; pass --scenario to create one"
        )
    twin = None
    if scenario is not None:
        with reading("--scenario", scenario):
            twin = load_scenario(scenario)
    _check_event_files(events, None)
    with reading("--events", events):
        log = load_events(events, duplicates="drop")
    created = not store.exists()
    if created:
        assert twin is not None
        target = CustomerStore.create(store, twin, consent_required=consent_required)
    else:
        target = CustomerStore.open(store, twin)
    try:
        with target:
            report = target.ingest(log, now=now)
    except BaseException:
        if created:  # a refused first batch leaves no empty store behind
            for path in (store, *(store.with_name(store.name + s) for s in ("-wal", "-shm"))):
                path.unlink(missing_ok=True)
        raise
    summary = {"store": str(store), **report.to_dict()}
    if as_json:
        print(json.dumps(summary))
        return
    emit([summary], False, title="Ingest")
