"""KServe V1 routes for curl users: ``GET /v1/models/{name}`` and ``:predict``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ferry.codecs.v1 import V1Codec
from ferry.errors import NotFound, Unavailable
from ferry.http import docs
from ferry.http.body import read_body, unless_disconnected
from ferry.http.v2 import Config, Name, Plane, json_response

router = APIRouter()


@router.get("/v1/models", tags=["v1"], summary="List models")
async def list_models(plane: Plane) -> Response:
    return json_response({"models": plane.models.names()})


@router.get("/v1/models/{name}", tags=["v1"], summary="Model status", responses=docs.V1_MODEL)
async def model_status(name: Name, plane: Plane) -> Response:
    try:
        plane.models.get(name)
    except (Unavailable, NotFound):
        # Known but loading, failed or unloaded: not ready. Unknown: 404.
        if name not in plane.models.names():
            raise
        return json_response({"name": name, "ready": False})
    return json_response({"name": name, "ready": True})


@router.post(
    "/v1/models/{name}:predict",
    tags=["v1"],
    summary="Predict (instances in, predictions out)",
    openapi_extra=docs.V1_REQUEST,
    responses=docs.V1_RESPONSES,
)
async def predict(name: Name, request: Request, plane: Plane, config: Config) -> Response:
    body = await read_body(request, config.max_body_bytes)
    codec = V1Codec(config.max_tensor_elements)
    encoded = await unless_disconnected(request.receive, plane.infer(name, None, body, codec))
    return Response(encoded, media_type="application/json")
