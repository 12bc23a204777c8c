"""``nba serve``: decisions over HTTP on the scorer's single-customer path.

A FastAPI app over :class:`~nba.serving.scorer.PolicyScorer`, served by uvicorn:

- ``POST /decide``: one customer (a JSON object of request fields) through
  :meth:`~nba.serving.scorer.PolicyScorer.score`, the microsecond path;
- ``POST /decide/batch``: ``{"customers": [...], "capacity": {...}, "as_of": ..., "top_k": 3}``
  through :meth:`~nba.serving.scorer.PolicyScorer.score_batch`;
- ``GET /healthz`` (always open), ``GET /version`` (the resolved registry name, version and run
  id) and ``GET /openapi.json``, whose request bodies are the scorer's own JSON Schema
  (:meth:`~nba.serving.scorer.PolicyScorer.input_schema`): the contract is the validator's.

Why not pydantic models: the request schema is the scenario's (personas, channels, caps), and
the one validator every entry point shares is :mod:`nba.serving.schema`; a second validator
would drift from it. Bodies are read raw, bounded, decoded as strict JSON (no NaN or Infinity,
no duplicate keys, UTF-8 only), and every refusal is one line ``{"error": "..."}`` with 400,
401, 409, 413, 415, 422 or 503. An unexpected failure answers 500 ``internal error`` and the
traceback goes to the server's log only.

With a decision log, a response leaves only after its rows are committed: a writer thread takes
whatever requests queued while the previous transaction committed and writes them in one
transaction (group commit), and each request awaits its commit. The request id (the client's
``X-Request-ID``, else a new UUID) is the log's batch id, so a retry with the same id is logged
once (the same id with other decisions: 409). Several worker processes share one log, taking
turns on a file lock beside it.

For a ``models:/NAME@ALIAS`` source a background task re-resolves the alias every
``reload_every`` seconds; a new version is loaded and warmed in a thread and then the scorer
reference is swapped in one assignment. A request reads the reference once, so requests in
flight finish on the model they started with and none is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import fcntl
import hmac
import json
import logging
import math
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from nba.errors import NBAValidationError
from nba.serving.schema import timestamp_schema
from nba.serving.scorer import Decision, PolicyScorer

__all__ = ["ServeSettings", "ServiceError", "app_from_environment", "create_app"]

logger = logging.getLogger("nba.serve")

SETTINGS_ENV = "NBA_SERVE_SETTINGS"  # JSON settings for worker processes (uvicorn --workers)
DEFAULT_MAX_BODY_BYTES = 1 << 20  # one customer is ~300 bytes; 1 MiB leaves room, bounds abuse
DEFAULT_MAX_BATCH_BYTES = 16 << 20
DEFAULT_MAX_BATCH_ROWS = 10_000
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,200}")  # visible ASCII: UUIDs, ULIDs, trace ids
_LONE_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BATCH_FIELDS = frozenset({"customers", "capacity", "as_of", "top_k"})
_SPACE = " \t\n\r"  # JSON's whitespace


@dataclass(frozen=True)
class ServeSettings:
    """What ``nba serve`` was asked for; travels to worker processes as JSON."""

    model: str
    tracking_uri: str | None = None
    token: str | None = None
    log: str | None = None
    reload_every: float = 30.0  # seconds between registry polls; 0 = never
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    epsilon: float = 0.0
    seed: int | None = None
    pinned: str | None = None  # the version the parent resolved: workers load exactly that
    workers: int = 1
    trusted_scenario: str | None = None  # every version loaded must carry this scenario

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))

    @property
    def follows_registry(self) -> bool:
        """Whether the source can move: an alias, a stage or ``latest``, not a pinned number."""
        if not self.model.startswith("models:/"):
            return False
        rest = self.model[len("models:/") :].strip("/")
        return not (rest.count("/") == 1 and rest.rsplit("/", 1)[1].isdigit())


class ServiceError(Exception):
    """A refusal with its HTTP status and one line for the client."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# ---------------------------------------------------------------------------- strict JSON
