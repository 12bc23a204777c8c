"""Progress as plain lines on stderr, for logs and notebooks where no progress bar can draw.

A terminal gets rich's live bars (the CLI decides); everywhere else long work says what it is
doing in one line when it starts and one when it ends (:func:`phase`), and loops report every
``every_seconds`` (:class:`LineProgress`) with rate and time left. Lines go to stderr, looked up
when written, so stdout stays clean for ``--json`` and test runners capture them.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any


def say(message: str) -> None:
    """Write one line to the current stderr."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def phase(message: str) -> Iterator[None]:
    """Announce a long step (``"final evaluation: 6 policies ..."``) and how long it took."""
    say(f"{message} ...")
    started = time.perf_counter()
    yield
    say(f"{message}: done in {duration(time.perf_counter() - started)}")


def duration(seconds: float) -> str:
    """``"4.2s"``, ``"2m01s"``, ``"1h05m"``: short enough for a progress line."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def count(value: float) -> str:
    """``"950"``, ``"215k"``, ``"4.1M"``, ``"0.8"``: step counts and rates at a glance."""
    value = float(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            scaled = value / size
            return f"{scaled:.1f}{suffix}" if abs(scaled) < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.1f}" if abs(value) < 10 and not value.is_integer() else f"{value:.0f}"


def progress_line(
    label: str,
    done: float,
    total: float | None,
    elapsed: float,
    unit: str = "steps",
    rate: float | None = None,
) -> str:
    """``"train: 4.1M/30.0M steps (14%), 215k steps/s, ETA 2m01s"`` from counts and time.

    :param rate: units per second when not ``done / elapsed`` (a resumed run started at a count).
    """
    if rate is None:
        rate = done / elapsed if elapsed > 0 else 0.0
    units = f" {unit}" if unit else ""
    if total:
        text = f"{label}: {count(done)}/{count(total)}{units} ({done / total:.0%})"
    else:
        text = f"{label}: {count(done)}{units}"
    text += f", {count(rate)}{units}/s" if unit else f", {rate:.1f}/s"
    if total and rate > 0 and done < total:
        text += f", ETA {duration((total - done) / rate)}"
    return text


class LineProgress:
    """The part of ``rich.progress.Progress`` the CLI uses, written as periodic lines.

    A line when a task starts, every ``every_seconds`` while it advances, and when it ends;
    the periodic lines show the description as last updated (e.g. ``"myopic: day 41"``).
    """

    def __init__(self, every_seconds: float = 30.0) -> None:
        self.every_seconds = every_seconds
        self._tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if kind is None:
            for task in self._tasks.values():
                elapsed = time.perf_counter() - task["started"]
                say(f"{task['title']}: done in {duration(elapsed)}")

    def add_task(
        self, description: str, total: float | None = None, unit: str = "", **_: Any
    ) -> int:
        task_id = len(self._tasks)
        now = time.perf_counter()
        task = {"description": description, "total": total, "done": 0.0, "unit": unit}
        task["title"] = description
        task["started"] = task["said"] = now
        self._tasks[task_id] = task
        say(f"{description} ...")
        return task_id

    def update(
        self,
        task_id: int,
        *,
        description: str | None = None,
        advance: float | None = None,
        completed: float | None = None,
        **_: Any,
    ) -> None:
        task = self._tasks[task_id]
        if description is not None:
            task["description"] = description
        if completed is not None:
            task["done"] = float(completed)
        if advance is not None:
            task["done"] += float(advance)
        now = time.perf_counter()
        if now - task["said"] >= self.every_seconds:
            task["said"] = now
            say(self._line(task, now - task["started"]))

    def advance(self, task_id: int, advance: float = 1.0) -> None:
        self.update(task_id, advance=advance)

    def _line(self, task: dict[str, Any], elapsed: float) -> str:
        label = task["title"]
        if task["description"] != label:
            label += f" ({task['description']})"
        if task["total"]:
            return progress_line(label, task["done"], task["total"], elapsed, task["unit"])
        return f"{label}: {duration(elapsed)} so far"


__all__ = ["LineProgress", "count", "duration", "phase", "progress_line", "say"]
