"""``nba ingest``: a store created on first use, batches added idempotently, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from nba.calibration.events import EventLog, save_events
from nba.scenario import Scenario
from nba.store import CustomerStore
from tests.cli_runner import run_cli
from tests.store.conftest import NOW, halves


def test_round_trip_creates_then_adds(
    tmp_path: Path, log: EventLog, capsys: pytest.CaptureFixture[str]
) -> None:
    early, _ = halves(log)
    save_events(early, tmp_path / "early.parquet")
    save_events(log, tmp_path / "all.csv")
    db = tmp_path / "customers.db"
    now = ["--now", NOW.isoformat(), "--json"]
    code, out, _ = run_cli(
        capsys,
        "ingest",
        "-e",
        str(tmp_path / "early.parquet"),
        "--store",
        str(db),
        "--scenario",
        "retail",
        *now,
    )
    assert code == 0
    first = json.loads(out)
    assert first["events_added"] == len(early.events) and first["new_customers"] > 0
    code, out, _ = run_cli(
        capsys, "ingest", "-e", str(tmp_path / "all.csv"), "--store", str(db), *now
    )
    second = json.loads(out)
    assert code == 0 and second["duplicates_skipped"] == len(early.events)
    assert second["events_added"] == len(log.events) - len(early.events)
    code, out, _ = run_cli(
        capsys, "ingest", "-e", str(tmp_path / "all.csv"), "--store", str(db), *now
    )
    assert json.loads(out)["events_added"] == 0
    with CustomerStore.open(db) as store:
        assert store.n_events == len(log.events)
    code, out, _ = run_cli(
        capsys,
        "ingest",
        "-e",
        str(tmp_path / "all.csv"),
        "--store",
        str(db),
        "--now",
        NOW.isoformat(),
    )
    assert code == 0 and "events_added" in out  # the table


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_store", "--store: no store at .*pass --scenario to create one"),
        ("other_scenario", "built for scenario 'retail'.*not 'subscription'"),
        ("future", "event\\(s\\) in the future"),
        ("unknown_type", "unknown type 'bought'"),
        ("missing_file", "--events"),
        ("bad_now", "--now: cannot read"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    retail: Scenario,
    log: EventLog,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    events = tmp_path / "events.parquet"
    save_events(log, events)
    db = tmp_path / "customers.db"
    args = ["ingest", "-e", str(events), "--store", str(db), "--now", NOW.isoformat()]
    if case == "other_scenario":
        with CustomerStore.create(db, retail) as store:
            store.ingest(log, now=NOW)
        args += ["--scenario", "subscription"]
    elif case == "future":
        args = [*args[:-1], "2025-01-15", "--scenario", "retail"]
    elif case == "unknown_type":
        bad = log.events.astype({"event": "string"}).copy()
        bad.loc[3, "event"] = "bought"
        bad.to_csv(tmp_path / "bad.csv", index=False)
        args[2] = str(tmp_path / "bad.csv")
        args += ["--scenario", "retail"]
    elif case == "missing_file":
        args[2] = str(tmp_path / "nope.parquet")
        args += ["--scenario", "retail"]
    elif case == "bad_now":
        args[-1] = "yesterday-ish"
    existed = db.exists()
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error:")
    assert pd.Series([err]).str.contains(message).all(), err
    assert db.exists() == existed  # a refused first batch leaves no store behind


def test_persona_consent_is_chosen_when_the_store_is_created(
    tmp_path: Path, log: EventLog, capsys: pytest.CaptureFixture[str]
) -> None:
    save_events(log, tmp_path / "all.parquet")
    for flag, required in (("--consent-required", True), ("--persona-consent", False)):
        db = tmp_path / f"{flag.strip('-')}.db"
        args = ["-e", str(tmp_path / "all.parquet"), "--store", str(db), "--scenario", "retail"]
        code, _, _ = run_cli(capsys, "ingest", *args, "--now", NOW.isoformat(), flag)
        assert code == 0
        with CustomerStore.open(db) as store:
            assert store.consent_required is required