class _StrictJSONError(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _StrictJSONError(f"number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _StrictJSONError(f"duplicate key {_cut(key)!r}")
            seen.add(key)
    return result


_DECODER = json.JSONDecoder(
    parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
)


def parse_json(body: bytes) -> Any:
    """A request body as strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, valid text.

    :raises ServiceError: 400 naming the problem.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ServiceError(400, f"body: not UTF-8 (byte at offset {exc.start})") from None
    try:
        value, end = _DECODER.raw_decode(text, len(text) - len(text.lstrip(_SPACE)))
        if text[end:].strip(_SPACE):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as exc:
        raise ServiceError(400, f"body: invalid JSON ({exc.msg} at offset {exc.pos})") from None
    except _StrictJSONError as exc:
        raise ServiceError(400, f"body: invalid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
        raise ServiceError(400, f"body: invalid JSON ({_first_line(exc)})") from None
    if _LONE_SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise ServiceError(400, "body: invalid JSON (a \\u escape is half a surrogate pair)")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string (key or value) holds a surrogate that is not UTF-8 encodable."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _cut(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(exc: BaseException, limit: int = 300) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = "; ".join(lines) if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------- decision log
@dataclass
class _Pending:
    batch: Any
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop


class GroupCommitLog:
    """One writer thread that commits the rows of many requests in one transaction.

    Requests :meth:`commit` their batch and await it; the thread takes every batch queued while
    the previous transaction was committing, lingers while more keep arriving (``linger_gap``
    apart, ``linger`` at most: an fsync costs milliseconds on a busy disk, a request a fraction
    of one) but only until the group is as large as the last groups were (a steady set of
    clients is all there: waiting longer only adds latency), takes what queued while it waited
    for other workers' turn, appends them in one transaction, then wakes their requests, one
    wake-up per event loop. Throughput is then bounded by transactions, not by requests, and no
    request is answered before its rows are committed.
    """

    def __init__(
        self,
        path: str,
        max_batches: int = 4096,
        timeout: float = 10.0,
        linger: float = 0.002,
        linger_gap: float = 0.0005,
        shared: bool = False,
    ) -> None:
        from nba.serving.decision_log import DecisionLog

        self.path = path
        self.max_batches = max_batches
        self.linger, self.linger_gap = linger, linger_gap
        self._log = DecisionLog(path, timeout=timeout)
        # workers take turns on an empty sidecar beside SQLite's own -wal and -shm files
        self._lock_file = (
            os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT, 0o644) if shared else None
        )
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="nba-decision-log", daemon=True)
        self._thread.start()

    async def commit(self, batch: Any) -> None:
        """Return once ``batch`` is committed (or was already, under its batch id).

        :raises ServiceError: 409 when the batch id was logged with other decisions, 503 when
            the log could not be written.
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(batch, loop.create_future(), loop)
        self._queue.put(pending)
        await pending.future

    def close(self) -> None:
        """Commit what is queued, then stop the thread and close the file."""
        self._queue.put(None)
        self._thread.join()
        self._log.close()
        if self._lock_file is not None:
            os.close(self._lock_file)

    def _run(self) -> None:
        recent: collections.deque[int] = collections.deque([1], maxlen=16)  # group sizes
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group, stopping = self._gather(first, max(recent))
            recent.append(len(group))
            try:
                with self._turn():
                    if not stopping:  # what came while other workers committed joins in
                        stopping = self._drain(group)
                    outcomes = self._write(group)
            except Exception:  # the workers' lock failed: the requests must hear of it
                logger.exception("decision log %s: the writers' lock failed", self.path)
                failed = ServiceError(503, "decision log: the decision could not be recorded")
                outcomes = [(pending, failed) for pending in group]
            settled: dict[asyncio.AbstractEventLoop, list[tuple[Any, BaseException | None]]] = {}
            for pending, error in outcomes:
                settled.setdefault(pending.loop, []).append((pending.future, error))
            for loop, results in settled.items():  # one wake-up per event loop, not per request
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # its event loop is closed: nobody waits any more
                    pass

    def _gather(self, first: _Pending, usual: int) -> tuple[list[_Pending], bool]:
        """``first`` and what follows it: everything queued, then what arrives ``linger_gap``
        apart (``linger`` at most) until the group is as large as groups lately have been.
        ``True`` with it when the writer is asked to stop."""
        group = [first]
        deadline = time.monotonic() + self.linger
        while len(group) < self.max_batches:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if len(group) >= usual:  # as many as lately: waiting would only delay them
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:  # a request or two more per fsync is worth a few hundred us
                    item = self._queue.get(timeout=min(self.linger_gap, left))
                except queue.Empty:
                    break
            if item is None:
                return group, True
            group.append(item)
        return group, False

    def _drain(self, group: list[_Pending]) -> bool:
        """Add what is queued to ``group`` without waiting; ``True`` when asked to stop."""
        while len(group) < self.max_batches:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is None:
                return True
            group.append(item)
        return False

    @contextlib.contextmanager
    def _turn(self) -> Any:
        """Writers in other worker processes wait on a file lock, woken the moment it frees,
        rather than in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... ms between tries."""
        if self._lock_file is None:
            yield
            return
        fcntl.flock(self._lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)

    def _write(self, group: list[_Pending]) -> list[tuple[_Pending, BaseException | None]]:
        """Commit ``group`` in one transaction; what to tell each request.

        A reused batch id fails only its own requests (409), the rest are committed again
        without them; a batch the log refuses is found by committing one at a time.
        """
        from nba.serving.decision_log import BatchConflictError, DecisionLogError

        outcome: list[tuple[_Pending, BaseException | None]] = []
        remaining = group
        while remaining:
            try:
                self._log.append_batches([pending.batch for pending in remaining])
            except BatchConflictError as exc:
                reused = [p for p in remaining if p.batch.batch_id == exc.batch_id]
                remaining = [p for p in remaining if p.batch.batch_id != exc.batch_id]
                conflict = ServiceError(
                    409,
                    f"X-Request-ID: {_cut(exc.batch_id)!r} already logged other decisions; "
                    "a retry must repeat the request (with its as_of), a new request needs a "
                    "new id",
                )
                outcome += [(pending, conflict) for pending in reused]
                continue
            except DecisionLogError:
                if len(remaining) > 1:  # find the one it refuses; the others go in alone
                    for pending in remaining:
                        outcome += self._write([pending])
                    return outcome
                logger.exception("decision log %s: a decision was refused", self.path)
                outcome.append((remaining[0], ServiceError(500, "internal error")))
                return outcome
            except Exception:  # the requests must hear of it, never hang
                logger.exception(
                    "decision log %s: a commit of %d requests failed", self.path, len(remaining)
                )
                failed = ServiceError(503, "decision log: the decision could not be recorded")
                outcome += [(pending, failed) for pending in remaining]
                return outcome
            outcome += [(pending, None) for pending in remaining]
            return outcome
        return outcome


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in outcomes:
        if future.done():  # the request was cancelled (client gone): nothing to wake
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _BatchCollector:
    """Stands in for a decision log in :meth:`PolicyScorer.score_batch`: keeps what it would
    append, for the group-commit writer to write under the request's batch id."""

    def __init__(self) -> None:
        self.fields: dict[str, Any] | None = None

    def append(self, *args: Any, **fields: Any) -> int:
        from nba.serving.decision_log import LoggedBatch

        names = [item.name for item in dataclasses.fields(LoggedBatch)]
        self.fields = {**dict(zip(names, args, strict=False)), **fields}
        return len(self.fields["customer_id"])


def _logged_batch(batch_id: str, fields: Mapping[str, Any]) -> Any:
    """The decision log's batch for one request's rows (the keyword arguments of ``append``)."""
    from nba.serving.decision_log import LoggedBatch

    return LoggedBatch(**{**fields, "batch_id": batch_id})


def _single_batch(batch_id: str, scorer: PolicyScorer, traced: Any) -> Any:
    """The one-row log batch of a single-path decision."""
    from nba.serving.decision_log import LoggedBatch

    decision: Decision = traced.decision
    return LoggedBatch(  # one-element lists: the log's one-row path takes them without numpy
        customer_id=[decision.customer_id],
        decided_at=traced.decided_at,
        model_version=decision.model_version,
        actions=[decision.action],
        action_names=[decision.action_name],
        propensities=[decision.propensity],
        explored=[decision.explored],
        features=traced.features[None, :],
        probabilities=np.asarray(traced.probabilities)[None, :],
        feature_names=scorer.features.names,
        batch_id=batch_id,
    )


# ---------------------------------------------------------------------------- the service
@dataclass
class _Service:
    """What the routes share: the current scorer (swapped whole on reload) and the log."""

    settings: ServeSettings
    scorer: PolicyScorer
    log: GroupCommitLog | None = None
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    token: bytes | None = None
    openapi: bytes | None = None  # the document, built on first request (reset on reload)

    def __post_init__(self) -> None:
        self.token = self.settings.token.encode() if self.settings.token else None


def load_scorer_for(settings: ServeSettings, source: str | None = None) -> PolicyScorer:
    """Load (and warm) the scorer ``settings`` name; ``source`` overrides the URI (pinned)."""
    from nba.serving.scorer import Exploration

    if settings.tracking_uri and settings.model.startswith(("models:/", "runs:/")):
        import mlflow

        mlflow.set_tracking_uri(settings.tracking_uri)
    exploration = (
        Exploration(kind="epsilon", epsilon=settings.epsilon, seed=settings.seed)
        if settings.epsilon
        else None
    )
    scorer = PolicyScorer.load(
        source or settings.pinned or settings.model,
        exploration=exploration,
        trusted_scenario=settings.trusted_scenario,
    )
    warm(scorer)
    return scorer


def warm(scorer: PolicyScorer) -> None:
    """Score one made-up customer so the first real request finds day 0's table built."""
    schema = scorer.input_schema()
    properties = schema.get("properties", {})
    customer: dict[str, Any] = {"customer_id": "warm-up"}
    for name in schema.get("required", []):
        customer.setdefault(name, _example(properties.get(name, {})))
    for option in schema.get("anyOf", []):
        for name in option.get("required", []):
            if name.startswith("days_since_"):
                customer[name] = _example(properties.get(name, {}))
    try:
        scorer.score(customer)
    except NBAValidationError as exc:  # a layout the guess missed: the first request warms
        logger.warning("warm-up skipped: %s", _first_line(exc))


def _example(schema: Mapping[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kinds = schema.get("type")
    kind = kinds[0] if isinstance(kinds, list) else kinds
    if kind == "boolean":
        return False
    if kind == "integer":
        return int(schema.get("minimum", 0))
    return "x"


def _version_of(scorer: PolicyScorer) -> dict[str, Any]:
    version = scorer.model_version
    return {
        "model_version": str(version),
        "name": getattr(version, "name", None),
        "version": getattr(version, "version", None),
        "run_id": getattr(version, "run_id", None),
        "scenario": scorer.policy.scenario.name,
    }


async def _follow_registry(service: _Service) -> None:
    """Poll the alias; load a new version fully, then swap the scorer reference."""
    from nba.serving.provenance import resolve_model_uri

    settings = service.settings
    while True:
        await asyncio.sleep(settings.reload_every)
        try:
            pinned, version = await asyncio.to_thread(resolve_model_uri, settings.model)
            current = service.scorer.model_version
            if (version.name, version.version) == (
                getattr(current, "name", None),
                getattr(current, "version", None),
            ):
                continue
            scorer = await asyncio.to_thread(load_scorer_for, settings, pinned)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the registry is down or the version is bad: keep serving
            logger.warning(
                "reload of %s failed, still serving %s: %s",
                settings.model,
                service.scorer.model_version,
                _first_line(exc),
            )
            continue
        if scorer.input_schema() != service.scorer.input_schema():
            logger.warning(
                "%s: the request schema changed with %s", settings.model, scorer.model_version
            )
        previous = service.scorer.model_version
        service.scorer = scorer  # one reference assignment: requests hold the one they read
        service.loaded_at = datetime.now(UTC).isoformat()
        service.openapi = None
        logger.warning(
            "%s moved: now serving %s (was %s)", settings.model, scorer.model_version, previous
        )


# ---------------------------------------------------------------------------- request plumbing
def _authorize(request: Request, service: _Service) -> None:
    if service.token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), service.token
    ):
        raise ServiceError(
            401, "authorization: missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
        )


def _request_id(request: Request) -> str:
    given = request.headers.get("x-request-id")
    if given is None:
        return uuid.uuid4().hex
    if not _REQUEST_ID.fullmatch(given):
        raise ServiceError(400, "X-Request-ID: expected 1 to 200 visible ASCII characters")
    return given


async def _read_json(request: Request, limit: int) -> Any:
    """The body as strict JSON, after the content type and size checks (415, 413, 400)."""
    return parse_json(await _read_body(request, limit))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body's bytes, after the content type and size checks (415, 413)."""
    content_type = request.headers.get("content-type", "")
    media, _, parameters = content_type.partition(";")
    charset = parameters.strip().lower()
    if media.strip().lower() != "application/json" or charset not in (
        "",
        "charset=utf-8",
        'charset="utf-8"',
    ):
        raise ServiceError(
            415, f"Content-Type: expected application/json, got {_cut(content_type)!r}"
        )
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise ServiceError(400, "Content-Length: not a number")
        if int(length) > limit:
            raise ServiceError(413, f"body: {int(length):,} bytes exceed the limit of {limit:,}")
        body = await request.body()
    else:  # chunked: count as it arrives
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ServiceError(413, f"body: more than the limit of {limit:,} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    return body


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _json(value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(_dumps(value), status, headers=headers, media_type="application/json")


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "customer_id": decision.customer_id,
        "action": decision.action,
        "action_name": decision.action_name,
        "channel": decision.channel,
        "offer": decision.offer,
        "propensity": decision.propensity,
        "value_estimate": decision.value_estimate,
        "model_version": str(decision.model_version),
        "explored": decision.explored,
        "alternatives": decision.alternatives,
        "suppressed": decision.suppressed,
    }


def _frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``score_batch``'s rows as JSON-ready dicts (categoricals as text or null, finite floats)."""
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = column.astype(object).where(column.notna(), None).tolist()
        elif pd.api.types.is_float_dtype(column.dtype):
            numbers = column.to_numpy(dtype=np.float64)
            values = numbers.tolist()
            if not np.isfinite(numbers).all():
                values = [v if math.isfinite(v) else None for v in values]
        elif name == "model_version":
            values = [str(v) for v in column.tolist()]
        else:
            values = column.tolist()
        columns[str(name)] = values
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _batch_request(payload: Any, settings: ServeSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check ``/decide/batch``'s envelope; the rows are the scorer's to validate."""
    if not isinstance(payload, dict):
        raise ServiceError(400, f"body: expected a JSON object, got {_json_kind(payload)}")
    unknown = sorted(payload.keys() - _BATCH_FIELDS)
    if unknown:
        raise ServiceError(
            422, f"body: unknown field {_cut(unknown[0])!r}; expected {sorted(_BATCH_FIELDS)}"
        )
    customers = payload.get("customers")
    if not isinstance(customers, list):
        raise ServiceError(
            422,
            f"customers: expected a list of objects, got "
            f"{_json_kind(customers) if 'customers' in payload else 'nothing'}",
        )
    if not customers:
        raise ServiceError(422, "customers: no customers to score")
    if len(customers) > settings.max_batch_rows:
        raise ServiceError(
            413,
            f"customers: {len(customers):,} exceed the limit of {settings.max_batch_rows:,} "
            "per request",
        )
    first = customers[0]
    if not isinstance(first, dict):
        raise ServiceError(422, f"customers[0]: expected an object, got {_json_kind(first)}")
    fields = first.keys()
    for i, row in enumerate(customers):
        if not isinstance(row, dict):
            raise ServiceError(422, f"customers[{i}]: expected an object, got {_json_kind(row)}")
        if row.keys() != fields:
            missing = sorted(fields - row.keys())
            extra = sorted(row.keys() - fields)
            what = f"lacks {missing}" if missing else f"adds {extra}"
            raise ServiceError(
                422,
                _cut(
                    f"customers[{i}]: every customer needs the same fields; it {what} "
                    "compared with customers[0]",
                    300,
                ),
            )
    options: dict[str, Any] = {}
    capacity = payload.get("capacity")
    if capacity is not None:
        if not isinstance(capacity, dict):
            raise ServiceError(422, f"capacity: expected an object, got {_json_kind(capacity)}")
        whole = {name: _whole_number(limit) for name, limit in capacity.items()}
        for name, limit in capacity.items():
            if limit is not None and whole[name] is None:
                raise ServiceError(
                    422,
                    f"capacity.{_cut(name)}: expected a non-negative integer or null, got "
                    f"{_cut(repr(limit))}",
                )
        options["capacity"] = whole
    if "as_of" in payload:
        options["as_of"] = _timestamp(payload["as_of"], "as_of")
    if "top_k" in payload:
        top_k = _whole_number(payload["top_k"])
        if top_k is None or not 1 <= top_k <= 64:
            raise ServiceError(
                422, f"top_k: expected an integer in [1, 64], got {_cut(repr(payload['top_k']))}"
            )
        options["top_k"] = top_k
    frame = pd.DataFrame(customers, columns=list(fields))
    return frame, options


def _whole_number(value: Any) -> int | None:
    """A JSON integer as an int: 3 or 3.0 (JSON Schema's integers, as the request fields read
    them); None for anything else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _timestamp(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ServiceError(422, f"{name}: expected an ISO 8601 timestamp, got {_json_kind(value)}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ServiceError(422, f"{name}: cannot parse timestamp {_cut(value)!r}") from None
    return moment


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------- the app
def create_app(settings: ServeSettings, scorer: PolicyScorer | None = None) -> FastAPI:
    """The service for ``settings``; ``scorer`` when the caller loaded it already."""
    service = _Service(settings, scorer if scorer is not None else load_scorer_for(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.log:
            service.log = await asyncio.to_thread(
                GroupCommitLog, settings.log, shared=settings.workers > 1
            )
        watcher = None
        if settings.follows_registry and settings.reload_every > 0:
            watcher = asyncio.create_task(_follow_registry(service))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if service.log is not None:
                await asyncio.to_thread(service.log.close)

    app = FastAPI(
        title="nba decisions",
        summary="Next best action for one customer or a batch, from an exported policy.",
        version="1",
        openapi_url=None,  # served below, behind the token like every route but /healthz
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service

    async def decide(request: Request) -> Response:
        _authorize(request, service)
        request_id = _request_id(request)
        customer = await _read_json(request, settings.max_body_bytes)
        if not isinstance(customer, dict):
            raise ServiceError(400, f"body: expected a JSON object, got {_json_kind(customer)}")
        scorer = service.scorer  # read once: a reload cannot change it under this request
        headers = {"X-Request-ID": request_id}
        if service.log is None:
            return _json(_decision_json(scorer.score(customer)), headers=headers)
        traced = scorer.score_traced(customer)
        answer = _json(_decision_json(traced.decision), headers=headers)
        await service.log.commit(_single_batch(request_id, scorer, traced))
        return answer  # only once its row is committed

    batches = asyncio.Semaphore(2)

    async def decide_batch(request: Request) -> Response:
        _authorize(request, service)
        request_id = _request_id(request)
        body = await _read_body(request, settings.max_batch_bytes)
        scorer = service.scorer
        collector = _BatchCollector() if service.log is not None else None

        def work() -> bytes:  # in a thread: a 10,000-row batch must not stall the event loop
            frame, options = _batch_request(parse_json(body), settings)
            decisions = scorer.score_batch(frame, log=collector, **options)
            records = _frame_records(decisions)
            return _dumps({"model_version": str(scorer.model_version), "decisions": records})

        async with batches:  # two at a time: the rest queue instead of piling up memory
            answer = await asyncio.to_thread(work)
        if service.log is not None and collector is not None and collector.fields is not None:
            await service.log.commit(_logged_batch(request_id, collector.fields))
        return Response(answer, headers={"X-Request-ID": request_id}, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def version(request: Request) -> Response:
        _authorize(request, service)
        return _json(
            {"model": settings.model, **_version_of(service.scorer), "loaded_at": service.loaded_at}
        )

    async def openapi(request: Request) -> Response:
        _authorize(request, service)
        if service.openapi is None:
            service.openapi = _dumps(openapi_document(app, service.scorer, settings))
        return Response(service.openapi, media_type="application/json")

    # plain Starlette routes: FastAPI's per-request dependency solving and body handling would
    # cost more than the decision, and the document below is ours anyway
    app.add_route("/decide", decide, methods=["POST"], include_in_schema=False)
    app.add_route("/decide/batch", decide_batch, methods=["POST"], include_in_schema=False)
    app.add_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_route("/version", version, methods=["GET"], include_in_schema=False)
    app.add_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)
    _install_error_handlers(app)
    return app


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure answers one line of JSON; tracebacks stay in the server's log."""

    async def service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return _error(exc.status, exc.message, exc.headers)

    async def invalid(request: Request, exc: Exception) -> Response:
        return _error(422, _first_line(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        messages = {404: "not found", 405: "method not allowed"}
        text = messages.get(exc.status_code, str(exc.detail) if exc.detail else "refused")
        return _error(exc.status_code, _first_line(Exception(text)), exc.headers)

    async def crash(request: Request, exc: Exception) -> Response:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(NBAValidationError, invalid)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, crash)


# ---------------------------------------------------------------------------- OpenAPI
_OPERATIONS = (  # path, method, summary, request body, answer
    ("/decide", "post", "Decide for one customer (the single-customer path)", "Customer",
     "Decision"),
    ("/decide/batch", "post", "Decide for a batch of customers (capacity shared across it)",
     "Batch", "Decisions"),
    ("/healthz", "get", "Liveness; never needs the token", None, "Health"),
    ("/version", "get", "The model being served: registry name, version and run", None,
     "Version"),
)  # fmt: skip
_REFUSALS = {
    "400": "The body is not JSON (strict: no NaN, no duplicate keys, UTF-8), not an object, or "
    "X-Request-ID is malformed.",
    "409": "X-Request-ID was logged with other decisions (servers with a decision log).",
    "413": "The body, or the batch, is larger than the server's limit.",
    "415": "Content-Type is not application/json.",
    "422": "A field is missing, unknown or invalid; the message names it.",
    "503": "The decision could not be recorded in the decision log; nothing was decided.",
}


def openapi_document(app: FastAPI, scorer: PolicyScorer, settings: ServeSettings) -> dict[str, Any]:
    """The OpenAPI 3.1 document: request bodies and answers as JSON Schemas of our own.

    ``Customer`` is :meth:`PolicyScorer.input_schema` itself, so the published contract is the
    validator's; the rest describes the envelopes and answers.
    """
    customer = {k: v for k, v in scorer.input_schema().items() if k != "$schema"}
    paths: dict[str, Any] = {}
    for path, method, summary, body, answer in _OPERATIONS:
        responses: dict[str, Any] = {"200": _answer("OK", answer)}
        if body:
            statuses = ["400", "413", "415", "422"] + (["409", "503"] if settings.log else [])
            responses.update({s: _answer(_REFUSALS[s], "Error") for s in sorted(statuses)})
        operation: dict[str, Any] = {"summary": summary, "responses": responses}
        if body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(body)}},
            }
        if settings.token and path != "/healthz":
            operation["security"] = [{"bearer": []}]
            responses["401"] = _answer("Missing or wrong bearer token.", "Error")
        paths[path] = {method: operation}
    components: dict[str, Any] = {"schemas": _schemas(scorer, settings, customer)}
    if settings.token:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": app.title,
            "version": app.version,
            "summary": app.summary,
            "description": f"Decisions from the exported policy behind {settings.model!r}. "
            'Every refusal is one line: {"error": "..."}.',
        },
        "paths": paths,
        "components": components,
    }


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas(
    scorer: PolicyScorer, settings: ServeSettings, customer: dict[str, Any]
) -> dict[str, Any]:
    names = list(scorer.action_names)
    channels = list(scorer.channel_names)
    nullable_text = {"type": ["string", "null"]}
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    decision = {
        "type": "object",
        "required": ["customer_id", "action", "action_name", "propensity", "model_version"],
        "properties": {
            "customer_id": {"type": ["string", "integer"]},
            "action": {"type": "integer", "minimum": 0, "maximum": len(names) - 1},
            "action_name": {"type": "string", "enum": names},
            "channel": {"type": ["string", "null"], "enum": [*channels, None]},
            "offer": nullable_text,
            "propensity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "value_estimate": {"type": "number"},
            "model_version": {"type": "string"},
            "explored": {"type": "boolean"},
            "alternatives": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "action": {"type": "string", "enum": names},
                        "probability": probability,
                    },
                    "required": ["action", "probability"],
                },
            },
            "suppressed": {
                "type": ["object", "null"],
                "properties": {"action": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    }
    row = {
        "type": "object",
        "description": "One row of PolicyScorer.score_batch (rank_k_* for k = 1 .. top_k).",
        "required": ["customer_id", "action", "action_name", "propensity", "model_version"],
        "properties": {
            "customer_id": {"type": ["string", "integer"]},
            "action": {"type": "integer", "minimum": 0, "maximum": len(names) - 1},
            "action_name": {"type": "string", "enum": names},
            "channel": {"type": ["string", "null"]},
            "offer": nullable_text,
            "propensity": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "explored": {"type": "boolean"},
            "value_estimate": {"type": "number"},
            "suppressed_action": nullable_text,
            "suppressed_reason": nullable_text,
            "model_version": {"type": "string"},
        },
    }
    batch = {
        "type": "object",
        "required": ["customers"],
        "additionalProperties": False,
        "properties": {
            "customers": {
                "type": "array",
                "items": _ref("Customer"),
                "minItems": 1,
                "maxItems": settings.max_batch_rows,
                "description": "Every customer has the same fields; customer ids are unique.",
            },
            "capacity": {
                "type": "object",
                "description": "Contacts available per scarce channel in this request (shared "
                "across its customers only); a channel not named keeps the scenario's "
                "daily_capacity, null lifts it.",
                "propertyNames": {"enum": channels},
                "additionalProperties": {"type": ["integer", "null"], "minimum": 0},
            },
            "as_of": timestamp_schema("Decision time for customers without their own as_of."),
            "top_k": {"type": "integer", "minimum": 1, "maximum": 64},
        },
    }
    return {
        "Customer": customer,
        "Batch": batch,
        "Decision": decision,
        "Decisions": {
            "type": "object",
            "required": ["model_version", "decisions"],
            "properties": {
                "model_version": {"type": "string"},
                "decisions": {"type": "array", "items": row},
            },
        },
        "Health": {
            "type": "object",
            "properties": {"status": {"const": "ok"}},
            "required": ["status"],
        },
        "Version": {
            "type": "object",
            "required": ["model", "model_version"],
            "properties": {
                "model": {"type": "string"},
                "model_version": {"type": "string"},
                "name": nullable_text,
                "version": nullable_text,
                "run_id": nullable_text,
                "scenario": {"type": "string"},
                "loaded_at": {"type": "string", "format": "date-time"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
            "additionalProperties": False,
        },
    }


# ---------------------------------------------------------------------------- running
def app_from_environment() -> FastAPI:
    """uvicorn's factory in each worker process: settings from :data:`SETTINGS_ENV`."""
    return create_app(ServeSettings.from_json(os.environ[SETTINGS_ENV]))


def run(
    settings: ServeSettings,
    scorer: PolicyScorer,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
) -> None:
    """Serve until interrupted. One worker serves ``scorer`` in this process; several are
    uvicorn worker processes that each load the version this process resolved."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,
        "log_level": "warning",
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        "loop": "auto",  # uvloop and httptools when installed: twice the requests per core
        "http": "auto",
    }
    if workers == 1:
        uvicorn.Server(uvicorn.Config(create_app(settings, scorer), **common)).run()
        return
    os.environ[SETTINGS_ENV] = dataclasses.replace(settings, workers=workers).to_json()
    config = uvicorn.Config(
        "nba.serving.http:app_from_environment", factory=True, workers=workers, **common
    )
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    except KeyboardInterrupt:
        pass
