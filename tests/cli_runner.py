"""Running ``nba`` in-process the way a shell would, for CLI tests."""

from __future__ import annotations

import warnings

import pytest

from nba.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``nba ARGS`` (warnings, e.g. an unsigned test
    export's, silenced)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err
