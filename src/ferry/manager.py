"""ModelManager: which model versions this process has loaded, and their lifecycle:
load -> warm up -> swap in -> (later) drain -> unload."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferry.batching import Batcher
from ferry.config import ModelConfig
from ferry.errors import ConfigError, FerryError, InvalidInput, NotFound, Unavailable
from ferry.runtimes import Runtime, load_runtime
from ferry.signature import Signature, TensorSpec
from ferry.sources import ModelSource, VersionSource, discover
from ferry.stats import ModelStats

log = logging.getLogger("ferry.manager")

READY, LOADING, UNAVAILABLE = "READY", "LOADING", "UNAVAILABLE"


@dataclass
class LoadedVersion:
    name: str
    version: str
    platform: str
    signature: Signature
    config: ModelConfig
    batcher: Batcher
    stats: ModelStats
    batchable: bool
    warmup_ms: float


@dataclass
class VersionState:
    state: str
    reason: str = ""


@dataclass
class _Model:
    versions: dict[str, LoadedVersion] = field(default_factory=dict)
    states: dict[str, VersionState] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    error: str | None = None
    # Kept with the versions so routing an unversioned request does no work.
    latest: LoadedVersion | None = None
    unloaded: bool = False

    def serve(self, versions: dict[str, LoadedVersion]) -> None:
        """The swap: one assignment, so a request sees either the old set or the new."""
        self.versions = versions
        self.latest = versions[max(versions, key=int)] if versions else None


class ModelManager:
    def __init__(self, paths: list[Path]) -> None:
        self._paths = paths
        self._models: dict[str, _Model] = {}
        self.ready = False

    async def load_all(self) -> None:
        """Load every model found at start-up; a model that fails is marked
        UNAVAILABLE with its reason and the others still load."""
        try:
            sources = await asyncio.to_thread(discover, self._paths)
        except OSError as exc:
            log.error("cannot read the model paths: %s", exc)
            raise
        for source in sources.values():
            self._models.setdefault(source.name, _Model())
        # Concurrently, so a model whose library is slow to import delays only itself.
        await asyncio.gather(*(self._load_source(source) for source in sources.values()))
        self.ready = True
        # Everything loaded so far lives as long as the server: keep it out of the
        # garbage collector's full passes, which otherwise show up as latency spikes.
        gc.freeze()
        log.info("ready: %d model(s) loaded", sum(1 for m in self._models.values() if m.versions))

    async def load(self, name: str) -> None:
        """(Re)load one model from disk. New versions are warm before they take traffic;
        replaced versions finish their queued requests before they are released."""
        source = (await asyncio.to_thread(discover, self._paths)).get(name)
        if source is None:
            raise NotFound(f"no model named {name!r} in the model repository")
        self._models.setdefault(name, _Model())
        await self._load_source(source)
        model = self._models[name]
        if model.error:
            raise InvalidInput(f"model {name!r} failed to load: {model.error}")
        # A failed reload is an error too, though the old version keeps serving: the
        # client asked for the files now on disk and must not think they are live.
        failed = [(v, s) for v, s in model.states.items() if s.state != READY or s.reason]
        if failed or not model.versions:
            reasons = "; ".join(f"version {v}: {s.reason}" for v, s in sorted(failed, key=lambda vs: int(vs[0])))
            raise InvalidInput(f"model {name!r} failed to load: {reasons}")

    async def unload(self, name: str) -> None:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"unknown model {name!r}")
        async with model.lock:
            old = list(model.versions.values())
            model.serve({})
            model.unloaded = True
            for version in model.states:
                model.states[version] = VersionState(UNAVAILABLE, "unloaded")
        await asyncio.gather(*(v.batcher.drain() for v in old))
        log.info("unloaded model %s", name)

    def get(self, name: str, version: str | None = None) -> LoadedVersion:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"unknown model {name!r}")
        if model.unloaded:
            raise NotFound(f"model {name!r} is unloaded; POST /v2/repository/models/{name}/load to load it")
        if version is None:
            loaded = model.latest
            if loaded is None:
                raise Unavailable(f"model {name!r} is not ready: {self._reason(model)}")
            return loaded
        # isascii: str.isdigit() is also true of "²" and other digits int() refuses (a 500).
        if not (version.isascii() and version.isdigit()):
            raise InvalidInput(f"version must be a positive integer, not {version!r}")
        loaded = model.versions.get(str(int(version)))
        if loaded is not None:
            return loaded
        state = model.states.get(str(int(version)))
        if state is None:
            raise NotFound(f"model {name!r} has no version {version}")
        raise Unavailable(
            f"model {name!r} version {version} is not ready: {state.state.lower()} {state.reason}".rstrip()
        )

    def names(self) -> list[str]:
        return sorted(self._models)

    def loaded(self) -> list[LoadedVersion]:
        return [v for m in self._models.values() for _, v in sorted(m.versions.items(), key=lambda kv: int(kv[0]))]

    def versions_of(self, name: str) -> list[str]:
        return sorted(self._models[name].versions, key=int) if name in self._models else []

    def index(self) -> list[dict[str, str]]:
        entries = []
        for name in sorted(self._models):
            model = self._models[name]
            if model.error or not model.states:
                entries.append(
                    {"name": name, "version": "", "state": UNAVAILABLE, "reason": model.error or "not loaded"}
                )
            for version, state in sorted(model.states.items(), key=lambda kv: int(kv[0])):
                entries.append({"name": name, "version": version, "state": state.state, "reason": state.reason})
        return entries

    async def close(self, timeout_s: float | None = None) -> None:
        """Finish queued and running requests (for at most ``timeout_s``), release models."""
        await asyncio.gather(*(v.batcher.drain(timeout_s) for v in self.loaded()))

    def _reason(self, model: _Model) -> str:
        if model.error:
            return model.error
        reasons = [f"version {v} {s.state.lower()}: {s.reason}".rstrip(": ") for v, s in model.states.items()]
        return "; ".join(reasons) or "not loaded"

    async def _load_source(self, source: ModelSource) -> None:
        model = self._models[source.name]
        async with model.lock:
            model.error = source.error
            if source.error:
                log.error("model %s cannot be loaded: %s", source.name, source.error)
                return
            fresh: dict[str, LoadedVersion] = {}
            for version in source.versions:
                key = str(version.version)
                model.states[key] = VersionState(LOADING)
                try:
                    fresh[key] = await self._load_version(source, version)
                    model.states[key] = VersionState(READY)
                except Exception as exc:
                    # Anything, even a bug in a model's own __init__, must fail only this
                    # version: an escaped exception would leave the server never ready.
                    reason = _load_failure(exc)
                    log.error("model %s version %s failed to load: %s", source.name, key, reason)
                    reason = self._public(reason, version.path)
                    if key in model.versions:
                        # A failed reload keeps serving what already worked.
                        fresh[key] = model.versions[key]
                        model.states[key] = VersionState(READY, f"reload failed: {reason}")
                    else:
                        model.states[key] = VersionState(UNAVAILABLE, reason)
            replaced = [v for v in model.versions.values() if all(v is not f for f in fresh.values())]
            model.serve(fresh)
            model.unloaded = False
            for key in list(model.states):
                if key not in {str(v.version) for v in source.versions}:
                    del model.states[key]
        await asyncio.gather(*(v.batcher.drain() for v in replaced))

    def _public(self, reason: str, model_file: Path) -> str:
        """Libraries quote absolute paths; the log keeps them, clients see names relative
        to the model repository."""
        places = {model_file, model_file.parent, *self._paths}
        places |= {p.resolve() for p in places}
        for place in sorted(places, key=lambda p: len(str(p)), reverse=True):
            if str(place) not in (".", "/"):
                reason = reason.replace(str(place), place.name)
        return reason

    async def _load_version(self, source: ModelSource, version: VersionSource) -> LoadedVersion:
        started = time.perf_counter()
        runtime_name = source.runtime_for(version)
        config = source.config
        runtimes, warmup_ms = await asyncio.to_thread(_build, runtime_name, version.path, config)
        stats = ModelStats()
        batcher = Batcher(
            runtimes,
            max_batch_size=config.max_batch_size,
            max_delay_ms=config.max_delay_ms,
            max_queue_size=config.max_queue_size,
            timeout_s=config.timeout_ms / 1000,
            stats=stats,
            name=source.name,
        )
        batcher.start()
        log.info(
            "loaded %s version %d (%s) in %.0f ms, warm-up %.1f ms",
            source.name,
            version.version,
            runtime_name,
            (time.perf_counter() - started) * 1000,
            warmup_ms,
        )
        return LoadedVersion(
            name=source.name,
            version=str(version.version),
            platform=source.platform_for(version),
            signature=runtimes[0].signature,
            config=config,
            batcher=batcher,
            stats=stats,
            batchable=runtimes[0].batchable and config.max_batch_size > 1,
            warmup_ms=warmup_ms,
        )


def _load_failure(exc: Exception) -> str:
    if isinstance(exc, FerryError):
        return exc.message
    if isinstance(exc, ConfigError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _build(runtime_name: str, path: Path, config: ModelConfig) -> tuple[list[Runtime], float]:
    """In a thread: load each instance and warm it up with synthetic inputs, so the
    first real request pays no lazy initialisation."""
    runtimes = [load_runtime(runtime_name, path, config) for _ in range(config.instances)]
    if not config.warmup:
        return runtimes, 0.0
    inputs = synthetic_inputs(runtimes[0].signature.inputs)
    started = time.perf_counter()
    for runtime in runtimes:
        try:
            runtime.predict(inputs)
        except Exception as exc:
            for r in runtimes:
                r.close()
            raise ConfigError(f"warm-up inference failed: {type(exc).__name__}: {exc}") from None
    return runtimes, (time.perf_counter() - started) * 1000 / len(runtimes)


def synthetic_inputs(specs: tuple[TensorSpec, ...]) -> dict[str, np.ndarray]:
    inputs = {}
    for spec in specs:
        shape = tuple(1 if d == -1 else d for d in spec.shape)
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, b"ferry", dtype=object)
        else:
            inputs[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return inputs
