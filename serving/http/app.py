"""The FastAPI app: its lifespan (the log's writer, the registry watcher), the routes and the
error handlers that turn every failure into one line of JSON."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from nba.errors import NBAValidationError
from nba.serving.http.group_commit import (
    GroupCommitLog,
    _BatchCollector,
    _logged_batch,
    _single_batch,
)
from nba.serving.http.openapi import openapi_document
from nba.serving.http.request import (
    _authorize,
    _batch_request,
    _json_kind,
    _read_body,
    _read_json,
    _request_id,
)
from nba.serving.http.response import _decision_json, _dumps, _error, _frame_records, _json
from nba.serving.http.service import _follow_registry, _Service, _version_of, load_scorer_for
from nba.serving.http.settings import ServeSettings, ServiceError
from nba.serving.http.strict_json import _first_line, parse_json
from nba.serving.scorer import PolicyScorer

__all__ = ["create_app"]

logger = logging.getLogger("nba.serve")


def create_app(settings: ServeSettings, scorer: PolicyScorer | None = None) -> FastAPI:
    """The service for ``settings``; ``scorer`` when the caller loaded it already."""
    service = _Service(settings, scorer if scorer is not None else load_scorer_for(settings))
    app = FastAPI(
        title="nba decisions",
        summary="Next best action for one customer or a batch, from an exported policy.",
        version="1",
        openapi_url=None,  # served below, behind the token like every route but /healthz
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan(service),
    )
    app.state.service = service
    _add_routes(app, service)
    _install_error_handlers(app)
    return app


def _lifespan(service: _Service) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the log's writer and the registry watcher with the app; stop them after it."""
    settings = service.settings

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

    return lifespan


def _add_routes(app: FastAPI, service: _Service) -> None:
    """The five routes, as plain Starlette routes: FastAPI's per-request dependency solving and
    body handling would cost more than the decision, and the document is ours anyway."""
    settings = service.settings

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

    app.add_route("/decide", decide, methods=["POST"], include_in_schema=False)
    app.add_route("/decide/batch", decide_batch, methods=["POST"], include_in_schema=False)
    app.add_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_route("/version", version, methods=["GET"], include_in_schema=False)
    app.add_route("/openapi.json", openapi, methods=["GET"], include_in_schema=False)


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
