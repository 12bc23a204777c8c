"""``nba store export``: a customer-state store as partitioned Parquet request rows, so a base
kept in the store is decided on Ray (``nba decide --requests DIR --engine ray``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nba.cli.options import JsonOption
from nba.cli.output import console

store_app = typer.Typer(
    name="store",
    help="The customer-state store: export it for deciding past one process.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``nba store`` group (``export``) to the app."""
    app.add_typer(store_app, name="store")


@store_app.command("export")
def export(
    store: Annotated[Path, typer.Option("--store", help="The customer-state store (SQLite file).")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="A new or empty folder: requests-NNNNN.parquet partitions and manifest.json.",
        ),
    ],
    partition_rows: Annotated[
        int, typer.Option("--partition-rows", min=1, help="Customers per partition.")
    ] = 500_000,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The moment of the state and beliefs (ISO 8601, UTC; default: now, fixed once).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Export every customer of a store, as of one moment, for `nba decide --requests`.

    One read of the store (state and belief from one snapshot), written in customer-id order
    as requests-NNNNN.parquet partitions, each atomically: the request fields of the state (as
    `nba decide --store` scores them: most likely persona and stage, contact history, consent)
    and the belief as float columns belief__<persona>__<stage> (with __rate<i>__dropout<j>
    where the twin has levels). manifest.json, written last, lists the store, as_of, the
    scenario and its fingerprint, and each partition's rows and SHA-256. `nba decide
    --requests OUT --engine ray` then gives a belief-trained model each customer's belief,
    and refuses a model of another twin, as `nba decide --store` does.
    """
    from nba.cli.inputs import parse_as_of
    from nba.errors import NBAValidationError
    from nba.store import CustomerStore
    from nba.store.export import MANIFEST, export_store

    if store.is_dir() or not store.exists():
        raise NBAValidationError(f"--store: no customer store at {str(store)!r}")
    when = parse_as_of(as_of)
    with CustomerStore.open(store) as held:
        report = export_store(held, out, partition_rows, when)
    summary = {
        "store": str(store),
        "out": str(out),
        "customers": report.customers,
        "partitions": len(report.partitions),
        "as_of": report.as_of,
        "scenario": report.scenario["name"],
        "fingerprint": report.scenario["fingerprint"],
        **{k: round(v, 3) for k, v in report.seconds.items()},
    }
    if as_json:
        print(json.dumps(summary))
        return
    console.print(
        f"exported {report.customers:,} customers in {len(report.partitions)} partitions -> "
        f"{out}/requests-*.parquet and {MANIFEST} (as of {report.as_of}; "
        f"{report.seconds['total_s']:.1f} s)"
    )
