"""The decision log: one batch one transaction, idempotent batch ids, several writers, kill -9."""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import sqlite3
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nba.ope import OPEInputError, read_decision_log
from nba.serving.decision_log import (
    SCHEMA_VERSION,
    BatchConflictError,
    DecisionLog,
    DecisionLogBusyError,
    DecisionLogError,
    LoggedBatch,
    format_stamp,
    parse_stamps,
)
from nba.serving.provenance import ModelVersion
from nba.serving.scorer import PolicyScorer
from tests.serving.conftest import customer, frame

AS_OF = pd.Timestamp("2026-11-23T10:00:00Z")


def batch(n: int, tag: str = "b", batch_id: str | None = None, **overrides: object) -> LoggedBatch:
    """``n`` synthetic decisions whose content is fixed by ``tag`` (a retry is identical)."""
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    actions = rng.integers(0, 3, n)
    fields: dict[str, object] = {
        "customer_id": np.array([f"{tag}-{i}" for i in range(n)], dtype=object),
        "decided_at": AS_OF,
        "model_version": "v1",
        "actions": actions,
        "action_names": np.array(["none", "email", "sms"], dtype=object)[actions],
        "propensities": np.ones(n),
        "explored": np.zeros(n, dtype=bool),
        "features": rng.random((n, 4)),
        "probabilities": np.full((n, 3), 1 / 3),
        "feature_names": ["f0", "f1", "f2", "f3"],
        "batch_id": batch_id,
    }
    fields.update(overrides)
    return LoggedBatch(**fields)  # type: ignore[arg-type]


def append(log: DecisionLog, logged: LoggedBatch) -> int:
    return log.append_batches([logged])[0]


