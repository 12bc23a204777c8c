"""``nba decide --requests DIR``: a whole base of request rows in partitioned Parquet, decided
in one process or on Ray (:mod:`nba.scale.ray_decide`), channel capacity global."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from nba.cli.output import console
from nba.errors import NBAValidationError

RequestsOption = Annotated[
    Path | None,
    typer.Option(
        "--requests",
        help="A folder of Parquet files of request rows (the `nba score` columns), one "
        "partition each, instead of --store (`nba store export` writes one from a store, "
        "each customer's belief included); --out is then a folder of part-NNNNN.parquet "
        "and --log a folder of decision-log shards.",
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (one process) or ray (an actor pool; pip install nba\\[ray]), with --requests.",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="A running Ray cluster (HOST:PORT); default: a local one on 127.0.0.1.",
    ),
]
WorkersOption = Annotated[
    int, typer.Option("--workers", min=1, help="Scoring actors (one CPU each), with --engine ray.")
]


def decide_requests(
    requests: Path,
    model: str,
    out: Path,
    as_of: str | None,
    settings: dict[str, Any],
    engine: str,
    address: str | None,
    workers: int,
    as_json: bool,
) -> None:
    """Decide every partition of ``requests`` into the folder ``out`` (and ``log``'s shards).

    ``settings``: capacity limits, epsilon, seed, holdout, log, tracking_uri (as the store path
    takes them) and store (which must be absent). One decision time for the whole base
    (--as-of, else now), and with exploration a seed derived from the job when --seed is
    absent, so every actor draws alike.
    """
    from nba.cli.inputs import derived_seed, parse_as_of
    from nba.scale.ray_decide import DecideJob, decide_partitions

    if settings["store"] is not None:
        raise NBAValidationError("--requests: give --store or --requests, not both")
    if out.exists() and not out.is_dir():
        raise NBAValidationError(f"--out: {str(out)!r} is a file; --requests writes a folder")
    log: Path | None = settings["log"]
    if log is not None and log.exists() and not log.is_dir():
        raise NBAValidationError(f"--log: {str(log)!r} is a file; --requests logs to a folder")
    when = parse_as_of(as_of) or pd.Timestamp.now(tz="UTC")
    holdout = settings["holdout"]
    job = DecideJob(
        model=model,
        as_of=when.isoformat(),
        capacity=settings["capacity"],
        epsilon=settings["epsilon"],
        seed=settings["seed"],
        holdout=None if holdout is None else (holdout.share, holdout.salt, holdout.control),
        tracking_uri=settings["tracking_uri"],
    )
    if job.epsilon and job.seed is None:
        job = replace(job, seed=derived_seed(json.dumps(asdict(job), sort_keys=True)))
    report = decide_partitions(job, requests, out, engine, address, workers, log)
    summary = {
        "customers": report.customers,
        "partitions": report.partitions,
        "out": str(out),
        "as_of": when.isoformat(),
        "engine": engine,
        "job": report.job,
        **{f"{k}_s": round(v, 3) for k, v in report.seconds.items()},
    }
    if as_json:
        print(json.dumps(summary))
        return
    console.print(
        f"decided for {report.customers:,} customers in {report.partitions} partitions -> "
        f"{out}/part-*.parquet ({engine}; pass 1 {report.seconds['pass_1']:.1f} s, pass 2 "
        f"{report.seconds['pass_2']:.1f} s)"
    )


def store_path(store: Path | None, engine: str, address: str | None) -> Path:
    """``--store`` when no ``--requests`` is given: there, and decided in this process."""
    if store is None:
        raise NBAValidationError("--store: needed (or --requests with partitioned Parquet)")
    if engine != "local" or address is not None:
        raise NBAValidationError("--engine: ray decides --requests partitions, not a --store")
    if store.is_dir() or not store.exists():
        raise NBAValidationError(f"--store: no customer store at {str(store)!r}")
    return store
