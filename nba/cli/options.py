"""Options shared by several ``nba`` commands: declared once, so a name, a help text or a bound
cannot drift between commands (``--bootstrap`` counts replicates everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nba.errors import NBAValidationError

ScenarioOption = Annotated[
    str, typer.Option("--scenario", "-s", help="Built-in scenario name or path to a YAML file.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking store, also where models:/ and runs:/ URIs are found (default: "
        "MLFLOW_TRACKING_URI, else ./mlflow.db).",
    ),
]
TrustedScenarioOption = Annotated[
    str | None,
    typer.Option(
        "--trusted-scenario",
        help="Built-in scenario name or YAML file the model must have been trained on: an "
        "export whose consent, contact rules or anything else differ is refused.",
    ),
]
ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Export directory, models:/NAME@ALIAS or runs:/...")
]
EpsilonOption = Annotated[
    float, typer.Option("--epsilon", min=0.0, max=1.0, help="Epsilon-greedy exploration.")
]
CohortOption = Annotated[int, typer.Option("--customers", "-n", min=2, help="Cohort size.")]
HostOption = Annotated[str, typer.Option("--host", help="Bind address.")]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535)]
CustomerTableOption = Annotated[
    Path | None, typer.Option("--customers", "-c", help="Customer table (CSV or parquet).")
]
HoldoutShareOption = Annotated[
    float | None,
    typer.Option(
        "--holdout-share",
        help="Hold out this share of customers (0 to 0.5] as a persistent control group: "
        "the same customers on every run, by a salted hash of their id.",
    ),
]
HoldoutSaltOption = Annotated[
    str | None,
    typer.Option("--holdout-salt", help="Names the control group (keep it while it lasts)."),
]
HoldoutControlOption = Annotated[
    str,
    typer.Option(
        "--holdout-control",
        help="What the control group gets: no_action or business_as_usual (the journey map).",
    ),
]
# The old name of --bootstrap in ``nba ope`` and ``nba promote``: accepted, hidden, warned about.
NBootAlias = Annotated[
    int | None, typer.Option("--n-boot", hidden=True, help="Deprecated: use --bootstrap.")
]


def seed_option(help: str, minimum: int | None = None) -> typer.models.OptionInfo:
    """``--seed`` with what it seeds in this command."""
    return typer.Option("--seed", min=minimum, help=help)


def bootstrap_option(minimum: int) -> typer.models.OptionInfo:
    """``--bootstrap N``: the number of bootstrap replicates, in every command that draws them."""
    return typer.Option("--bootstrap", min=minimum, help="Bootstrap replicates.")


def bootstrap_count(bootstrap: int, n_boot: int | None, minimum: int) -> int:
    """``--bootstrap``, or the deprecated ``--n-boot`` it replaced (with a warning on stderr)."""
    if n_boot is None:
        return bootstrap
    typer.echo("warning: --n-boot is deprecated; use --bootstrap", err=True)
    if n_boot < minimum:
        raise NBAValidationError(f"--n-boot: {n_boot} is below the minimum of {minimum}")
    return n_boot
