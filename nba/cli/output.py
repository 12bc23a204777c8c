"""How ``nba`` prints: tables readable when piped, strict JSON, progress on stderr only."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from nba.progress import LineProgress

console = Console(soft_wrap=True)  # piped output: lines as long as they are, not cut at 80
error_console = Console(stderr=True)


def progress_bar(enabled: bool) -> Progress | LineProgress:
    """rich's live bar in a terminal; elsewhere (logs, notebooks) a line every 30 s."""
    if enabled and not error_console.is_terminal:
        return LineProgress()
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=error_console,
        disable=not enabled,
        transient=True,
    )


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """What libraries print while we work (MLflow's "View run" links, SB3's bar) goes to
    stderr: stdout carries only our result, so ``--json`` output always parses."""
    import os
    from contextlib import redirect_stdout

    bars = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(bars)
    if not error_console.is_terminal and before is None:  # tqdm bars are noise in a log
        os.environ[bars] = "false"
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        if before is None:
            os.environ.pop(bars, None)


def print_evaluation(table: pd.DataFrame, title: str) -> None:
    """A compact terminal view; ``--json`` has every column at full precision."""
    view = Table(title=title, caption="per customer over the horizon; rates are shares")
    columns = [
        ("policy", lambda r: str(r["policy"])),
        ("value ± 95% CI", lambda r: f"{r['value']:,.2f} ± {_upper(r) - r['value']:.2f}"),
        ("share of optimum", lambda r: number(r.get("share_of_optimum", float("nan")), 3)),
        *(
            [("exact share", lambda r: number(r["exact_share_of_optimum"], 3))]
            if "exact_share_of_optimum" in table
            else []
        ),
        ("revenue", lambda r: f"{r['revenue']:,.1f}"),
        ("cost", lambda r: f"{r['cost']:,.2f}"),
        ("contacts", lambda r: f"{r['contacts']:,.1f}"),
        ("conversion", lambda r: f"{r['conversion']:.3f}"),
        ("unsub", lambda r: f"{r['unsubscribe_rate']:.3f}"),
        ("churn", lambda r: f"{r['churn_rate']:.3f}"),
        ("blocked", lambda r: f"{r['blocked_requests']:,.2f}"),
        ("violations", lambda r: f"{int(r['violations']):,}"),
    ]
    for i, (name, _) in enumerate(columns):
        view.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    for row in table.to_dict(orient="records"):
        view.add_row(*(Text(fmt(row)) for _, fmt in columns))
    print_table(view)


def _upper(row: dict[str, Any]) -> float:
    """The interval's upper end (``upper``; tables logged before the rename: ``ci95_high``)."""
    return float(row["upper"] if "upper" in row else row["ci95_high"])


def emit(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    """Rows as JSON (strict: NaN becomes null) or as a table readable when piped.

    Numbers are formatted here, a column at a time (thousands separators, 3 decimals, or none
    for whole numbers); dicts and lists become "key value, ..." text, missing values "-".
    """
    if as_json:
        typer.echo(json.dumps(plain(rows), indent=2, default=str))
        return
    table = Table(title=title)
    names = list(rows[0]) if rows else []
    for i, column in enumerate(names):
        values = [row.get(column) for row in rows]
        numeric = all(is_number(v) or v is None for v in values)
        table.add_column(
            str(column),
            justify="right" if numeric and i else "left",
            no_wrap=numeric,
            overflow="fold",
            max_width=None if numeric else 60,
        )
    decimals = {column: 0 if whole([row.get(column) for row in rows]) else 3 for column in names}
    for row in rows:
        table.add_row(*(Text(cell(row.get(c), decimals[c])) for c in names))
    print_table(table)


def print_table(table: Table) -> None:
    """In a terminal, fit the terminal; piped or captured, as wide as the table needs, so no
    cell is cut short to "0.…"."""
    if console.is_terminal:
        console.print(table)
        return
    from rich.measure import Measurement

    needed = Measurement.get(console, console.options.update_width(10_000), table).maximum
    Console(width=max(needed, 80), soft_wrap=False).print(table)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def whole(values: list[Any]) -> bool:
    numbers = [float(v) for v in values if is_number(v) and np.isfinite(v)]
    return bool(numbers) and all(n.is_integer() for n in numbers)


def number(value: Any, decimals: int = 3) -> str:
    """``12,345.679``; ``-`` for missing; tiny values keep two significant digits."""
    if value is None or not np.isfinite(value):
        return "-" if value is None or np.isnan(value) else str(value)
    value = float(value)
    if decimals and value != 0 and abs(value) < 0.5 * 10.0**-decimals:
        return f"{value:.2g}"
    return f"{value:,.{decimals}f}"


def cell(value: Any, decimals: int = 3) -> str:
    """One table cell as a person reads it: never a Python repr of a dict or list."""
    if value is None:
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if is_number(value):
        return number(value, decimals)
    if isinstance(value, dict):
        return ", ".join(f"{key} {cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple | set):
        return ", ".join(cell(item) for item in value)
    return str(value)


def describe(summary: dict[str, Any]) -> str:
    """A summary dict as one readable line: ``customers 1,500; mae_twin 1.299; ...``."""
    return "; ".join(f"{key} {cell(value)}" for key, value in summary.items())


def plain(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null (``json.dumps`` would write bare NaN)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value
