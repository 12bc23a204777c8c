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

One module a job: ``settings`` (what was asked, :class:`ServiceError`), ``strict_json``,
``request`` (token, request id, body, batch envelope), ``response``, ``group_commit`` (the
decision log's writer), ``service`` (loading, warming, following the alias), ``openapi``,
``app`` (routes and error handlers) and ``runner`` (uvicorn). Every name is importable from here.
"""

from __future__ import annotations

import fcntl as fcntl  # the workers' file lock: tests reach it as nba.serving.http.fcntl

from nba.serving.http.app import create_app
from nba.serving.http.group_commit import GroupCommitLog
from nba.serving.http.openapi import openapi_document
from nba.serving.http.response import _decision_json as _decision_json
from nba.serving.http.response import _frame_records as _frame_records
from nba.serving.http.runner import app_from_environment, run
from nba.serving.http.service import load_scorer_for, warm
from nba.serving.http.settings import (
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_BODY_BYTES,
    SETTINGS_ENV,
    ServeSettings,
    ServiceError,
)
from nba.serving.http.strict_json import parse_json

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_ROWS",
    "DEFAULT_MAX_BODY_BYTES",
    "SETTINGS_ENV",
    "GroupCommitLog",
    "ServeSettings",
    "ServiceError",
    "app_from_environment",
    "create_app",
    "load_scorer_for",
    "openapi_document",
    "parse_json",
    "run",
    "warm",
]
