"""Route declarations: an app with a route that declares no scope is refused."""

from __future__ import annotations

import pytest
from fastapi import APIRouter

from ferry.http import v2
from ferry.http.app import create_app
from ferry.http.scopes import Undeclared, check_declared, declared_scope, requires
from ferry.manager import ModelManager
from ferry.security.keys import Scope
from ferry.settings import Settings


def test_a_route_without_a_declared_scope_is_refused() -> None:
    router = APIRouter()

    @router.get("/undeclared")
    async def undeclared() -> None: ...

    @router.get("/declared")
    @requires(Scope.READ)
    async def declared() -> None: ...

    with pytest.raises(Undeclared, match="/undeclared"):
        check_declared(router.routes)
    assert declared_scope(router.routes[1]) is Scope.READ


def test_create_app_refuses_an_undeclared_route() -> None:
    @v2.router.get("/v2/sneaky")
    async def sneaky() -> None: ...

    try:
        with pytest.raises(Undeclared, match="/v2/sneaky"):
            create_app(Settings(auth=False), ModelManager([]))
    finally:
        v2.router.routes.pop()


def test_auth_on_needs_an_authenticator() -> None:
    with pytest.raises(ValueError, match="no Authenticator"):
        create_app(Settings(), ModelManager([]))
