"""Open Inference Protocol V2 REST routes, with Triton's repository, statistics and
configuration extensions."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path
from starlette.requests import Request
from starlette.responses import Response

from ferry.codecs.v2 import load_json
from ferry.dataplane import DataPlane
from ferry.errors import InvalidInput
from ferry.http import docs
from ferry.http.body import read_request_body
from ferry.http.errors import error_response
from ferry.http.scopes import requires, visible_to
from ferry.security.keys import Scope
from ferry.settings import Settings

router = APIRouter()

Name = Annotated[str, Path(description="Model name", examples=["digits"])]
Version = Annotated[str, Path(description="Model version, a positive integer", examples=["1"])]


# async: FastAPI runs plain-def dependencies in a thread pool, a costly hop per request.
async def dataplane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.dataplane
    return plane


async def settings(request: Request) -> Settings:
    value: Settings = request.app.state.settings
    return value


Plane = Annotated[DataPlane, Depends(dataplane)]
Config = Annotated[Settings, Depends(settings)]


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json", headers=headers)


# -- health and metadata --------------------------------------------------------------


@router.get("/v2/health/live", tags=["health"], summary="Server live", responses=docs.LIVE)
@requires(None)
async def live(plane: Plane) -> Response:
    return json_response({"live": plane.live()})


@router.get("/v2/health/ready", tags=["health"], summary="Server ready", responses=docs.READY)
@requires(None)
async def ready(plane: Plane) -> Response:
    reason = plane.unready_reason()
    if reason is None:
        return json_response({"ready": True})
    return error_response(503, reason, {"Retry-After": "1"})


@router.get("/v2", tags=["metadata"], summary="Server metadata", responses=docs.SERVER_METADATA)
@requires(Scope.READ)
async def server_metadata(plane: Plane) -> Response:
    return json_response(plane.server_metadata())


# Declared before /v2/models/{name} so "stats" is not taken for a model name.
@router.get("/v2/models/stats", tags=["statistics"], summary="Statistics of every model", responses=docs.STATS)
@requires(Scope.READ)
async def all_stats(request: Request, plane: Plane) -> Response:
    stats = plane.statistics(None, None)
    stats["model_stats"] = [entry for entry in stats["model_stats"] if visible_to(request, entry["name"])]
    return json_response(stats)


@router.get("/v2/models/{name}", tags=["metadata"], summary="Model metadata", responses=docs.MODEL_METADATA)
@requires(Scope.READ)
async def model_metadata(name: Name, plane: Plane) -> Response:
    return json_response(plane.model_metadata(name, None))


@router.get(
    "/v2/models/{name}/versions/{version}",
    tags=["metadata"],
    summary="Model version metadata",
    responses=docs.MODEL_METADATA,
)
@requires(Scope.READ)
async def version_metadata(name: Name, version: Version, plane: Plane) -> Response:
    return json_response(plane.model_metadata(name, version))


@router.get("/v2/models/{name}/ready", tags=["health"], summary="Model ready", responses=docs.MODEL_READY)
@requires(Scope.READ)
async def model_ready(name: Name, plane: Plane) -> Response:
    plane.require_ready(name, None)
    return json_response({"name": name, "ready": True})


@router.get(
    "/v2/models/{name}/versions/{version}/ready",
    tags=["health"],
    summary="Model version ready",
    responses=docs.MODEL_READY,
)
@requires(Scope.READ)
async def version_ready(name: Name, version: Version, plane: Plane) -> Response:
    plane.require_ready(name, version)
    return json_response({"name": name, "ready": True})


@router.get(
    "/v2/models/{name}/config", tags=["metadata"], summary="Model configuration (Triton)", responses=docs.CONFIG
)
@requires(Scope.READ)
async def model_config(name: Name, plane: Plane) -> Response:
    return json_response(plane.model_config(name, None))


@router.get(
    "/v2/models/{name}/versions/{version}/config",
    tags=["metadata"],
    summary="Model version configuration (Triton)",
    responses=docs.CONFIG,
)
@requires(Scope.READ)
async def version_config(name: Name, version: Version, plane: Plane) -> Response:
    return json_response(plane.model_config(name, version))


# -- statistics -------------------------------------------------------------------------


@router.get("/v2/models/{name}/stats", tags=["statistics"], summary="Model statistics", responses=docs.STATS)
@requires(Scope.READ)
async def model_stats(name: Name, plane: Plane) -> Response:
    return json_response(plane.statistics(name, None))


@router.get(
    "/v2/models/{name}/versions/{version}/stats",
    tags=["statistics"],
    summary="Model version statistics",
    responses=docs.STATS,
)
@requires(Scope.READ)
async def version_stats(name: Name, version: Version, plane: Plane) -> Response:
    return json_response(plane.statistics(name, version))


# -- repository extension ---------------------------------------------------------------


async def _optional_json(request: Request, config: Settings) -> dict[str, Any]:
    # tritonclient may send an empty body with no Content-Length.
    body = await read_request_body(request, config.max_body_bytes)
    if not body.strip():
        return {}
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object")
    return doc


@router.post(
    "/v2/repository/index",
    tags=["repository"],
    summary="Repository index",
    openapi_extra=docs.INDEX_REQUEST,
    responses=docs.INDEX,
)
@requires(Scope.READ)
async def repository_index(request: Request, plane: Plane, config: Config) -> Response:
    doc = await _optional_json(request, config)
    entries = plane.repository_index(ready_only=bool(doc.get("ready")))
    return json_response([e for e in entries if visible_to(request, e["name"])])


@router.post(
    "/v2/repository/models/{name}/load",
    response_class=Response,
    tags=["repository"],
    summary="Load or reload a model",
    openapi_extra=docs.LOAD_REQUEST,
    responses=docs.EMPTY_OK,
)
@requires(Scope.DEPLOY)
async def repository_load(name: Name, request: Request, plane: Plane, config: Config) -> Response:
    doc = await _optional_json(request, config)
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    overrides = sorted(k for k in parameters if k == "config" or k.startswith("file:"))
    if overrides:
        raise InvalidInput(
            f"loading with {', '.join(overrides)} is not supported: put the files and "
            "config.yaml in the model repository and load by name"
        )
    await plane.load(name)
    return Response(status_code=200)


@router.post(
    "/v2/repository/models/{name}/unload",
    response_class=Response,
    tags=["repository"],
    summary="Unload a model",
    openapi_extra=docs.INDEX_REQUEST,
    responses=docs.EMPTY_OK,
)
@requires(Scope.DEPLOY)
async def repository_unload(name: Name, request: Request, plane: Plane, config: Config) -> Response:
    await _optional_json(request, config)
    await plane.unload(name)
    return Response(status_code=200)
