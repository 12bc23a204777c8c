"""The ``nba`` app: every command group registered in one place, and the console entry point.

Command groups (``twin``, ``train``, ``score``, ``serve``, ``calibrate``, ``ope``) import the
shared :mod:`nba.cli.options`, :mod:`nba.cli.output` and :mod:`nba.cli.inputs`, never this
module, so there is no import cycle between the app and its commands.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from nba.cli import (
    calibrate,
    cycle,
    decide,
    forecast,
    ingest,
    lift,
    loop,
    ope,
    score,
    serve,
    store_export,
    sweep,
    train,
    twin,
)
from nba.cli.output import error_console
from nba.errors import NBAError

app = typer.Typer(
    name="nba",
    help="Next-best-action optimisation on a customer digital twin.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# ``nba --help`` order
commands = (
    twin,
    train,
    sweep,
    score,
    decide,
    serve,
    calibrate,
    forecast,
    ingest,
    store_export,
    ope,
    lift,
    cycle,
    loop,
)
for group in commands:
    group.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: bad input becomes one line on stderr and exit code 2.

    Our own errors carry the option and the problem. A file the operating system or a decoder
    refuses (permissions, a folder for a file, bytes that are not UTF-8) where a command did not
    check it first is still bad input, not a crash: one line naming the file.
    """
    try:
        app(args=argv, prog_name="nba")
    except NBAError as exc:
        _fail(str(exc))
    except UnicodeDecodeError as exc:
        _fail(f"cannot read a file: not UTF-8 text ({exc.reason} at offset {exc.start})")
    except OSError as exc:
        if exc.filename is None:
            raise
        _fail(f"{exc.filename}: {exc.strerror or exc}")


def _fail(message: str) -> NoReturn:
    """Print ``error: message`` as exactly one line (no wrapping, no markup) and exit 2."""
    from rich.markup import escape

    parts = [line.strip() for line in message.splitlines()]
    text = "; ".join(part for part in parts if part and set(part) != {"^"})
    error_console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)
    sys.exit(2)


if __name__ == "__main__":
    main()
