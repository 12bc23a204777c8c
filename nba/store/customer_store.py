"""``CustomerStore``: events in, each customer's observed state and belief out, in one file.

Ingest (:meth:`CustomerStore.ingest`) is one transaction per batch: the batch's new events are
added (an event already stored, or repeated within the batch, is skipped: the same batch twice
changes nothing), then every customer with a new event is recomputed from their whole stored
history: the observed summary by the twin's rules (:mod:`nba.store.observed`) and the belief
by the twin's filter at the batch's ``now`` (:mod:`nba.store.beliefs`). Order of arrival does not
matter: a late event (older than the customer's last stored event) is part of the history the
recompute reads, and the report counts it. An event after ``now`` is refused by name and the
batch is not applied. A ``kill -9`` mid-batch leaves the previous commit: SQLite rolls the open
transaction back when the file is next opened.

:meth:`CustomerStore.state` gives the state as of any time in the scoring request's own field
names, plus the belief summary. After a customer's last event it is the stored summary aged by
the twin's rules and, where the belief was computed at that very time, the stored belief;
whole quiet days after it move the stored belief on (:func:`nba.store.beliefs.advance_quiet`);
an earlier time, or another belief time, is recomputed from the stored history (exact, slower).

Consent comes from ``consented`` events (:mod:`nba.store.consent`): the state carries every
channel's ``consent_<channel>`` so the scorer applies the customer's own consent, and the belief's
prior is conditioned on it. ``consent_required`` (set when the store is created, default True)
says what a customer without any consent record gets: no consent on channels that need it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nba.belief import BeliefTracker
from nba.calibration.events import EventLog, EventLogError, utc_time
from nba.scenario import Scenario
from nba.store import database
from nba.store.beliefs import advance_quiet, belief_shape, beliefs
from nba.store.consent import refuse_unknown_channels
from nba.store.database import StoreError, UnknownCustomerError
from nba.store.observed import NEVER, ObservedRules, Summary, summarise
from nba.store.records import Records, pack, record_dtype, unpack
from nba.store.rows import CODE, COLUMNS, encode, from_records, records
from nba.store.state_frame import state_frame

#: a request for at least this share of the store (and this many ids) reads every row in
#: stored order and picks the wanted ones in memory (no temporary table of ids)
WHOLE_SCAN_SHARE, WHOLE_SCAN_MIN = 0.5, 10_000


@dataclass(frozen=True)
class IngestReport:
    """What one batch did to the store."""

    events_in_batch: int
    events_added: int
    duplicates_skipped: int  # already stored (a batch ingested twice skips every event)
    duplicates_in_batch: int  # dropped when the batch was read (``EventLog.dropped_duplicates``)
    late_events: int  # added, but older than their customer's last stored event
    customers_updated: int
    new_customers: int
    customers_in_store: int
    now: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class CustomerStore:
    """An embedded customer-state store bound to one scenario (see the module docstring).

    Use :meth:`create` or :meth:`open`; close it (or use it as a context manager) when done.
    """

    def __init__(self, path: Path, connection: Any, scenario: Scenario, meta: dict[str, str]):
        self.path = path
        self.scenario = scenario
        self._belief_tracker: BeliefTracker | None = None
        self._db = connection
        self._rules = ObservedRules.from_scenario(scenario)
        layout = json.loads(meta["layout"])
        self._shape = tuple(int(x) for x in layout["belief_shape"])
        self._record = record_dtype(len(self._rules.channels), self._shape)
        if list(layout["channels"]) != list(self._rules.channels):
            raise StoreError(f"store {str(path)!r}: stored channels {layout['channels']} differ")
        first = meta.get("first_purchase_ts")
        self._record_start: int | None = int(first) if first is not None else None
        #: a customer without a consent record has no consent on channels that need it (True),
        #: or their most likely persona's default consent (False; :mod:`nba.store.consent`)
        self.consent_required = meta.get("consent_required", "true") == "true"

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls, path: str | Path, scenario: Scenario, *, consent_required: bool = True
    ) -> CustomerStore:
        """A new, empty store at ``path`` bound to ``scenario`` (an existing file is refused).

        :param consent_required: a customer without any ``consented`` event has no consent on
            channels that need it (default; the compliant reading of a missing record). False
            gives them their MOST LIKELY PERSONA'S DEFAULT CONSENT, as the scorer does for a
            request without consent fields: only where consent is not kept in these events.
        """
        if not isinstance(consent_required, bool):
            raise StoreError(f"consent_required: expected True or False, got {consent_required!r}")
        path = Path(path)
        if path.exists():
            raise StoreError(f"store: {str(path)!r} already exists; open it instead")
        if not path.parent.is_dir():
            raise StoreError(f"store: no folder {str(path.parent)!r} for {path.name!r}")
        connection = database.connect(path)
        layout = {"channels": list(scenario.channel_names), "belief_shape": belief_shape(scenario)}
        settings = {"consent_required": "true" if consent_required else "false"}
        database.create_schema(connection, scenario, layout, settings)
        return cls(path, connection, scenario, database.read_meta(connection, path))

    @classmethod
    def open(cls, path: str | Path, scenario: Scenario | None = None) -> CustomerStore:
        """An existing store; with ``scenario``, one built for another scenario is refused."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"store: no file at {str(path)!r}")
        connection = database.connect(path)
        try:
            meta = database.read_meta(connection, path)
            database.migrate(connection, meta)
            bound = database.stored_scenario(meta, path, scenario)
            return cls(path, connection, bound, meta)
        except BaseException:
            connection.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CustomerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0])

    @property
    def n_events(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def customer_ids(self) -> pd.Index:
        """Every customer the store holds, sorted."""
        rows = self._db.execute("SELECT customer_id FROM customers ORDER BY customer_id")
        return pd.Index([r[0] for r in rows], dtype=object, name="customer_id")

    def integrity(self) -> str:
        """SQLite's ``integrity_check`` verdict (``'ok'`` when the file is sound)."""
        return str(self._db.execute("PRAGMA integrity_check").fetchone()[0])

    def state(
        self, customer_ids: Any = None, as_of: pd.Timestamp | str | None = None
    ) -> pd.DataFrame:
        """Each customer's observed state and belief summary as of ``as_of`` (default now);
        ``customer_ids`` None: every customer, in :meth:`customer_ids` order.

        Columns are the scoring request's fields (``customer_id``, ``as_of``, ``persona`` and
        ``stage`` at their most likely values, ``pressure``, ``discount_habit``, ``opted_out``,
        the levels where the scenario has them, ``days_since_<cap>``, ``last_contact_<channel>``)
        and ``consent_<channel>`` for every channel (a customer without a consent record as of
        ``as_of``: see :attr:`consent_required`), then ``belief_consent`` (``"conditioned"``,
        ``"no_record"`` or ``"fits_no_persona"``: whether the belief's prior is conditioned on
        the consent), ``persona_probability``, ``stage_probability`` and
        ``discount_habit_probability``. Unknown ids raise :class:`UnknownCustomerError` naming them.
        """
        return self.read(customer_ids, as_of)[0]

    def belief(
        self, customer_ids: Any = None, as_of: pd.Timestamp | str | None = None
    ) -> tuple[pd.Index, np.ndarray]:
        """(ids, (N, personas, rate levels, dropout levels, stages) float32 joint belief)."""
        ids, _, _, joint = self._read(customer_ids, as_of)
        return ids, joint

    def read(
        self, customer_ids: Any = None, as_of: pd.Timestamp | str | None = None
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """(:meth:`state`, :meth:`belief`'s joint) from ONE read: one snapshot, read once
        (what deciding for a batch needs; the two calls would each read every row)."""
        ids, when, summary, joint = self._read(customer_ids, as_of)
        state = state_frame(
            self.scenario, self._rules, ids, when, summary, joint, self.consent_required
        )
        return state, joint

    def _read(
        self, customer_ids: Any, as_of: pd.Timestamp | str | None
    ) -> tuple[pd.Index, int, Summary, np.ndarray]:
        wanted = None if customer_ids is None else _as_ids(customer_ids)
        when = int(_nanoseconds(as_of if as_of is not None else pd.Timestamp.now("UTC"), "as_of"))
        self._db.execute("BEGIN")
        try:
            ids, stored = self._records(wanted)
            summary, belief_ts, joint = stored.summary, stored.belief_ts, stored.joint
            stale = np.flatnonzero(summary.last_ts >= when)  # an event at or after as_of
            if stale.size:
                history = self._history(list(ids[stale]))
                history = history[history["ts"] < when]
                _replace(summary, stale, summarise(history, ids[stale], self._rules))
            other = np.flatnonzero(belief_ts != when)
            if other.size:  # quiet since the belief: move it on; else recompute
                since = (belief_ts, summary.last_ts)
                moved = advance_quiet(
                    self._tracker(), joint, other, since, when, self._record_start
                )
                other = other[~moved]
            if other.size:
                history = self._history(list(ids[other]))
                joint[other], _ = beliefs(
                    self.scenario, history, ids[other], when, self._record_start
                )
        finally:
            self._db.execute("COMMIT")
        return ids, when, summary, joint

    def _tracker(self) -> BeliefTracker:
        """The twin's belief tracker, built once per store (its kernels cost a little)."""
        if self._belief_tracker is None:
            self._belief_tracker = BeliefTracker(self.scenario)
        return self._belief_tracker

    def _records(self, ids: pd.Index | None) -> tuple[pd.Index, Records]:
        """(ids, their records) in the order asked (None: every customer in stored order),
        inside the caller's transaction. A large share of the store is read by one scan in
        stored order (no temporary table); a few ids through the ``wanted`` table."""
        many = ids is not None and len(ids) >= WHOLE_SCAN_MIN
        if ids is None or (many and len(ids) >= WHOLE_SCAN_SHARE * len(self)):
            rows = self._db.execute("SELECT customer_id, record FROM customers").fetchall()
        else:
            database.with_ids(self._db, list(ids))
            rows = self._db.execute(
                "SELECT customer_id, record FROM customers JOIN wanted USING (customer_id)"
            ).fetchall()
        found = pd.Index([r[0] for r in rows], dtype=object, name="customer_id")
        table = unpack(self._record, [r[1] for r in rows])
        if ids is None:
            return found, table
        if len(found) == len(ids) and found.equals(ids):
            return ids, table
        position = found.get_indexer(ids)
        if (position < 0).any():
            missing = list(ids[position < 0])
            raise UnknownCustomerError(
                f"customer_ids: {len(missing)} unknown to store {str(self.path)!r}, e.g. "
                f"{missing[:5]}"
            )
        return ids, _take(table, position)

    def _history(self, ids: list[str]) -> pd.DataFrame:
        """Every stored event of ``ids`` (stored form), inside the caller's transaction."""
        database.with_ids(self._db, ids)
        rows = self._db.execute(
            f"SELECT {', '.join('e.' + c for c in COLUMNS)} FROM events e "
            "JOIN wanted USING (customer_id)"
        ).fetchall()
        return from_records(rows)

    # ------------------------------------------------------------------ ingest
    def ingest(self, log: EventLog, now: pd.Timestamp | str | None = None) -> IngestReport:
        """Add a batch of events and recompute the customers it touches (module docstring)."""
        began = time.perf_counter()
        if not isinstance(log, EventLog):
            raise EventLogError(f"events: expected an EventLog, got {type(log).__name__}")
        moment = utc_time(now, "now") if now is not None else pd.Timestamp.now("UTC")
        cutoff = _nanoseconds(moment, "now")
        batch = encode(log.events)
        _refuse_future(batch, cutoff, moment)
        refuse_unknown_channels(batch, self._rules, self.scenario)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            report = self._ingest(batch, cutoff)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        added, late, updated, new = report
        return IngestReport(
            events_in_batch=len(batch),
            events_added=added,
            duplicates_skipped=len(batch) - added,
            duplicates_in_batch=int(log.dropped_duplicates),
            late_events=late,
            customers_updated=updated,
            new_customers=new,
            customers_in_store=len(self),
            now=moment.isoformat(),
            seconds=round(time.perf_counter() - began, 3),
        )

    def _ingest(self, batch: pd.DataFrame, cutoff: int) -> tuple[int, int, int, int]:
        """(events added, late events, customers updated, new customers), in the transaction."""
        touched = pd.Index(pd.unique(batch["customer_id"]), dtype=object)
        database.with_ids(self._db, list(touched))
        stored = self._db.execute(
            "SELECT customer_id, record FROM customers JOIN wanted USING (customer_id)"
        ).fetchall()
        last_ts = unpack(self._record, [r[1] for r in stored]).summary.last_ts.tolist()
        known = dict(zip([r[0] for r in stored], last_ts, strict=True))
        old = self._history(list(known)) if known else from_records([])
        new = _anti_join(batch, old)
        if new.empty:
            return 0, 0, 0, 0
        new = new.sort_values(["customer_id", "ts"], kind="stable")
        self._db.executemany(f"INSERT INTO events VALUES ({', '.join('?' * 7)})", records(new))
        position = pd.Index(list(known), dtype=object).get_indexer(new["customer_id"])
        stored_last = np.array([*known.values(), NEVER], dtype=np.int64)[position]  # -1: NEVER
        late = int((new["ts"].to_numpy(dtype=np.int64) < stored_last).sum())
        ids = pd.Index(pd.unique(new["customer_id"]), dtype=object)
        history = pd.concat([old[old["customer_id"].isin(ids)], new], ignore_index=True)
        purchases = new.loc[new["event"] == CODE["purchased"], "ts"]
        if len(purchases) and (self._record_start is None or purchases.min() < self._record_start):
            self._record_start = int(purchases.min())
            database.set_meta(self._db, "first_purchase_ts", str(self._record_start))
        summary = summarise(history, ids, self._rules)
        joint, log_likelihood = beliefs(self.scenario, history, ids, cutoff, self._record_start)
        self._write_customers(ids, summary, cutoff, joint, log_likelihood)
        return len(new), late, len(ids), int(sum(1 for i in ids if i not in known))

    def _write_customers(
        self,
        ids: pd.Index,
        summary: Summary,
        cutoff: int,
        joint: np.ndarray,
        log_likelihood: np.ndarray,
    ) -> None:
        blobs = pack(
            self._record, summary, np.full(len(ids), cutoff, dtype=np.int64), log_likelihood, joint
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO customers (customer_id, record) VALUES (?, ?)",
            zip(list(ids), blobs, strict=True),
        )


def _anti_join(batch: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """The batch's events not already stored (and each only once)."""
    batch = batch.drop_duplicates(list(COLUMNS)) if batch.duplicated().any() else batch
    if stored.empty:
        return batch
    merged = batch.merge(stored, on=list(COLUMNS), how="left", indicator=True)
    return batch[(merged["_merge"] == "left_only").to_numpy()]


def _refuse_future(batch: pd.DataFrame, cutoff: int, moment: pd.Timestamp) -> None:
    future = batch["ts"].to_numpy() > cutoff
    if future.any():
        row = int(np.flatnonzero(future)[0])
        when = pd.Timestamp(int(batch["ts"].iloc[row]), unit="ns", tz="UTC")
        raise StoreError(
            f"events: {int(future.sum())} event(s) in the future, e.g. customer "
            f"{batch['customer_id'].iloc[row]!r} at {when.isoformat()}, after now "
            f"({moment.isoformat()}); nothing was ingested"
        )


def _nanoseconds(moment: pd.Timestamp | str, field: str) -> int:
    stamp = utc_time(moment, field)
    return int(stamp.as_unit("ns").value)


def _as_ids(customer_ids: Any) -> pd.Index:
    if isinstance(customer_ids, (str, int)):
        customer_ids = [customer_ids]
    ids = pd.Index([str(i) for i in customer_ids], dtype=object, name="customer_id")
    if ids.has_duplicates:
        raise StoreError(f"customer_ids: {ids[ids.duplicated()][0]!r} is listed twice")
    return ids


def _take(table: Records, rows: np.ndarray) -> Records:
    """The records at ``rows`` (in that order)."""
    summary = Summary(
        **{name: getattr(table.summary, name)[rows] for name in Summary.__dataclass_fields__}
    )
    return Records(summary, table.belief_ts[rows], table.log_likelihood[rows], table.joint[rows])


def _replace(summary: Summary, rows: np.ndarray, part: Summary) -> None:
    for name in Summary.__dataclass_fields__:
        getattr(summary, name)[rows] = getattr(part, name)
