"""Progress lines: short numbers, honest rates and ETAs, and every line on stderr."""

from __future__ import annotations

import pytest

from nba import progress
from nba.progress import LineProgress, count, duration, phase, progress_line


def test_numbers_and_durations_read_at_a_glance() -> None:
    assert [count(v) for v in (0.81, 950, 215_000, 4_100_000, 30_000_000)] == [
        "0.8",
        "950",
        "215k",
        "4.1M",
        "30.0M",
    ]
    assert [duration(s) for s in (4.24, 121, 3_900)] == ["4.2s", "2m01s", "1h05m"]
    assert duration(float("inf")) == "?"


def test_progress_line_has_share_rate_and_time_left() -> None:
    line = progress_line("train", 4_100_000, 30_000_000, elapsed=19.07)
    assert line == "train: 4.1M/30.0M steps (14%), 215k steps/s, ETA 2m00s"
    resumed = progress_line("train", 4_100_000, 30_000_000, elapsed=10.0, rate=100_000)
    assert resumed.endswith("100k steps/s, ETA 4m19s")
    assert "ETA" not in progress_line("train", 10, None, elapsed=1.0)


def test_phase_says_what_runs_and_how_long_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with phase("final evaluation: 6 policies on 20,000 customers"):
        pass
    captured = capsys.readouterr()
    assert captured.out == ""
    first, second = captured.err.splitlines()
    assert first == "final evaluation: 6 policies on 20,000 customers ..."
    assert second.startswith("final evaluation: 6 policies on 20,000 customers: done in ")


def test_line_progress_reports_periodically(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter([0.0, 10.0, 31.0, 40.0, 62.0, 70.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    with LineProgress(every_seconds=30) as lines:
        task = lines.add_task("simulating myopic", total=90, unit="days")  # t=0
        lines.advance(task, 10)  # t=10: too soon
        lines.advance(task, 20)  # t=31: a line
        lines.advance(task, 10)  # t=40: too soon
        lines.update(task, advance=10, description="day 50")  # t=62: a line
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "simulating myopic ...",
        "simulating myopic: 30/90 days (33%), 1.0 days/s, ETA 1m02s",
        "simulating myopic (day 50): 50/90 days (56%), 0.8 days/s, ETA 49.6s",
        "simulating myopic: done in 1m10s",
    ]
