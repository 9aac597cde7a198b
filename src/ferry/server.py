"""Running the app under uvicorn. uvicorn's own SIGTERM handling is what we want:
stop accepting, finish in-flight requests (up to the graceful timeout), run the
lifespan shutdown that drains the batchers, exit 0."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.settings import Settings


def serve(paths: list[Path], settings: Settings) -> None:
    app = create_app(settings, ModelManager(paths))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s) or None,
        server_header=False,
    )
    logging.getLogger("ferry").info("serving on http://%s:%d", settings.host, settings.port)
    uvicorn.Server(config).run()
