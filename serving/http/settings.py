"""What ``nba serve`` was asked for (travels to worker processes as JSON), and the one
exception every refusal is raised as: an HTTP status and one line for the client."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

__all__ = [
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_BATCH_ROWS",
    "DEFAULT_MAX_BODY_BYTES",
    "SETTINGS_ENV",
    "ServeSettings",
    "ServiceError",
]

SETTINGS_ENV = "NBA_SERVE_SETTINGS"  # JSON settings for worker processes (uvicorn --workers)
DEFAULT_MAX_BODY_BYTES = 1 << 20  # one customer is ~300 bytes; 1 MiB leaves room, bounds abuse
DEFAULT_MAX_BATCH_BYTES = 16 << 20
DEFAULT_MAX_BATCH_ROWS = 10_000


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
