"""The ``nba`` command line. Every command has ``--help``; table output also has ``--json``.

``app`` (the typer app) and ``main`` (the console entry point) load on first use, so that
importing a helper module such as :mod:`nba.cli.inputs` does not build the whole app.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nba.cli import entry

        return getattr(entry, name)
    raise AttributeError(f"module 'nba.cli' has no attribute {name!r}")
