"""The ASGI application: routes, error handlers, docs, and the model lifecycle tied
to the server's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ferry import __version__
from ferry.dataplane import DataPlane
from ferry.decoder import Decoder
from ferry.errors import Forbidden
from ferry.http import docs as api_docs
from ferry.http import docs_page, keys, session, v1, v2
from ferry.http.access import RequestContext
from ferry.http.errors import install_error_handlers
from ferry.http.gate import Gate
from ferry.http.headers import SecurityHeaders
from ferry.http.infer import InferEndpoints
from ferry.http.scopes import check_declared, requires
from ferry.manager import ModelManager
from ferry.security.audit_writer import AuditWriter
from ferry.security.auth import Authenticator
from ferry.security.keys import Scope as KeyScope
from ferry.settings import Settings
from ferry.web import api as web_api
from ferry.web import pages
from ferry.web.live import LiveStats

if TYPE_CHECKING:
    from ferry.registry.keys import KeyStore
    from ferry.tracing import InferTracing

log = logging.getLogger("ferry.http")

DESCRIPTION = """
Ferry serves trained models over the **Open Inference Protocol (V2)**, so clients written
for Triton and KServe (`tritonclient`, the KServe SDK) work unchanged, plus a KServe V1
`:predict` endpoint for curl users.

* Every error is `{"error": "<message>"}`: 400 bad input, 404 unknown model or version,
  413 too large, 503 not ready or overloaded (with `Retry-After`).
* Inference accepts JSON tensors and the binary tensor extension
  (`Inference-Header-Content-Length`), in both directions, and multipart form uploads
  (one field per BYTES input).
* A model's metadata is what clients send and get: an image model (config.yaml
  `preprocess`) takes BYTES of encoded images; `postprocess` adds `classes` and `scores`.
  Requesting an output with `"parameters": {"classification": k}` answers Triton's
  `"score:index:label"` strings.
"""


def create_app(
    settings: Settings,
    models: ModelManager,
    auth: Authenticator | None = None,
    audit: KeyStore | None = None,
    tracing: InferTracing | None = None,
) -> FerryApp:
    """The inference endpoints in front of the FastAPI app that serves everything else,
    behind the security headers (and CORS, when origins are allowed). ``auth`` None: no
    API keys (``--no-auth``). ``audit``: where control-plane actions are recorded; by
    default the key store, once ``auth`` has opened it."""
    if settings.auth and auth is None:
        raise ValueError("authentication is on, but no Authenticator was given")
    if tracing is None and settings.otlp_endpoint:
        from ferry.tracing import InferTracing

        tracing = InferTracing.otlp(settings.otlp_endpoint, settings.trace_sample_ratio)
    api = _create_api(settings, models, auth, tracing)

    def audit_store() -> KeyStore | None:
        return audit if audit is not None else auth.store if auth is not None else None

    api.state.audit_store = audit_store
    # Started and closed (every row written) by the lifespan. None: no trail to keep.
    api.state.audit_writer = audit_writer = (
        AuditWriter(
            audit_store,
            window_s=settings.audit_window_s,
            queue_size=settings.audit_queue_size,
            retention_days=settings.audit_retention_days,
            max_rows=settings.audit_max_rows,
        )
        if audit is not None or auth is not None
        else None
    )
    routes: list[BaseRoute] = api.state.routes
    check_declared(routes)
    app: ASGIApp = Gate(api, routes, auth, audit_writer)
    if models.registry is not None:
        from ferry.http.uploads import UploadLimit

        app = UploadLimit(app, settings.max_upload_bytes)
    app = InferEndpoints(app, api.state.dataplane, settings, auth, tracing)
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Inference-Header-Content-Length"],
            expose_headers=["Inference-Header-Content-Length", "Retry-After", "X-Request-ID"],
            max_age=600,
        )
    return FerryApp(RequestContext(SecurityHeaders(app), settings.access_log), api)


class FerryApp:
    """The ASGI application uvicorn runs; ``api`` is the FastAPI app inside it (its state
    and lifespan)."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _serve_metrics(app: FastAPI, models: ModelManager, settings: Settings) -> None:
    """``GET /metrics`` in Prometheus text format, for this app's own Metrics. Needs the
    ``read`` scope unless FERRY_METRICS_PUBLIC is set (docs/metrics.md)."""
    from ferry.metrics import CONTENT_TYPE, Metrics

    metrics = models.metrics
    if metrics is None:
        metrics = Metrics()
        models.report_to(metrics)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    @requires(None if settings.metrics_public else KeyScope.READ)
    async def prometheus(request: Request) -> Response:
        key = request.scope.get("state", {}).get("key")
        if key is not None and key.models is not None:  # every model's series is in there
            raise Forbidden("a key limited to some models cannot read the metrics of all of them")
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)


