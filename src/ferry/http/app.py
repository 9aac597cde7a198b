"""The ASGI application: routes, error handlers, docs, and the model lifecycle tied
to the server's lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ferry import __version__
from ferry.dataplane import DataPlane
from ferry.http import docs as api_docs
from ferry.http import v1, v2
from ferry.http.errors import install_error_handlers
from ferry.http.infer import InferEndpoints
from ferry.manager import ModelManager
from ferry.settings import Settings

log = logging.getLogger("ferry.http")

DESCRIPTION = """
Ferry serves trained models over the **Open Inference Protocol (V2)**, so clients written
for Triton and KServe (`tritonclient`, the KServe SDK) work unchanged, plus a KServe V1
`:predict` endpoint for curl users.

* Every error is `{"error": "<message>"}`: 400 bad input, 404 unknown model or version,
  413 too large, 503 not ready or overloaded (with `Retry-After`).
* Inference accepts JSON tensors and the binary tensor extension
  (`Inference-Header-Content-Length`), in both directions.
"""


def _swagger_assets() -> Path:
    # fastapi-offline ships Swagger UI's files, so /docs works with no internet.
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def create_app(settings: Settings, models: ModelManager) -> InferEndpoints:
    """The inference endpoints in front of the FastAPI app that serves everything else."""
    api = _create_api(settings, models)
    if models.registry is not None:
        from ferry.http.management import UploadLimit

        return InferEndpoints(UploadLimit(api, settings.max_upload_bytes), api.state.dataplane, settings)
    return InferEndpoints(api, api.state.dataplane, settings)


def _serve_metrics(app: FastAPI, models: ModelManager) -> None:
    """``GET /metrics`` in Prometheus text format, for this app's own Metrics. Open to
    anyone for now: API keys (issue 5) decide who may read it."""
    from ferry.metrics import CONTENT_TYPE, Metrics

    metrics = models.metrics
    if metrics is None:
        metrics = Metrics()
        models.report_to(metrics)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)


def _create_api(settings: Settings, models: ModelManager) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load in the background: /v2/health/live answers at once, ready once loaded.
        loading = asyncio.create_task(models.load_all())
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await models.close(settings.graceful_timeout_s)

    app = FastAPI(
        title="Ferry",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    if settings.metrics:
        _serve_metrics(app, models)
    app.state.dataplane = DataPlane(models)
    install_error_handlers(app)
    app.include_router(v2.router)
    app.include_router(v1.router)
    if models.registry is not None:
        # Imported here: `ferry serve` never loads SQLAlchemy.
        from ferry.http import management

        app.state.registry = models.registry
        app.include_router(management.router)
    app.mount("/static/docs", StaticFiles(directory=_swagger_assets()), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}/openapi.json",
            title="Ferry API",
            swagger_js_url=f"{root}/static/docs/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/static/docs/swagger-ui.css",
            swagger_favicon_url=f"{root}/static/docs/favicon.png",
        )

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema["paths"].update(api_docs.INFER_PATHS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    async def home(request: Request) -> Response:
        # Behind a proxy that mounts Ferry under a prefix, "/docs" alone would leave it.
        return RedirectResponse(f"{request.scope.get('root_path', '')}/docs")

    return app
