"""The browser session: ``/login`` trades an API key for an HttpOnly cookie holding it,
so pages (the API docs, the web app) call the API without a script ever
holding the key. See docs/security.md, "Browser sessions"."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ferry.errors import Forbidden, InvalidInput, Unauthorized
from ferry.http.docs import ERROR
from ferry.http.docs_page import APP_CSP, page, root_path
from ferry.http.scopes import requires
from ferry.security.audit import utcnow
from ferry.security.auth import CSRF_HEADER, SESSION_COOKIE, Authenticator, credentials
from ferry.security.keys import ApiKey, Scope

router = APIRouter()

SESSION_HOURS = 12


class SessionOut(BaseModel):
    id: str
    name: str
    scopes: list[str]
    models: list[str] | None


@router.get("/login", include_in_schema=False)
@requires(None)
async def login_page(request: Request) -> HTMLResponse:
    body = """<main class="signin">
<div class="card">
<h1>Sign in to Ferry</h1>
<p class="lead">With an API key: the one printed when the server first started, or one an admin made for you.</p>
<form id="login">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="off" required placeholder="fy_...">
<button type="submit">Sign in</button>
</form>
<p id="status" role="status"></p>
</div>
</main>"""
    root = root_path(request)
    return page(
        "Sign in to Ferry",
        body,
        styles=[f"{root}/static/app/app.css"],
        scripts=[f"{root}/static/ferry/login.js"],
        icon=f"{root}/favicon.ico",
        headers={"Cache-Control": "no-store"},
        policy=APP_CSP,
    )


@router.post(
    "/api/v1/session",
    tags=["security"],
    summary="Sign in: set the session cookie",
    description="Send a key (`Authorization: Bearer` or `X-API-Key`); the answer sets an HttpOnly, "
    "SameSite=Strict cookie holding it for 12 hours (or until the key expires). Requests with the "
    "cookie are authenticated as that key; those that change something must also send `X-Ferry-CSRF`.",
)
@requires(None)  # open: it authenticates the key it is given itself
async def create_session(request: Request, response: Response) -> SessionOut:
    auth = _auth(request)
    presented = credentials(request.scope["headers"])
    if presented.key is None or presented.from_cookie:
        raise Unauthorized("send the key to sign in with as Authorization: Bearer <key> or X-API-Key: <key>")
    key = auth.authenticate(request.scope["headers"], "GET")
    max_age = timedelta(hours=SESSION_HOURS)
    if key.expires_at is not None:
        max_age = min(max_age, key.expires_at - utcnow())
    response.set_cookie(
        SESSION_COOKIE,
        presented.key,
        max_age=max(1, int(max_age.total_seconds())),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    response.headers["Cache-Control"] = "no-store"
    return _session_out(key)


@router.get(
    "/api/v1/session",
    tags=["security"],
    summary="Who is signed in",
    description="The key this request is authenticated with (cookie or header): its id, name, scopes "
    "and models. 401 without a valid key. On a server without keys: every scope, no id.",
)
@requires(None)  # any valid key may ask who it is, whatever its scopes
async def read_session(request: Request) -> SessionOut:
    auth: Authenticator | None = request.app.state.auth
    if auth is None:
        return SessionOut(id="", name="", scopes=sorted(s.value for s in Scope), models=None)
    return _session_out(auth.authenticate(request.scope["headers"], "GET"))


def _session_out(key: ApiKey) -> SessionOut:
    return SessionOut(
        id=key.key_id,
        name=key.name,
        scopes=sorted(s.value for s in key.scopes),
        models=sorted(key.models) if key.models is not None else None,
    )


@router.delete(
    "/api/v1/session",
    status_code=204,
    tags=["security"],
    summary="Sign out: clear the session cookie",
    description="Needs the `X-Ferry-CSRF` header, as every change made with the cookie does.",
    responses={403: {**ERROR, "description": "No X-Ferry-CSRF header"}},
)
@requires(None)
async def delete_session(request: Request) -> Response:
    # Signing someone out is a change too: a cross-site page cannot add this header.
    if CSRF_HEADER not in request.headers:
        raise Forbidden(f"signing out needs the {CSRF_HEADER} header")
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=request.url.scheme == "https", httponly=True)
    return response


def _auth(request: Request) -> Authenticator:
    auth: Authenticator | None = request.app.state.auth
    if auth is None:
        raise InvalidInput("this server runs without API keys: there is nothing to sign in to")
    return auth
