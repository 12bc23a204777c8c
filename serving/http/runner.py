"""Running the service under uvicorn: one worker in this process, or several worker processes
that each build the app from :data:`SETTINGS_ENV`."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from fastapi import FastAPI

from nba.serving.http.app import create_app
from nba.serving.http.settings import SETTINGS_ENV, ServeSettings
from nba.serving.scorer import PolicyScorer

__all__ = ["app_from_environment", "run"]


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
