"""The web app's pages: the catalog (``/``), a model (``/models/{name}``), the overview
dashboard, and the keys and audit pages for admins. Each is a small HTML shell (the
navigation for the signed-in key) whose script draws the page from the JSON API, as
that key: a page shows nothing its key could not read through the API itself.

Pages are open routes that check the session themselves, so a browser without one is
sent to /login (and back afterwards) instead of getting a JSON 401."""

from __future__ import annotations

from html import escape
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ferry.errors import FerryError
from ferry.http.docs_page import APP_CSP, page, root_path
from ferry.http.scopes import requires
from ferry.security.auth import Authenticator
from ferry.security.keys import ApiKey, Scope

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter(include_in_schema=False)

# (path, label, scope needed to see it in the navigation)
NAVIGATION = [
    ("", "Models", Scope.READ),
    ("dashboard", "Dashboard", Scope.READ),
    ("keys", "Keys", Scope.ADMIN),
    ("audit", "Audit", Scope.ADMIN),
]


@router.get("/")
@requires(None)
async def catalog_page(request: Request) -> Response:
    return _page(request, "catalog", "Models", "")


@router.get("/models/{name}")
@requires(None)
async def model_page(request: Request, name: str) -> Response:
    return _page(request, "model", name, "", model=name)


@router.get("/dashboard")
@requires(None)
async def dashboard_page(request: Request) -> Response:
    return _page(request, "dashboard", "Dashboard", "dashboard")


@router.get("/keys")
@requires(None)
async def keys_page(request: Request) -> Response:
    return _page(request, "keys", "API keys", "keys", needs=Scope.ADMIN)


@router.get("/audit")
@requires(None)
async def audit_page(request: Request) -> Response:
    return _page(request, "audit", "Audit trail", "audit", needs=Scope.ADMIN)


def install(app: FastAPI) -> None:
    # Compressed for browsers that ask (all do): the model page's files shrink about 4x.
    app.mount("/static/app", GZipMiddleware(StaticFiles(directory=STATIC), minimum_size=1024), name="app-assets")
    app.include_router(router)


def _page(request: Request, name: str, title: str, path: str, model: str = "", needs: Scope = Scope.READ) -> Response:
    root = root_path(request)
    auth: Authenticator | None = request.app.state.auth
    key: ApiKey | None = None
    if auth is not None:
        try:
            key = auth.authenticate(request.scope["headers"], "GET")
        except FerryError:  # no session, or its key expired or was revoked
            back = path if not model else f"models/{quote(model, safe='')}"
            return RedirectResponse(f"{root}/login?next={quote(back, safe='')}", status_code=303)
    refusal = None
    if key is not None and not key.has(needs):
        refusal = f"This page needs a key with the {needs.value!r} scope; the key you signed in with does not have it."
    elif key is not None and model and not key.may_use(model):
        refusal = "The key you signed in with may not use this model."
    if refusal is None:
        main, script = '<main id="main" tabindex="-1"></main>', name
    else:  # the header (and its Sign out, wired by common.js) with the reason, nothing else
        main = (
            f'<main id="main"><h1>{escape(title)}</h1><p class="notice error" role="alert">{escape(refusal)}</p></main>'
        )
        name, script = "denied", "common"
    response = page(
        f"{title} · Ferry",
        _shell(request, key, name, title, model) + main,
        styles=[f"{root}/static/app/app.css"],
        modules=[f"{root}/static/app/{script}.js"],
        icon=f"{root}/favicon.ico",
        headers={"Cache-Control": "no-store"},
        policy=APP_CSP,
    )
    if refusal is not None:
        response.status_code = 403
    return response


def _shell(request: Request, key: ApiKey | None, name: str, title: str, model: str) -> str:
    """The skip link, the header with the navigation this key may use, and the data the
    page's script reads (never the key itself)."""
    root = root_path(request)
    links = []
    for path, label, scope in NAVIGATION:
        if key is not None and not key.has(scope):
            continue
        current = ' aria-current="page"' if path == request.url.path.strip("/") else ""
        links.append(f'<li><a href="{root}/{path}"{current}>{label}</a></li>')
    links.append(f'<li><a href="{root}/docs">API docs</a></li>')
    who = (
        f'<span class="who">{escape(key.name)}</span><button type="button" id="sign-out" class="link">Sign out</button>'
        if key is not None
        else '<span class="who">no API keys (--no-auth)</span>'
    )
    scopes = "read infer deploy admin" if key is None else " ".join(sorted(s.value for s in Scope if key.has(s)))
    return (
        '<a class="skip" href="#main">Skip to content</a>'
        f'<header class="top" data-root="{root}" data-page="{name}" data-model="{escape(model, quote=True)}"'
        f' data-scopes="{scopes}" data-auth="{"on" if key is not None else "off"}">'
        f'<a class="brand" href="{root}/">Ferry</a>'
        f'<nav aria-label="Main"><ul>{"".join(links)}</ul></nav>'
        f'<div class="session">{who}</div>'
        "</header>"
    )