def _create_api(
    settings: Settings, models: ModelManager, auth: Authenticator | None, tracing: InferTracing | None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.redis_url and models.shared_cache is None:
            import redis.asyncio

            # Before loading: versions with a shared cache take the client as they load.
            models.shared_cache = redis.asyncio.from_url(settings.redis_url)
        # Load in the background: /v2/health/live answers at once, ready once loaded.
        loading = asyncio.create_task(models.load_all())
        background = [loading, asyncio.create_task(app.state.live.run())]
        try:
            if auth is not None:
                # Keys are read before the first request is served; the models load meanwhile.
                await asyncio.to_thread(auth.start)
                background.append(asyncio.create_task(auth.refresh_forever()))
            writer: AuditWriter | None = app.state.audit_writer
            if writer is not None:
                writer.start()
            yield
        finally:
            for task in background:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            # Other transports (gRPC) finish their calls while the models still serve.
            for stop in app.state.before_drain:
                await stop()
            if app.state.audit_writer is not None:
                # Every request is answered: write what they left, open windows included.
                await asyncio.to_thread(app.state.audit_writer.close)
            await models.close(settings.graceful_timeout_s)
            app.state.dataplane.close()
            if models.shared_cache is not None:
                await models.shared_cache.aclose()
                models.shared_cache = None
            if auth is not None and auth.shared_limits is not None:
                await auth.shared_limits.close()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)  # send the spans still buffered

    app = FastAPI(
        title="Ferry",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.auth = auth
    app.state.before_drain = []
    app.state.tracing = tracing
    if settings.metrics:
        _serve_metrics(app, models, settings)
        if auth is not None:
            auth.observe(app.state.metrics.denied)
    app.state.dataplane = DataPlane(
        models, models.metrics, settings.ready_despite_failures, Decoder(settings.json_offload_bytes)
    )
    # The control plane (/api/v1, the web app) manages what is loaded: its own dependency.
    app.state.manager = models
    app.state.live = LiveStats(models)
    install_error_handlers(app)
    # An inference node (ferry server --role inference) answers the data plane only:
    # inference, metadata, health and metrics; the rest is a control node's.
    inference_only = settings.role == "inference" and models.registry is not None
    routers = [v2.router, v1.router]
    if not inference_only:
        routers += [keys.router, session.router, web_api.router]
    if models.registry is not None and not inference_only:
        # Imported here: `ferry serve` never loads SQLAlchemy.
        from ferry.http import management

        app.state.registry = models.registry
        routers.append(management.router)
    for router in routers:
        app.include_router(router)
    if not inference_only:
        docs_page.install(app)
        pages.install(app)
        routers.append(pages.router)

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema["paths"].update(api_docs.INFER_PATHS)
            api_docs.validation_errors_are_400(schema)
            if auth is not None:
                api_docs.add_security(schema, app.state.routes)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    app.state.routes = _every_route(app, routers)
    return app


def _every_route(app: FastAPI, routers: list[APIRouter]) -> list[BaseRoute]:
    """Each route once, in matching order: the routers' own (recent FastAPI releases keep
    included routers as one lazy entry of ``app.routes``) and the app's."""
    routes: list[BaseRoute] = [route for router in routers for route in router.routes]
    known = {(getattr(r, "path", None), getattr(r, "endpoint", None)) for r in routes}
    for route in app.router.routes:
        if isinstance(route, Route | Mount) and (route.path, getattr(route, "endpoint", None)) not in known:
            routes.append(route)
    return routes
