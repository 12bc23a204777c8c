"""What the routes share (the current scorer and the log), loading and warming a scorer, and
following a registry alias: a new version is loaded in a thread, then swapped in whole."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nba.errors import NBAValidationError
from nba.serving.http.group_commit import GroupCommitLog
from nba.serving.http.settings import ServeSettings
from nba.serving.http.strict_json import _first_line
from nba.serving.scorer import PolicyScorer

__all__ = ["load_scorer_for", "warm"]

logger = logging.getLogger("nba.serve")


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
