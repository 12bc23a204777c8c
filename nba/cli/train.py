"""``nba train``: train a policy, compare it with the baselines and the optimum, record it.

Its options are generated from :class:`~nba.training.config.TrainConfig`, one per field: the
name (:data:`~nba.training.config.OPTION_NAMES` where it is not ``--field-name``), the
default, the bounds and the help all come from the field, so none is declared twice.
"""

from __future__ import annotations

import inspect
import json
import types
from pathlib import Path
from typing import Annotated, Any, NoReturn, Union, get_args, get_origin

import annotated_types
import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from nba.cli.options import JsonOption, TrackingUriOption
from nba.cli.output import console, error_console, print_evaluation, stdout_to_stderr
from nba.errors import NBAValidationError
from nba.training.config import OPTION_NAMES, TrainConfig, option_name

# Settings whose default ``nba train`` decides when it runs (a bar only in a terminal)
DECIDED_WHEN_RUN = frozenset({"progress_bar"})
# Options of ``nba train`` that are not training settings
ResumeOption = Annotated[
    str | None, typer.Option("--resume", help="Continue an interrupted run by its id.")
]


def register(app: typer.Typer) -> None:
    """Add ``train`` to the ``nba`` app."""
    app.command()(train)


def config_option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The ``nba train`` option of one :class:`TrainConfig` field.

    A field holding a model (the hyper-parameters) is given as a YAML file; a boolean is a
    ``--flag/--no-flag`` pair. ``ge``/``le`` bounds become the option's range; strict ``gt``/``lt``
    ones are said in the help and checked with the rest of the config (:func:`_checked`).
    """
    annotation: Any = field.annotation
    members = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else ()
    if any(isinstance(m, type) and issubclass(m, BaseModel) for m in (annotation, *members)):
        annotation = Path | None
    decls = OPTION_NAMES.get(name, (option_name(name),))
    if annotation is bool:
        decls = (f"{decls[0]}/--no-{decls[0][2:]}", *decls[1:])
    bounds: dict[str, Any] = {}
    strict: list[str] = []
    for rule in field.metadata:
        if isinstance(rule, annotated_types.Ge):
            bounds["min"] = rule.ge
        elif isinstance(rule, annotated_types.Le):
            bounds["max"] = rule.le
        elif isinstance(rule, annotated_types.Gt):
            strict.append(f"> {rule.gt}")
        elif isinstance(rule, annotated_types.Lt):
            strict.append(f"< {rule.lt}")
    text = field.description or ""
    if strict:
        text = f"{text.removesuffix('.')} (must be {' and '.join(strict)})."
    option = typer.Option(*decls, help=text, show_default=name not in DECIDED_WHEN_RUN, **bounds)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[annotation, option],
        default=field.get_default(call_default_factory=True),
    )


def _signature() -> inspect.Signature:
    """``train``'s signature: the context, one option per config field, then the rest."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    return inspect.Signature(
        [
            inspect.Parameter("ctx", keyword, annotation=typer.Context),
            *(config_option(name, field) for name, field in TrainConfig.model_fields.items()),
            inspect.Parameter("tracking_uri", keyword, annotation=TrackingUriOption, default=None),
            inspect.Parameter("resume", keyword, annotation=ResumeOption, default=None),
            inspect.Parameter("as_json", keyword, annotation=JsonOption, default=False),
        ]
    )


def train(
    ctx: typer.Context,
    tracking_uri: str | None = None,
    resume: str | None = None,
    as_json: bool = False,
    **settings: Any,
) -> None:
    """Train a policy, compare it with every baseline and the optimum, record it in MLflow.

    SIGTERM or Ctrl-C saves a checkpoint, marks the run KILLED and prints how to resume it.
    With --resume, options not given come from the run; --timesteps sets a new total, and an
    option that would change what the run learns or measures is refused.
    """
    config = settings.pop("hyperparameters", None)
    if not resume:  # a typo fails in a second, before torch loads or any store is created
        from nba.scenarios import load_scenario

        load_scenario(settings["scenario"])
        if config is not None and not config.is_file():
            raise NBAValidationError(f"--config: no such file {str(config)!r}")
        _checked(settings)
    from nba.training.trainer import TrainingInterrupted
    from nba.training.trainer import train as run_training

    settings = _given_when_resuming(ctx, resume, {**settings, "hyperparameters": config})
    if not _typed(ctx, "progress_bar"):
        settings["progress_bar"] = error_console.is_terminal  # a bar only where one is seen
    try:
        with stdout_to_stderr():  # stdout holds only the table, or only the JSON
            result = run_training(
                tracking_uri=tracking_uri,
                resume=resume,
                config=settings.pop("hyperparameters", None),
                **settings,
            )
    except TrainingInterrupted as stopped:
        _report_interrupted(stopped, tracking_uri)
    if as_json:
        table = json.loads(result.table.to_json(orient="records"))
        payload = {key: getattr(result, key) for key in ("run_id", "model_uri", "model_version")}
        typer.echo(json.dumps({**payload, "table": table}, indent=2))
        return
    print_evaluation(result.table, f"run {result.run_id}")
    registered = (
        f"model version {result.model_version} (alias 'candidate')"
        if result.model_version
        else "policy not registered (--register registers it as 'candidate')"
    )
    experiment = settings.get("experiment", TrainConfig.model_fields["experiment"].default)
    console.print(
        f"MLflow run {result.run_id}; {registered}.\n"
        "Open the UI with: nba ui   (then browse experiment "
        f"'{experiment}')"
    )


train.__signature__ = _signature()  # type: ignore[attr-defined]


def _checked(settings: dict[str, Any]) -> None:
    """The settings as a :class:`TrainConfig` would take them, or one line naming the option
    (bounds the option's range cannot say, such as ``--checkpoint-every`` above 0, and an
    algorithm the registry does not know)."""
    from nba.training.registry import ALGORITHMS

    try:
        TrainConfig.model_validate(settings)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "config"
        raise NBAValidationError(f"{option_name(field)}: {error['msg']}") from None
    if settings["algo"] not in ALGORITHMS:
        raise NBAValidationError(
            f"--algo: unknown algorithm {settings['algo']!r}; expected one of {sorted(ALGORITHMS)}"
        )


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (not its default)."""
    # by name: typer vendors its own click, whose ParameterSource is not click's
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _given_when_resuming(
    ctx: typer.Context, resume: str | None, settings: dict[str, Any]
) -> dict[str, Any]:
    """Every setting for a new run; for --resume only those typed, so the run's own fill in."""
    if not resume:
        return settings
    return {key: value for key, value in settings.items() if _typed(ctx, key)}


def _report_interrupted(stopped: Any, tracking_uri: str | None) -> NoReturn:
    """Say which run stopped and the exact command that resumes it; exit 128 + signal."""
    import shlex

    from nba.tracking import resolve_tracking_uri

    command = f"nba train --resume {stopped.run_id}"
    if tracking_uri and tracking_uri != resolve_tracking_uri(None):
        command += f" --tracking-uri {shlex.quote(tracking_uri)}"
    typer.echo(
        f"{stopped.signal_name}: run {stopped.run_id} stopped, checkpoint saved, marked KILLED."
        f"\nResume it with:\n  {command}",
        err=True,
    )
    raise typer.Exit(128 + stopped.signal_number)
