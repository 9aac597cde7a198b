"""Which scope each route needs, declared beside the route:

    @router.get("/v2/models/{name}")
    @requires(Scope.READ)
    async def model_metadata(...): ...

``create_app`` refuses to build an app with a route that declares nothing, so a new
route cannot slip in unprotected. ``requires(None)`` marks a route open to anyone
(health probes, the API docs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route

from ferry.security.keys import Scope

F = TypeVar("F", bound=Callable[..., Any])

_DECLARED: dict[Callable[..., Any], Scope | None] = {}


class Undeclared(Exception):
    """A route without a declared scope: a programming error, caught at start-up."""


def requires(scope: Scope | None) -> Callable[[F], F]:
    def declare(endpoint: F) -> F:
        _DECLARED[endpoint] = scope
        return endpoint

    return declare


def declared_scope(route: BaseRoute) -> Scope | None:
    """The scope ``route`` needs; None: open to anyone. Raises Undeclared."""
    endpoint = route.app if isinstance(route, Mount) else getattr(route, "endpoint", None)
    if endpoint in _DECLARED:
        return _DECLARED[endpoint]
    if isinstance(route, Mount | Route) and route.path in _OPEN_PATHS:
        return None
    raise Undeclared(f"route {getattr(route, 'path', route)!r} declares no scope; decorate it with @requires(...)")


# Routes FastAPI and Starlette make themselves, with nowhere to put a decorator.
_OPEN_PATHS = {"/openapi.json", "/static/docs", "/static/ferry", "/static/app"}


def check_declared(routes: list[BaseRoute]) -> None:
    """Raise Undeclared naming every route that declares no scope."""
    missing = []
    for route in routes:
        try:
            declared_scope(route)
        except Undeclared:
            missing.append(getattr(route, "path", repr(route)))
    if missing:
        raise Undeclared(f"routes without a declared scope: {', '.join(missing)}")


def visible_to(request: Request, name: str) -> bool:
    """Whether the request's key may see model ``name``: lists show a key limited to some
    models only those (no key: the server runs without keys, everything is visible)."""
    key = request.scope.get("state", {}).get("key")
    return key is None or key.may_use(name)
