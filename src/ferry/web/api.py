"""The JSON the web app's pages are drawn from: the catalog (every model with its
versions, stages and traffic, from ``ferry serve`` and ``ferry server`` alike), one
model with its playground inputs, and the live numbers behind the charts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from ferry.errors import NotFound
from ferry.http.scopes import requires, visible_to
from ferry.http.v2 import Name, json_response
from ferry.manager import LOADING, READY, UNAVAILABLE, LoadedVersion, ModelManager
from ferry.security.keys import Scope
from ferry.web.live import LiveStats
from ferry.web.playground import widgets

if TYPE_CHECKING:  # `ferry serve` never imports the registry (SQLAlchemy)
    from ferry.registry_source import RegistrySource

router = APIRouter(prefix="/api/v1", tags=["web app"])


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.manager
    return manager


@router.get(
    "/catalog",
    summary="Every model, its versions, stages and traffic (the web app's catalog)",
    description="Works on `ferry serve` too, where there is no registry (no stages, no traffic split).",
)
@requires(Scope.READ)
async def catalog(request: Request) -> Response:
    manager = _manager(request)
    names = [name for name in manager.names() if visible_to(request, name)]
    entries = await _entries(manager, names)
    return json_response({"registry": manager.registry is not None, "models": entries})


@router.get(
    "/catalog/{name}",
    summary="One model with what its playground asks for",
    description="The catalog entry plus, for the version that answers unversioned requests, its "
    "inputs (each with the playground widget: image, canvas, text, form or json) and outputs.",
    responses={404: {"description": "Unknown model"}},
)
@requires(Scope.READ)
async def catalog_model(name: Name, request: Request) -> Response:
    manager = _manager(request)
    if not manager.knows(name):
        raise NotFound(f"unknown model {name!r}")
    entry = (await _entries(manager, [name]))[0]
    entry["registry"] = manager.registry is not None
    loaded = manager.default_version(name)
    if loaded is not None:
        entry["inputs"] = widgets(loaded)
        entry["outputs"] = [spec.to_json() for spec in loaded.signature.outputs]
    else:
        entry["inputs"] = entry["outputs"] = []
    return json_response(entry)


@router.get(
    "/live",
    summary="Live numbers for the charts",
    description="Every couple of seconds for the last few minutes, per model and version: "
    "requests/s, errors/s, p50 and p99 latency (ms), mean batch size and queue depth, plus "
    "the figures of about the last ten seconds and requests since the server started.",
)
@requires(Scope.READ)
async def live(request: Request, model: Annotated[str | None, Query(examples=["digits"])] = None) -> Response:
    stats: LiveStats = request.app.state.live
    manager = _manager(request)
    names = [n for n in manager.names() if visible_to(request, n) and (model is None or n == model)]
    return json_response(stats.report(names))


async def _entries(manager: ModelManager, names: list[str]) -> list[dict[str, Any]]:
    """Catalog entries: the manager's state read on the event loop, which changes it; the
    registry's (stages, traffic, description) in a thread."""
    served = _Served.of(manager, names)
    return await asyncio.to_thread(_assemble, manager.registry, served, names)


@dataclass(frozen=True)
class _Served:
    """What the manager serves, read on the event loop (which changes it) in one go."""

    rows: dict[str, list[dict[str, str]]]
    platforms: dict[tuple[str, str], str]
    defaults: dict[str, LoadedVersion | None]

    @classmethod
    def of(cls, manager: ModelManager, names: list[str]) -> _Served:
        rows: dict[str, list[dict[str, str]]] = {}
        for row in manager.index():
            rows.setdefault(row["name"], []).append(row)
        platforms = {(v.name, v.version): v.platform for v in manager.loaded()}
        return cls(rows, platforms, {name: manager.default_version(name) for name in names})


def _assemble(source: RegistrySource | None, served: _Served, names: list[str]) -> list[dict[str, Any]]:
    entries = []
    for name in names:
        stages: dict[str, int] = {}
        weights: dict[int, int] = {}
        shadow: int | None = None
        description = task = ""
        if source is not None:
            try:
                model = source.registry.get_model(name)
            except NotFound:  # deleted since the manager last synced
                continue
            description, task = model.description, model.task
            stages = source.registry.get_stages(name)
            traffic = source.registry.get_traffic(name)
            weights, shadow = traffic.weights, traffic.shadow_version
        default = served.defaults.get(name)
        if not description and default is not None:
            description = default.config.description
        rows = served.rows.get(name, [])
        versions = [
            {
                "version": row["version"],
                "state": row["state"],
                "reason": row["reason"],
                "stages": sorted(stage for stage, number in stages.items() if str(number) == row["version"]),
                "weight": weights.get(int(row["version"])),
                "shadow": shadow is not None and str(shadow) == row["version"],
                "platform": served.platforms.get((name, row["version"]), ""),
            }
            for row in rows
            if row["version"]
        ]
        states = {v["state"] for v in versions}
        state = READY if READY in states else LOADING if LOADING in states else UNAVAILABLE
        reasons = [row["reason"] for row in rows if row["reason"]]
        entries.append(
            {
                "name": name,
                "description": description,
                "task": task,
                "state": state,
                "reason": "" if state == READY else (reasons[0] if reasons else ""),
                "default_version": default.version if default is not None else None,
                "stages": {stage: str(number) for stage, number in sorted(stages.items())},
                "split": {str(n): w for n, w in weights.items() if w > 0},
                "versions": versions,
            }
        )
    return entries
