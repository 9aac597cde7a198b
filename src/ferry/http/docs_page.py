"""``/docs``: Swagger UI from files this package serves itself (no CDN), started by a
script file rather than an inline script, under a strict Content-Security-Policy."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse

from ferry.http.scopes import requires

STATIC = Path(__file__).resolve().parent / "static"
# Swagger UI sets inline styles, so styles may be inline; scripts come from this server only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# The web app's pages set no inline styles either (scripts set element.style, which CSP allows).
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _swagger_assets() -> Path:
    # fastapi-offline ships Swagger UI's files, so /docs works with no internet.
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    # Swagger UI's bundle is 1.4 MB, about 400 KB compressed.
    app.mount("/static/docs", GZipMiddleware(StaticFiles(directory=_swagger_assets())), name="docs-assets")
    app.mount("/static/ferry", StaticFiles(directory=STATIC), name="ferry-assets")

    @app.get("/favicon.ico", include_in_schema=False)
    @requires(None)
    async def favicon() -> FileResponse:
        # Browsers ask for it on every page; Swagger UI ships one.
        return FileResponse(_swagger_assets() / "favicon.png", media_type="image/png")

    @app.get("/docs", include_in_schema=False)
    @requires(None)
    async def docs(request: Request) -> HTMLResponse:
        root = root_path(request)
        return page(
            "Ferry API",
            f'<div id="swagger-ui" data-openapi-url="{root}/openapi.json"></div>',
            styles=[f"{root}/static/docs/swagger-ui.css"],
            scripts=[f"{root}/static/docs/swagger-ui-bundle.js", f"{root}/static/ferry/docs-init.js"],
            icon=f"{root}/static/docs/favicon.png",
        )


def root_path(request: Request) -> str:
    """Where Ferry is mounted behind a proxy ("" at the root), safe inside an attribute."""
    return escape(request.scope.get("root_path", ""), quote=True)


def page(
    title: str,
    body: str,
    styles: list[str] | None = None,
    scripts: list[str] | None = None,
    icon: str | None = None,
    headers: dict[str, str] | None = None,
    modules: list[str] | None = None,
    policy: str | None = None,
) -> HTMLResponse:
    """An HTML page under the strict CSP: its scripts are files, never inline (``modules``:
    JavaScript modules, which also run after the page is parsed). ``policy``: its CSP;
    by default the docs' (Swagger UI needs inline styles)."""
    head = [f'<link rel="stylesheet" href="{href}">' for href in styles or []]
    if icon is not None:
        head.append(f'<link rel="icon" type="image/png" href="{icon}">')
    tail = [f'<script src="{src}"></script>' for src in scripts or []]
    tail += [f'<script type="module" src="{src}"></script>' for src in modules or []]
    html = "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)}</title>",
            *head,
            "</head>",
            "<body>",
            body,
            *tail,
            "</body>",
            "</html>",
            "",
        ]
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": policy or CSP, **(headers or {})})
