"""The management API under ``/api/v1/`` (``ferry server`` only): models, version
uploads, stages, traffic (canary and shadow) and rollback. Thin routes over the Registry; every change that affects
serving waits for ``ModelManager.sync()``, so a 2xx answer means "it is live"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi import Path as PathParam
from pydantic import BaseModel, Field, StrictInt
from starlette.requests import Request

from ferry.config import parse_uploaded_config
from ferry.errors import ConfigError, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from ferry.http.fields import PlainText
from ferry.http.scopes import requires, visible_to
from ferry.http.v2 import Config, Name
from ferry.manager import ModelManager
from ferry.names import MAX_VERSION
from ferry.registry import Model, Version, delete_version
from ferry.registry_source import RegistrySource
from ferry.security.keys import Scope

router = APIRouter(prefix="/api/v1", tags=["management"])


async def _source(request: Request) -> RegistrySource:
    source: RegistrySource = request.app.state.registry
    return source


async def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


Source = Annotated[RegistrySource, Depends(_source)]
Manager = Annotated[ModelManager, Depends(_manager)]
Number = Annotated[int, PathParam(description="Version number", ge=1, le=MAX_VERSION, examples=[4])]
Stage = Annotated[str, PathParam(description="Stage: production, staging or any alias", examples=["production"])]


# -- bodies and answers ---------------------------------------------------------------


class NewModel(BaseModel):
    name: str = Field(examples=["digits"])
    description: PlainText = ""
    task: PlainText = Field("", examples=["image-classification"])
    labels: dict[PlainText, PlainText] = Field(default_factory=dict, examples=[{"team": "vision"}])


# JSON numbers only (StrictInt): in lax mode true is 1, "4" and 4.0 are 4.
VersionNumber = Annotated[StrictInt, Field(ge=1, le=MAX_VERSION)]


class StageBody(BaseModel):
    version: VersionNumber = Field(examples=[4])


class ShadowBody(BaseModel):
    version: VersionNumber = Field(description="The shadow version: loaded, never answers clients", examples=[6])
    percent: StrictInt = Field(ge=0, le=100, description="Percent of unversioned requests copied to it", examples=[20])


class TrafficBody(BaseModel):
    # Keys are JSON strings ("4"), so only the weights are strict.
    weights: dict[int, StrictInt] = Field(
        description="Weight per version number, adding up to 100", examples=[{"4": 90, "5": 10}]
    )
    shadow: ShadowBody | None = Field(
        None, description="A shadow version and the percent of requests copied to it; null or left out: none"
    )


class TrafficOut(BaseModel):
    weights: dict[str, int] = Field(examples=[{"4": 90, "5": 10}])
    shadow_version: int | None = None
    shadow_percent: int = 0


class ShadowOut(BaseModel):
    """What the shadow version did in this server process since it became the shadow."""

    version: int = Field(description="The shadow version these counts are for", examples=[6])
    percent: int = Field(description="Percent of unversioned requests copied to it now", examples=[20])
    active: bool = Field(description="Whether it is still the shadow (false: the last one's counts)")
    sent: int = Field(description="Copies sent to it (succeeded + failed + in flight)")
    succeeded: int
    failed: int
    skipped: int = Field(description="Copies not sent because its queue was full")
    agreed: int = Field(description="Answers equal to the primary's (floats: np.allclose)")
    disagreed: int


class ModelOut(BaseModel):
    name: str
    description: str
    task: str
    labels: dict[str, Any]
    created_at: datetime
    stages: dict[str, int] = Field(examples=[{"production": 4, "staging": 5}])
    traffic: TrafficOut
    shadow: ShadowOut | None = Field(None, description="The shadow's record, as GET .../shadow")


class VersionOut(BaseModel):
    model: str
    number: int
    runtime: str = Field(examples=["onnx"])
    filename: str = Field(examples=["model.onnx"])
    artifact_digest: str
    artifact_size: int
    state: str = Field(description="uploaded, validating, ready, failed or archived", examples=["ready"])
    failure_reason: str | None = Field(None, description="Why validation failed (state failed)")
    signature: dict[str, Any] | None = None
    config: dict[str, Any] | None = Field(None, description="Its config.yaml, as uploaded or taken over")
    warmup_ms: float | None = None
    uploaded_by: str
    created_at: datetime

    @classmethod
    def of(cls, version: Version, public: Callable[[str], str]) -> VersionOut:
        """``public`` takes server paths out of the failure reason (rows written by older
        releases may hold them)."""
        reason = version.failure_reason
        return cls(
            model=version.model,
            number=version.number,
            runtime=version.runtime,
            filename=version.filename,
            artifact_digest=version.artifact_digest,
            artifact_size=version.artifact_size,
            state=version.state.value,
            failure_reason=public(reason) if reason else reason,
            signature=version.signature,
            config=version.config,
            warmup_ms=version.warmup_ms,
            uploaded_by=version.uploaded_by,
            created_at=version.created_at,
        )


def _shadow_out(manager: ModelManager, name: str) -> ShadowOut | None:
    record = manager.shadow_record(name)
    return ShadowOut(**record.to_json()) if record is not None else None


def _model_out(source: RegistrySource, manager: ModelManager, model: Model) -> ModelOut:
    traffic = source.registry.get_traffic(model.name)
    return ModelOut(
        name=model.name,
        description=model.description,
        task=model.task,
        labels=model.labels,
        created_at=model.created_at,
        stages=source.registry.get_stages(model.name),
        traffic=TrafficOut(
            weights={str(n): w for n, w in traffic.weights.items()},
            shadow_version=traffic.shadow_version,
            shadow_percent=traffic.shadow_percent,
        ),
        shadow=_shadow_out(manager, model.name),
    )


async def _model_doc(source: RegistrySource, manager: ModelManager, name: str) -> ModelOut:
    return await asyncio.to_thread(lambda: _model_out(source, manager, source.registry.get_model(name)))


def _error(description: str, example: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"example": {"error": example}}}}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Invalid input", "traffic weights must add up to 100, not 90"),
    404: _error("Unknown model or version", "model 'digits' not found"),
    409: _error("Conflicts with the current state", "cannot delete it: digits version 4 is stage production"),
}
ROLLBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: _error("Nothing to roll back to", "nothing to roll back to: digits has no earlier production version"),
}


# -- models ---------------------------------------------------------------------------


@router.get("/models", summary="List models")
@requires(Scope.READ)
async def list_models(request: Request, source: Source, manager: Manager) -> list[ModelOut]:
    def read() -> list[ModelOut]:
        models = source.registry.list_models()
        return [_model_out(source, manager, m) for m in models if visible_to(request, m.name)]

    return await asyncio.to_thread(read)


@router.post("/models", status_code=201, summary="Create a model", responses=ERRORS)
@requires(Scope.DEPLOY)
async def create_model(body: NewModel, request: Request, source: Source, manager: Manager) -> ModelOut:
    request.state.audit_target = request.state.audit_model = body.name
    # The Gate checked the key's model list against the path; this name is in the body.
    key = getattr(request.state, "key", None)
    if key is not None and not key.may_use(body.name):
        raise Forbidden(f"this key may not use model {body.name!r}")
    model = await asyncio.to_thread(source.registry.create_model, body.name, body.description, body.task, body.labels)
    await manager.sync()
    return await asyncio.to_thread(_model_out, source, manager, model)


@router.get("/models/{name}", summary="A model, with its stages, traffic and shadow record", responses=ERRORS)
@requires(Scope.READ)
async def get_model(name: Name, source: Source, manager: Manager) -> ModelOut:
    return await _model_doc(source, manager, name)


# -- versions -------------------------------------------------------------------------


@router.get("/models/{name}/versions", summary="List a model's versions", responses=ERRORS)
@requires(Scope.READ)
async def list_versions(name: Name, source: Source) -> list[VersionOut]:
    return [VersionOut.of(v, source.public) for v in await asyncio.to_thread(source.registry.list_versions, name)]


@router.post(
    "/models/{name}/versions",
    status_code=201,
    summary="Upload a version",
    description="Multipart upload of a model file (`.onnx`, `.skops`, `.pt`, `.pt2`, ...); the model is "
    "created if it does not exist. The version is validated before the answer: loaded, its signature "
    "read, a warm-up inference run. `state` says the outcome: `ready`, or `failed` with "
    "`failure_reason` (a failed version never takes traffic). With `stage`, a ready version is "
    "put on that stage and is live when the answer comes.",
    responses=ERRORS,
)
@requires(Scope.DEPLOY)
async def upload_version(
    name: Name,
    request: Request,
    file: Annotated[UploadFile, File(description="The model file; its suffix picks the runtime")],
    source: Source,
    manager: Manager,
    config: Config,
    stage: Annotated[str | None, Form(description="Put the version on this stage if it validates")] = None,
    config_yaml: Annotated[
        UploadFile | None,
        File(
            alias="config",
            description="The version's config.yaml (YAML or JSON; labels as a list). Left out: the "
            "config of the model's latest ready version, if any.",
        ),
    ] = None,
) -> VersionOut:
    # UploadLimit has refused bodies over the limit as they arrived; this is for the file alone.
    if file.size is not None and file.size > config.max_upload_bytes:
        raise PayloadTooLarge(f"the file is {file.size} bytes; the limit is {config.max_upload_bytes}")
    # Who uploaded it: the key (the client's address when the server runs without keys).
    key = getattr(request.state, "key", None)
    uploader = key.label if key is not None else request.client.host if request.client else ""
    settings = await _uploaded_config(config_yaml) if config_yaml is not None else None
    version = await source.upload(name, file.filename or "", file.file, uploaded_by=uploader, config=settings)
    request.state.audit_target = f"{name}/{version.number}"
    if stage and version.state.value == "ready":
        await asyncio.to_thread(source.registry.set_stage, name, stage, version.number)
        await manager.sync()
    return VersionOut.of(version, source.public)


MAX_CONFIG_BYTES = 1024 * 1024


async def _uploaded_config(upload: UploadFile) -> dict[str, Any]:
    text = await upload.read(MAX_CONFIG_BYTES + 1)
    if len(text) > MAX_CONFIG_BYTES:
        raise PayloadTooLarge(f"config.yaml is over {MAX_CONFIG_BYTES} bytes")
    try:
        # Off the event loop: parsing a big config takes a while, and others are waiting.
        return await asyncio.to_thread(parse_uploaded_config, text.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput("config.yaml must be UTF-8 text") from None
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None


@router.post("/models/{name}/versions/{number}/archive", summary="Archive a version", responses=ERRORS)
@requires(Scope.DEPLOY)
async def archive_version(name: Name, number: Number, source: Source) -> VersionOut:
    return VersionOut.of(await asyncio.to_thread(source.registry.archive_version, name, number), source.public)


@router.delete(
    "/models/{name}/versions/{number}",
    summary="Delete a version",
    description="Refused (409) while a stage points at it or it takes traffic.",
    responses=ERRORS,
)
@requires(Scope.DEPLOY)
async def delete(name: Name, number: Number, source: Source) -> VersionOut:
    gone = await asyncio.to_thread(delete_version, source.registry, source.store, name, number)
    await asyncio.to_thread(source.release, name, number)
    return VersionOut.of(gone, source.public)


# -- stages and traffic ---------------------------------------------------------------


@router.put("/models/{name}/stages/{stage}", summary="Point a stage at a version", responses=ERRORS)
@requires(Scope.DEPLOY)
async def set_stage(name: Name, stage: Stage, body: StageBody, source: Source, manager: Manager) -> ModelOut:
    await asyncio.to_thread(source.registry.set_stage, name, stage, body.version)
    await manager.sync()
    return await _model_doc(source, manager, name)


@router.post(
    "/models/{name}/rollback",
    summary="Roll production back",
    description="Production goes back to the version it pointed at before its latest change (the "
    "top of its history is popped, so rolling back again goes further back), and the canary "
    "split and the shadow are cleared, in one transaction. 409 when there is no earlier "
    "production version or it is no longer `ready`.",
    responses=ROLLBACK_ERRORS,
)
@requires(Scope.DEPLOY)
async def rollback(name: Name, source: Source, manager: Manager) -> ModelOut:
    await asyncio.to_thread(source.registry.rollback, name)
    await manager.sync()
    return await _model_doc(source, manager, name)


@router.put(
    "/models/{name}/traffic",
    summary="Split traffic over versions",
    description="Unversioned requests are spread over the versions by weight (adding up to 100). "
    "Without weights they go to the production stage. With `shadow`, that version is loaded and "
    "gets a copy of `percent`% of unversioned requests after their answer is computed; its answers "
    "are compared with the primary's and counted (`GET .../shadow`), never returned. The body "
    "replaces the whole policy: leaving `shadow` out (or null) removes the shadow.",
    responses=ERRORS,
)
@requires(Scope.DEPLOY)
async def set_traffic(name: Name, body: TrafficBody, source: Source, manager: Manager) -> ModelOut:
    if not body.weights:
        raise InvalidInput("weights must name at least one version")
    shadow = (body.shadow.version, body.shadow.percent) if body.shadow is not None else (None, 0)
    await asyncio.to_thread(source.registry.set_traffic, name, body.weights, *shadow)
    await manager.sync()
    return await _model_doc(source, manager, name)


@router.delete(
    "/models/{name}/traffic",
    summary="End the split and the shadow",
    description="Unversioned requests follow the production stage again (the highest served "
    "version without one); the shadow, if any, is removed. The way out of a canary that keeps "
    "production where it is (rollback moves production itself).",
    responses=ERRORS,
)
@requires(Scope.DEPLOY)
async def clear_traffic(name: Name, source: Source, manager: Manager) -> ModelOut:
    await asyncio.to_thread(source.registry.clear_traffic, name)
    await manager.sync()
    return await _model_doc(source, manager, name)


@router.get(
    "/models/{name}/shadow",
    summary="What the shadow version did",
    description="Counts of this server process since the version became the shadow: copies sent, "
    "succeeded, failed, skipped (its queue was full), and answers that agreed with the primary's. "
    "After the shadow is removed, the last one's counts with `active: false`.",
    responses=ERRORS,
)
@requires(Scope.READ)
async def get_shadow(name: Name, source: Source, manager: Manager) -> ShadowOut:
    await asyncio.to_thread(source.registry.get_model, name)  # 404 for an unknown model
    shadow = _shadow_out(manager, name)
    if shadow is None:
        raise NotFound(f"model {name!r} has had no shadow version in this server process")
    return shadow
