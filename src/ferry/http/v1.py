"""KServe V1 model routes. ``:predict`` itself is served by ``ferry.http.infer``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ferry.http import docs
from ferry.http.scopes import requires, visible_to
from ferry.http.v2 import Name, Plane, json_response
from ferry.security.keys import Scope

router = APIRouter()


@router.get("/v1/models", tags=["v1"], summary="List models")
@requires(Scope.READ)
async def list_models(request: Request, plane: Plane) -> Response:
    return json_response({"models": [name for name in plane.model_names() if visible_to(request, name)]})


@router.get("/v1/models/{name}", tags=["v1"], summary="Model status", responses=docs.V1_MODEL)
@requires(Scope.READ)
async def model_status(name: Name, plane: Plane) -> Response:
    # Known but loading, failed or unloaded: not ready. Unknown: 404.
    return json_response({"name": name, "ready": plane.model_ready(name, None)})
