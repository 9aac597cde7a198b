"""Gate: the ASGI middleware that authenticates and authorises every request to the
FastAPI app before any of its body is read (a form parser would otherwise spool an
unauthenticated 4 GiB upload to disk first), and records control-plane actions in the
audit trail. The inference endpoints check their key themselves (``InferEndpoints``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ferry.errors import FerryError
from ferry.http.errors import error_headers, error_response
from ferry.http.scopes import declared_scope
from ferry.logs import one_line
from ferry.security.audit import AuditEvent, utcnow
from ferry.security.auth import Authenticator
from ferry.security.keys import ApiKey
from ferry.security.keys import Scope as KeyScope

if TYPE_CHECKING:
    from ferry.security.audit_writer import AuditWriter

_READS = {"GET", "HEAD", "OPTIONS"}
_CONTROL = {KeyScope.DEPLOY, KeyScope.ADMIN}


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        routes: list[BaseRoute],
        auth: Authenticator | None,
        audit: AuditWriter | None,
    ) -> None:
        self.app = app
        self._routes = routes
        self._auth = auth
        self._audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route, params = self._match(scope)
        needed = declared_scope(route) if route is not None else None
        if needed is None:  # open route, or no route: FastAPI answers 404/405
            await self.app(scope, receive, send)
            return
        key: ApiKey | None = None
        status = 500
        try:
            if self._auth is not None:
                key = self._auth.authenticate(scope["headers"], scope["method"])
                scope.setdefault("state", {})["key"] = key
                await self._auth.authorize(key, needed, params.get("name"))
        except FerryError as exc:
            status = exc.status
            await error_response(exc.status, exc.message, error_headers(exc) or None)(scope, receive, send)
            self._record(scope, route, params, needed, key, status)
            return

        async def watching(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            self._record(scope, route, params, needed, key, status)

    def _match(self, scope: Scope) -> tuple[BaseRoute | None, dict[str, Any]]:
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route, child.get("path_params", {})
        return None, {}

    def _record(
        self,
        scope: Scope,
        route: BaseRoute | None,
        params: dict[str, Any],
        needed: KeyScope,
        key: ApiKey | None,
        status: int,
    ) -> None:
        """Control-plane changes, and refused attempts at any deploy or admin route."""
        denied = status in (401, 403, 429)
        if needed not in _CONTROL or (scope["method"] in _READS and not denied):
            return
        if key is None and self._auth is not None:
            # No valid key: anyone can send these, as fast as they like, so they are
            # counted (ferry_auth_denied_requests_total) rather than each written down.
            return
        if self._audit is None:
            return
        state = scope.get("state", {})
        client = scope.get("client")
        # The path names the model, or (creating a model) the route put it in the state.
        model = params.get("name") or state.get("audit_model")
        event = AuditEvent(
            at=utcnow(),
            key_id=key.key_id if key else None,
            key_name=key.name if key else "",
            action=getattr(route, "name", "") or scope["path"],
            target=one_line(state.get("audit_target") or _target(params)),
            method=scope["method"],
            path=one_line(scope["path"]),
            status=status,
            result="ok" if status < 400 else "denied" if denied else "failed",
            client=client[0] if client else "",
            model=one_line(str(model)) if model else None,
        )
        self._audit.submit(event)  # written by the AuditWriter's thread, never here


def _target(params: dict[str, Any]) -> str:
    """``digits``, ``digits/4``, ``digits/production`` or a key id."""
    parts = [str(params[p]) for p in ("name", "number", "stage", "key_id") if p in params]
    return "/".join(parts)