def test_scored_decisions_are_logged_for_ope(export_dir: Path, tmp_path: Path) -> None:
    scorer = PolicyScorer.load(export_dir, model_version="v7")
    rows = [customer(customer_id=f"c{i}", stage=s) for i, s in enumerate(["aware", "lapsed"])]
    with DecisionLog(tmp_path / "decisions.db") as log:
        decisions = scorer.score_batch(frame(*rows), as_of=AS_OF, log=log, batch_id="req-1")
        again = scorer.score_batch(frame(*rows), as_of=AS_OF, log=log, batch_id="req-1")
        logged = log.read()
    assert logged["customer_id"].tolist() == ["c0", "c1"]  # the retry added nothing
    assert again["action"].tolist() == decisions["action"].tolist()
    assert logged["action"].tolist() == decisions["action"].tolist()
    assert (logged["model_version"] == "v7").all()
    assert logged["decided_at"].iloc[0] == "2026-11-23T10:00:00.000000Z"
    assert logged["batch_id"].tolist() == ["req-1", "req-1"]
    assert logged["position"].tolist() == [0, 1]
    assert logged["features"].iloc[0].shape == (scorer.features.size,)
    np.testing.assert_allclose([p.sum() for p in logged["probabilities"]], 1.0, rtol=1e-5)
    with DecisionLog(tmp_path / "decisions.db") as log:
        connection = log._connection
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_retried_batch_is_logged_once_and_a_reused_id_is_refused(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.db") as log:
        assert append(log, batch(5, batch_id="r-1")) == 5
        assert append(log, batch(5, batch_id="r-1")) == 0  # the retry: nothing written
        record = log.batch("r-1")
        assert record is not None and record.rows == 5 and len(record.content_sha256) == 64
        # the same id with other decisions is a reused key, not a retry
        for changed in (
            batch(5, tag="other", batch_id="r-1"),
            batch(5, batch_id="r-1", propensities=np.full(5, 0.5)),
            batch(5, batch_id="r-1", decided_at=AS_OF + pd.Timedelta(seconds=1)),
            batch(5, batch_id="r-1", model_version="v2"),
            batch(4, batch_id="r-1"),
        ):
            with pytest.raises(BatchConflictError, match="'r-1' is already logged") as info:
                append(log, changed)
            assert info.value.batch_id == "r-1"
        assert len(log) == 5
        # without an id each batch is new (a random UUID)
        assert append(log, batch(2)) == 2 and append(log, batch(2)) == 2
        assert len(log) == 9
        assert log.read()["batch_id"].nunique() == 3


def test_group_commit_is_one_transaction(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.db") as log:
        append(log, batch(3, tag="old", batch_id="old"))
        written = log.append_batches(
            [
                batch(1, tag="a", batch_id="a"),
                batch(2, tag="b", batch_id="b"),
                batch(3, tag="old", batch_id="old"),  # logged before: 0
                batch(2, tag="b", batch_id="b"),  # twice in one group: once
            ]
        )
        assert written == [1, 2, 0, 0]
        # one conflicting batch refuses the whole group: nothing of it is written
        with pytest.raises(BatchConflictError, match="'a'"):
            log.append_batches([batch(4, tag="c", batch_id="c"), batch(1, tag="x", batch_id="a")])
        assert log.batch("c") is None
        frame_ = log.read()
    assert len(frame_) == 6
    assert frame_.groupby("batch_id")["position"].apply(sorted).to_dict() == {
        "a": [0],
        "b": [0, 1],
        "old": [0, 1, 2],
    }


def one_row(customer_id: object, batch_id: str, **overrides: object) -> LoggedBatch:
    """A one-row batch as ``nba serve`` logs it (one-element lists, a single timestamp)."""
    fields: dict[str, object] = {
        "customer_id": [customer_id],
        "decided_at": pd.Timestamp("2026-11-23T10:00:00.123456789Z"),
        "model_version": ModelVersion("nba-retail/3", "nba-retail", "3", "run-1"),
        "actions": [2],
        "action_names": ["sms"],
        "propensities": [0.25],
        "explored": [True],
        "features": np.array([[0.5, -1.25, 3.0]], dtype=np.float32),
        "probabilities": np.array([[0.5, 0.25, 0.25]]),
        "feature_names": ["f0", "f1", "f2"],
        "batch_id": batch_id,
    }
    fields.update(overrides)
    return LoggedBatch(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "customer_id", ["c-1", 42, "", "\u00e9\u20ac\U0001f600", "with 'quote'", -(2**70)]
)
def test_one_row_batches_store_and_hash_as_any_batch_does(
    tmp_path: Path, customer_id: object
) -> None:
    """A one-row batch skips numpy, yet its rows and content hash are the general path's: a
    retry is recognised whichever path logged the first attempt."""
    from nba.serving.decision_log import _PreparedRow

    quick = one_row(customer_id, "r")
    general = one_row(customer_id, "r", decided_at=[quick.decided_at])  # an array: general
    assert _PreparedRow.build(quick) is not None and _PreparedRow.build(general) is None
    frames, hashes = [], []
    for name, logged in (("quick", quick), ("general", general)):
        with DecisionLog(tmp_path / f"{name}.db") as log:
            assert append(log, logged) == 1
            record = log.batch("r")
            assert record is not None
            hashes.append(record.content_sha256)
            frames.append(log.read().drop(columns=["features", "probabilities"]))
            assert log.read()["features"].iloc[0].tolist() == [0.5, -1.25, 3.0]
    assert hashes[0] == hashes[1]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert frames[0]["customer_id"].tolist() == [str(customer_id)]
    assert frames[0]["decided_at"].tolist() == ["2026-11-23T10:00:00.123456Z"]
    with DecisionLog(tmp_path / "quick.db") as log:
        assert append(log, general) == 0  # the retry, by the other path: nothing written
        for changed in (
            one_row(customer_id, "r", propensities=[0.5]),
            one_row(customer_id, "r", explored=[False]),
            one_row(customer_id, "r", model_version="nba-retail/3"),  # no provenance
            one_row(customer_id, "r", feature_names=["f0", "f1", "g2"]),
            one_row(f"{customer_id}x", "r"),
        ):
            with pytest.raises(BatchConflictError):
                append(log, changed)
        assert len(log) == 1


def test_one_row_batches_refused_as_any_batch_is(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.db") as log:
        for bad, message in (
            (one_row("c", "b", propensities=[0.0]), r"propensities\[0\]"),
            (one_row("c", "b", propensities=[float("nan")]), r"propensities\[0\]"),
            (one_row("c", "b", actions=[1, 2]), "actions: expected 1 rows"),
            (one_row("c", "b", features=np.ones((2, 3))), r"features: expected shape \(1, k\)"),
            (one_row("c", "b", decided_at=pd.NaT), "decided_at: no time"),
            (one_row("c", ""), "batch_id: expected a non-empty string"),
        ):
            with pytest.raises(DecisionLogError, match=message):
                append(log, bad)
        assert len(log) == 0


def test_a_large_group_is_checked_and_written_in_order(tmp_path: Path) -> None:
    """700 one-row batches around a large one: ids looked up in chunks, rows in group order."""
    group = [one_row(f"c{k}", f"r{k}") for k in range(700)]
    group.insert(300, batch(2_000, tag="big", batch_id="big"))
    group.insert(10, batch(3, tag="small", batch_id="small"))
    with DecisionLog(tmp_path / "d.db") as log:
        assert log.append_batches(group) == [len(b.customer_id) for b in group]
        frame_ = log.read()
        assert frame_["batch_id"].drop_duplicates().tolist() == [b.batch_id for b in group]
        assert frame_["id"].is_monotonic_increasing and len(frame_) == 700 + 2_000 + 3
        last = frame_.groupby("batch_id")["position"].max()
        assert last.loc[["big", "small", "r5"]].tolist() == [1_999, 2, 0]
        again = [*group[::-1], one_row("new", "new")]
        assert log.append_batches(again) == [0] * len(group) + [1]
        with pytest.raises(BatchConflictError, match="'r650'"):
            log.append_batches([*group, one_row("c650", "r650", actions=[1])])
        assert len(log) == 700 + 2_000 + 3 + 1


def test_feature_names_are_the_last_logged_batchs(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with DecisionLog(path) as log:
        log.append_batches([one_row("a", "a"), one_row("b", "b", feature_names=["x", "y", "z"])])
        assert read_decision_log(path).feature_names == ["x", "y", "z"]
        append(log, one_row("c", "c", feature_names=None))  # no names: the log keeps its own
        assert read_decision_log(path).feature_names == ["x", "y", "z"]
        append(log, one_row("d", "d"))
        assert read_decision_log(path).feature_names == ["f0", "f1", "f2"]


def test_bad_batches_are_refused_before_writing(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.db") as log:
        cases = [
            (batch(3, propensities=np.array([1.0, 0.0, 1.0])), r"propensities\[1\]"),
            (batch(3, actions=np.zeros(2, dtype=int)), "actions: expected 3 rows"),
            (batch(3, features=np.ones((2, 4))), r"features: expected shape \(3, k\)"),
            (batch(3, decided_at=pd.Series([AS_OF, pd.NaT, AS_OF])), r"decided_at\[1\]"),
            (batch(3, batch_id=""), "batch_id: expected a non-empty string"),
            (batch(3, batch_id="x" * 201), "batch_id: longer than 200"),
        ]
        for bad, message in cases:
            with pytest.raises(DecisionLogError, match=message):
                append(log, bad)
        assert len(log) == 0


def test_model_versions_with_quotes_are_stored_verbatim(tmp_path: Path) -> None:
    """Shared values go into the INSERT as literals: quoting must be exact."""
    with DecisionLog(tmp_path / "d.db") as log:
        tricky = ModelVersion("it's v'1'); DROP TABLE decisions; --", "m'x", "3", None)
        append(log, batch(2, batch_id="q", model_version=tricky))
        append(log, batch(1, tag="nul", batch_id="n", model_version="v\x00bound"))
        frame_ = log.read()
    assert frame_["model_version"].tolist()[:2] == [str(tricky)] * 2
    assert frame_["model_version"].iloc[2] == "v\x00bound"
    assert frame_["model_name"].iloc[0] == "m'x" and frame_["model_number"].iloc[0] == "3"
    assert frame_["run_id"].isna().all()


def test_timestamps_have_one_format(tmp_path: Path) -> None:
    stamps = pd.Series(
        [
            pd.Timestamp("2026-11-22T19:00:00-05:00"),  # a New York evening is UTC midnight
            pd.Timestamp("2026-11-23T00:00:00.123456Z"),
        ]
    )
    assert format_stamp(stamps).tolist() == [
        "2026-11-23T00:00:00.000000Z",
        "2026-11-23T00:00:00.123456Z",
    ]
    assert format_stamp(pd.Timestamp("2026-11-23 10:00")) == "2026-11-23T10:00:00.000000Z"
    # one timestamp formats without pandas where it can: the same text either way
    for value in (
        pd.Timestamp("2026-11-23T10:00:00.999999999Z"),
        pd.Timestamp("1969-12-31T23:59:59.9999995Z"),
        pd.Timestamp("2026-11-22T19:00:00.5-05:00"),
        pd.Timestamp("2026-11-23T10:00", tz="Etc/UTC"),
        datetime(2026, 11, 23, 10, 0, 0, 7),
        datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=-5))),
        "2026-11-23T10:00:00+01:00",
        pd.Timestamp("0807-07-18T13:09:46-02:29"),  # not a nanosecond unit: pandas formats it
        pd.Timestamp("0807-07-18T13:09:46Z"),
        pd.Timestamp("2026-01-15T10:00:00.25", tz="Europe/London"),  # offset 0 in winter
        pd.Timestamp.now(tz="UTC"),  # microseconds: what nba serve logs
    ):
        utc = pd.Timestamp(value)
        utc = utc.tz_localize("UTC") if utc.tzinfo is None else utc.tz_convert("UTC")
        assert format_stamp(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), value
    from nba.serving.decision_log import _quick_stamp

    assert _quick_stamp(pd.Timestamp.now(tz="UTC")) is not None  # the request path's is quick
    parsed = parse_stamps(format_stamp(stamps))
    assert str(parsed.tz) == "UTC" and (parsed == pd.to_datetime(stamps, utc=True)).all()
    with DecisionLog(tmp_path / "d.db") as log:
        append(log, batch(2, decided_at=stamps, batch_id="t"))
    records = read_decision_log(tmp_path / "d.db")
    assert (records.decided_at == parsed).all()
    assert len(read_decision_log(tmp_path / "d.db", since="2026-11-23T00:00:00.1Z")) == 1


def test_old_logs_are_migrated_in_place_and_newer_ones_refused(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    with sqlite3.connect(path) as old:  # version 1: no provenance, no batches, no version
        old.executescript(
            """
            CREATE TABLE decisions (
                id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT NOT NULL,
                decided_at TEXT NOT NULL, model_version TEXT NOT NULL, action INTEGER NOT NULL,
                action_name TEXT NOT NULL, propensity REAL NOT NULL, explored INTEGER NOT NULL,
                features BLOB NOT NULL, probabilities BLOB NOT NULL);
            CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO decisions (customer_id, decided_at, model_version, action, action_name,
                propensity, explored, features, probabilities)
            VALUES ('c0', '2026-11-01T00:00:00.000000Z', 'v0', 0, 'none', 1.0, 0,
                x'0000803f', x'0000803f0000803f0000803f');
            """
        )
    with DecisionLog(path) as log:
        assert append(log, batch(2, batch_id="new")) == 2
        frame_ = log.read()
    assert frame_["model_version"].tolist() == ["v0", "v1", "v1"]
    assert frame_["batch_id"].isna().tolist() == [True, False, False]  # old rows: no batch
    with sqlite3.connect(path) as connection:
        version = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'")
        assert version.fetchone()[0] == str(SCHEMA_VERSION)
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DecisionLogError, match="schema version 99 is newer"):
        DecisionLog(path)
    with pytest.raises(OPEInputError, match="schema version 99 is newer"):
        read_decision_log(path)


def test_threads_share_one_log(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.db") as log:

        def work(thread: int) -> None:
            for k in range(10):
                tag = f"t{thread}-{k}"
                append(log, batch(3, tag=tag, batch_id=tag))
                append(log, batch(3, tag=tag, batch_id=tag))  # and its retry

        threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        frame_ = log.read()
    assert len(frame_) == 6 * 10 * 3 and frame_["customer_id"].is_unique


def _append_in_child(log: DecisionLog) -> None:
    append(log, batch(2, tag="child", batch_id="child"))


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.db") as log:
        append(log, batch(1, tag="parent", batch_id="parent"))
        child = multiprocessing.get_context("fork").Process(target=_append_in_child, args=(log,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert append(log, batch(1, tag="parent2", batch_id="parent2")) == 1
        assert sorted(log.read()["batch_id"].unique()) == ["child", "parent", "parent2"]


def test_a_writer_waits_for_the_lock_then_gives_up_with_our_error(tmp_path: Path) -> None:
    path = tmp_path / "d.db"
    with DecisionLog(path, timeout=0.5) as log:
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        started = time.monotonic()
        with pytest.raises(DecisionLogBusyError, match="still locked by other writers"):
            append(log, batch(2, batch_id="late"))
        assert 0.4 < time.monotonic() - started < 5
        release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
        release.start()
        log.timeout = 10.0
        assert append(log, batch(2, batch_id="late")) == 2  # waited for the lock
        release.join()
        other.close()


# ------------------------------------------------------------------------------ kill -9 chaos
def _size(writer: int, k: int) -> int:
    """Mostly small batches, every fourth one 5,000 rows (kills land inside its write)."""
    return 5_000 if k % 4 == 3 else 1 + (writer * 7919 + k * 104729) % 300


def _chaos_batch(writer: int, k: int) -> LoggedBatch:
    n = _size(writer, k)
    rng = np.random.default_rng([writer, k])
    actions = rng.integers(0, 13, n)
    return LoggedBatch(
        customer_id=np.array([f"w{writer}-{k}-{i}" for i in range(n)], dtype=object),
        decided_at=AS_OF + pd.Timedelta(seconds=k),
        model_version="v1",
        actions=actions,
        action_names=np.array([f"a{a}" for a in actions]),
        propensities=np.ones(n),
        explored=np.zeros(n, dtype=bool),
        features=rng.random((n, 44), dtype=np.float32),
        probabilities=np.full((n, 13), 1 / 13),
        batch_id=f"w{writer}-{k}",
    )


def _write_forever(path: Path, writer: int, k: int, acks: int) -> None:
    """A writer process: append batches (every third call a group of three, as the HTTP
    service commits them) and acknowledge each id on the pipe once ``append`` returned."""
    log = DecisionLog(path)
    os.write(acks, b"ready\n")
    while True:
        group = [k, k + 1, k + 2] if k % 3 == 1 else [k]
        log.append_batches([_chaos_batch(writer, j) for j in group])
        os.write(acks, "".join(f"w{writer}-{j}\n" for j in group).encode())
        k += len(group)


class _Writer:
    """A forked writer (the parent has numpy and pandas loaded: it starts in milliseconds),
    restarted after each kill from its first unacknowledged batch, which may or may not have
    committed before the kill: the resend must then write nothing."""

    def __init__(self, path: Path, index: int, rng: np.random.Generator) -> None:
        self.path, self.index, self.rng = path, index, rng
        self.acked: list[str] = []
        self.kills = 0
        self.pid = 0
        self.kill_at: float | None = None
        self.fd = -1
        self.buffer = b""

    def start(self) -> None:
        next_k = max((int(a.rsplit("-", 1)[1]) for a in self.acked), default=-1) + 1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child never returns into pytest
            try:
                os.close(read)
                _write_forever(self.path, self.index, next_k, write)
            finally:
                os._exit(1)
        os.close(write)
        self.pid, self.fd, self.buffer, self.kill_at = pid, read, b"", None

    def drain(self) -> None:
        """Read what the pipe holds; schedule the kill once the writer is ready."""
        while select.select([self.fd], [], [], 0)[0]:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            if line == b"ready":
                self.kill_at = time.monotonic() + float(self.rng.uniform(0.02, 1.0))
            else:
                self.acked.append(line.decode())

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.drain()  # acknowledgements written before the kill still count
        os.close(self.fd)
        self.kills += 1


@pytest.mark.integration
def test_writers_killed_at_random_moments_leave_whole_batches_acknowledged_once(
    tmp_path: Path,
) -> None:
    """Three processes append (single batches, group commits, 5,000-row batches) to one log
    and are killed with SIGKILL at random moments, then restarted to resend what they had not
    seen acknowledged. Afterwards: every batch wholly there or wholly absent, every
    acknowledged batch there exactly once, no row twice."""
    path = tmp_path / "chaos.db"
    DecisionLog(path).close()  # created once; writers race on appends, not on the schema
    writers = [_Writer(path, i, np.random.default_rng([13, i])) for i in range(3)]
    for writer in writers:
        writer.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for writer in writers:
            writer.drain()
            if writer.kill_at is not None and time.monotonic() >= writer.kill_at:
                writer.kill()
                writer.start()
        time.sleep(0.005)
    for writer in writers:
        writer.kill()

    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with DecisionLog(path) as log:
        rows = pd.read_sql_query(
            "SELECT b.batch_id, b.row_count, COUNT(d.id) AS n, MIN(d.position) AS first, "
            "MAX(d.position) AS last, COUNT(DISTINCT d.position) AS positions "
            "FROM batches b LEFT JOIN decisions d ON d.batch = b.id GROUP BY b.id",
            log._connection,
        )
        ids = log._connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT customer_id), SUM(batch IS NULL) FROM decisions"
        ).fetchone()
    acked = [a for writer in writers for a in writer.acked]
    assert sum(writer.kills for writer in writers) >= 30
    assert len(acked) >= 100, "the writers barely wrote: the test exercised nothing"
    assert len(acked) == len(set(acked))  # nothing acknowledged twice
    logged = set(rows["batch_id"])
    assert set(acked) <= logged  # every acknowledged batch is there ...
    assert rows["batch_id"].is_unique  # ... once
    expected = [_size(int(b[1]), int(b.rsplit("-", 1)[1])) for b in rows["batch_id"]]
    assert (rows["row_count"] == expected).all()  # whole batches only
    assert (rows["n"] == rows["row_count"]).all()
    assert (rows["positions"] == rows["n"]).all() and (rows["first"] == 0).all()
    assert (rows["last"] == rows["n"] - 1).all()
    total, distinct, unbatched = ids
    assert total == distinct == rows["n"].sum() and unbatched == 0  # no row twice
