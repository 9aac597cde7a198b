"""Running the app under uvicorn. uvicorn's own SIGTERM handling is what we want:
stop accepting, finish in-flight requests (up to the graceful timeout), run the
lifespan shutdown that drains the batchers; only its exit status is changed (to 0)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.settings import Settings

if TYPE_CHECKING:
    from ferry.registry_source import RegistrySource


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal after its graceful shutdown, so the process dies
        # "killed by SIGTERM". A requested stop that drained cleanly is a success: exit 0.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list) and sig in captured:
            captured.remove(sig)


def serve(paths: list[Path], settings: Settings) -> None:
    """``ferry serve``: the models at ``paths``, held in memory."""
    run(ModelManager(paths), settings)


def serve_registry(settings: Settings) -> None:
    """``ferry server``: every model in the registry, with the management API."""
    run(ModelManager([], open_registry(settings)), settings)


def open_registry(settings: Settings) -> RegistrySource:
    """Connect, migrate, and repair what a killed process left behind (sparing uploads
    younger than the grace period: another process may be validating them)."""
    from ferry.artifacts import LocalArtifactStore
    from ferry.registry import Registry, cleanup, connect, default_url, migrate
    from ferry.registry_source import RegistrySource

    data_dir = settings.data_dir
    url = settings.database_url or default_url(data_dir)
    engine = connect(url)
    migrate(engine)
    registry = Registry.from_engine(engine)
    store = LocalArtifactStore(data_dir / "artifacts")
    cleanup(registry, store, older_than_s=settings.cleanup_grace_s)
    logging.getLogger("ferry").info("registry %s, data in %s", engine.url.render_as_string(), data_dir.resolve())
    return RegistrySource(registry, store, data_dir, settings.poll_interval_s)


def run(models: ModelManager, settings: Settings) -> None:
    app = create_app(settings, models)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=max(1, round(settings.graceful_timeout_s)),
        server_header=False,
        # X-Forwarded-For is trusted only when asked for: from anyone else it is a lie
        # away, and the middleware costs time on every request.
        proxy_headers=settings.proxy_headers,
    )
    logging.getLogger("ferry").info("serving on http://%s:%d", settings.host, settings.port)
    _Server(config).run()
