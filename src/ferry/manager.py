"""ModelManager: which model versions this process has loaded, and their lifecycle:
load -> warm up -> swap in -> (later) drain -> unload."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ferry.batching import Batcher
from ferry.cache import ResponseCache, build_cache
from ferry.config import ModelConfig
from ferry.errors import ConfigError, InvalidInput, NotFound, Unavailable
from ferry.names import parse_version
from ferry.pipeline import Pipeline, build_pipeline
from ferry.routing import Routes
from ferry.shadow import Shadow, ShadowRecord, ShadowTable
from ferry.signature import Signature
from ferry.sources import DirectorySource, ModelSource, ServingPlan, Source, VersionSource
from ferry.stats import ModelStats
from ferry.warmup import build_runtimes, load_failure

if TYPE_CHECKING:
    from ferry.metrics import Metrics, VersionGauges
    from ferry.registry_source import RegistrySource

log = logging.getLogger("ferry.manager")

READY, LOADING, UNAVAILABLE = "READY", "LOADING", "UNAVAILABLE"
# The state reason of a version loaded only as a shadow: it never answers requests.
SHADOW_ONLY = "shadow: gets copies of requests, never answers them"


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
    # Pre- and post-processing (ferry.pipeline); None: the model takes what clients send.
    # ``signature`` above is what clients see, after the pipeline.
    pipeline: Pipeline | None = None
    # Answers to repeated requests (ferry.cache); None: every request is computed.
    cache: ResponseCache | None = None


@dataclass
class VersionState:
    state: str
    reason: str = ""


@dataclass
class _Model:
    routes: Routes = field(default_factory=Routes)
    states: dict[str, VersionState] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    error: str | None = None
    unloaded: bool = False

    @property
    def versions(self) -> dict[str, LoadedVersion]:
        return self.routes.versions

    @property
    def latest(self) -> LoadedVersion | None:
        return self.routes.latest

    def serve(
        self, versions: dict[str, LoadedVersion], default: str | None = None, weights: dict[str, int] | None = None
    ) -> None:
        """The swap: one assignment, so a request sees either the old routes or the new."""
        self.routes = Routes.build(versions, default, weights)


class ModelManager:
    def __init__(
        self,
        paths: list[Path] | DirectorySource,
        registry: RegistrySource | None = None,
        metrics: Metrics | None = None,
        serves: bool = True,
    ) -> None:
        """Models from ``paths`` on disk (``ferry serve``), or from ``registry``
        (``ferry server``): either way a ``Source`` whose plan ``_reconcile`` follows.
        Loads, unloads and each loaded version's requests are reported to ``metrics``
        (none: not measured)."""
        self.registry = registry
        # False on a control node (ferry server --role control): it manages the registry
        # and loads no model; inference nodes serve them.
        self.serves = serves
        directory = paths if isinstance(paths, DirectorySource) else DirectorySource(paths)
        self.source: Source = registry if registry is not None else directory
        self.metrics: Metrics | None = None
        if metrics is not None:
            self.report_to(metrics)
        self._models: dict[str, _Model] = {}
        self._shadows = ShadowTable()
        self._sync_lock = asyncio.Lock()
        self._revision: int | None = None
        self._poller: asyncio.Task[None] | None = None
        # A redis.asyncio client for caches with ``shared: true`` (set by the app's
        # lifespan from FERRY_REDIS_URL); None: such a cache fails its version's load.
        self.shared_cache: Any | None = None
        # The first load (of the paths, or the registry's plan) has finished.
        self.started = False

    def report_to(self, metrics: Metrics) -> None:
        """Report to ``metrics`` from now on (before loading: versions loaded earlier
        keep reporting nowhere)."""
        self.metrics = metrics
        metrics.watch(self._occupancy)

    def _occupancy(self) -> list[VersionGauges]:
        """Every version this server knows, for the gauges read at each scrape."""
        from ferry.metrics import VersionGauges  # only ever called with metrics on

        gauges = []
        for name, model in sorted(self._models.items()):
            if model.unloaded:  # unloaded on purpose: nothing to be ready, nothing to alert on
                continue
            loaded = self._loaded_versions(name, model)
            latest = model.routes.latest
            default = latest.version if latest is not None and not model.unloaded else None
            if model.error or not model.states:
                gauges.append(VersionGauges(name, ""))
            for version, state in sorted(model.states.items(), key=lambda kv: int(kv[0])):
                live = loaded.get(version)
                cache = live.cache if live is not None else None
                evicted, held = cache.store.counts() if cache is not None else (0, 0)
                gauges.append(
                    VersionGauges(
                        name,
                        version,
                        live.batcher.queued if live else 0,
                        live.stats.inflight if live else 0,
                        live.batcher.capacity if live else 0,
                        ready=state.state == READY and live is not None,
                        default=version == default,
                        cached=cache is not None,
                        cache_hits=cache.hits if cache is not None else 0,
                        cache_misses=cache.misses if cache is not None else 0,
                        cache_evictions=evicted,
                        cache_bytes=held,
                    )
                )
        return gauges

    async def load_all(self) -> None:
        """Load every model the source has at start-up; a model that fails is marked
        UNAVAILABLE with its reason and the others still load."""
        try:
            await self.sync()
        except OSError as exc:
            log.error("cannot read the model paths: %s", exc)
            raise
        if self.source.poll_interval_s is not None:
            self._poller = asyncio.create_task(self._poll(self.source.poll_interval_s))
        self._loaded()

    def _loaded(self) -> None:
        self.started = True
        # Everything loaded so far lives as long as the server: keep it out of the
        # garbage collector's full passes, which otherwise show up as latency spikes.
        gc.freeze()
        log.info("ready: %d model(s) loaded", sum(1 for m in self._models.values() if m.versions))

    async def load(self, name: str) -> None:
        """(Re)load one model: from disk its files as they are now, from the registry
        what its plan says. New versions are warm before they take traffic; replaced
        versions finish their queued requests before they are released."""
        plan = (await asyncio.to_thread(self.source.plan)).get(name)
        if plan is None:
            where = "registry" if self.registry is not None else "model repository"
            raise NotFound(f"no model named {name!r} in the {where}")
        await self._reconcile(name, plan, reload=self.source.reloads)
        model = self._models[name]
        if model.error:
            raise InvalidInput(f"model {name!r} failed to load: {model.error}")
        if self.registry is not None:
            return  # a version failing to load is the registry's state, not this call's
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
            old = list(self._loaded_versions(name, model).values())
            model.serve({})
            self._shadows.point(name, None, 0)
            model.unloaded = True
            for version in model.states:
                model.states[version] = VersionState(UNAVAILABLE, "unloaded")
        await self._drain(old)
        log.info("unloaded model %s", name)

    def get(self, name: str, version: str | None = None) -> LoadedVersion:
        model = self._models.get(name)
        if model is None:
            raise NotFound(f"unknown model {name!r}")
        if model.unloaded:
            raise NotFound(f"model {name!r} is unloaded; POST /v2/repository/models/{name}/load to load it")
        if version is None:
            loaded = model.routes.pick()
            if loaded is None and not model.states and not model.error:
                # A registry model with no version staged: waiting will not help.
                raise NotFound(f"model {name!r} has no version that answers requests; give one a stage")
            if loaded is None:
                raise Unavailable(f"model {name!r} is not ready: {self._reason(model)}")
            return loaded
        key = str(parse_version(version))
        loaded = model.versions.get(key)
        if loaded is not None:
            return loaded
        state = model.states.get(key)
        if state is None or state.reason == SHADOW_ONLY:
            raise NotFound(f"model {name!r} has no version {version} that answers requests")
        raise Unavailable(
            f"model {name!r} version {version} is not ready: {state.state.lower()} {state.reason}".rstrip()
        )

    def unready(self) -> tuple[list[str], list[str]]:
        """Why the server is not ready: (models still loading with no version answering
        yet, models or versions that failed to load). Unloaded models count for neither."""
        waiting, failed = [], []
        for name, model in sorted(self._models.items()):
            if model.unloaded:
                continue
            if model.error:
                failed.append(f"{name}: {model.error}")
                continue
            broken = sorted((v for v, state in model.states.items() if state.state == UNAVAILABLE), key=int)
            failed += [f"{name} version {v}: {model.states[v].reason}" for v in broken]
            if model.routes.latest is None and any(state.state == LOADING for state in model.states.values()):
                waiting.append(name)
        return waiting, failed

    def public(self, message: str) -> str:
        """``message`` without the server's paths (DataPlane.public, load failures)."""
        return self.source.public(message)

    def knows(self, name: str) -> bool:
        """Whether ``name`` is a model of this server (loaded or not)."""
        return name in self._models

    def names(self) -> list[str]:
        return sorted(self._models)

    def loaded(self) -> list[LoadedVersion]:
        """Every loaded version, shadows included."""
        return [
            v
            for name, m in self._models.items()
            for _, v in sorted(self._loaded_versions(name, m).items(), key=lambda kv: int(kv[0]))
        ]

    def routed(self, name: str) -> list[LoadedVersion]:
        """The versions of ``name`` that answer requests (no shadow), in version order."""
        model = self._models.get(name)
        return [v for _, v in sorted(model.versions.items(), key=lambda kv: int(kv[0]))] if model else []

    def default_version(self, name: str) -> LoadedVersion | None:
        """The version unversioned requests go to when no canary split picks another."""
        model = self._models.get(name)
        return model.routes.latest if model is not None and not model.unloaded else None

    def shadow_record(self, name: str) -> ShadowRecord | None:
        """What the model's shadow version did in this process (the last shadow's, if it
        was removed); None if it never had one here."""
        return self._shadows.record(name)

    def shadow(self, name: str) -> Shadow | None:
        """The model's shadow, when it takes a share of the unversioned requests."""
        active = self._shadows.active
        return active.get(name) if active else None

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
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        await self._drain(self.loaded(), timeout_s)

    # -- reconciling with the source --------------------------------------------------

    async def sync(self) -> None:
        """Reconcile every model with the source's plan: load and warm the versions it
        now needs, swap the routes (one assignment per model), then drain and unload the
        versions no longer needed. Versions already loaded are kept as they are."""
        async with self._sync_lock:
            # The revision first: a change made while we read the plan is seen next time.
            revision = await asyncio.to_thread(self.source.revision)
            plans = await asyncio.to_thread(self.source.plan) if self.serves else {}
            for name in plans:
                self._models.setdefault(name, _Model())
            # Concurrently, so a model whose library is slow to import delays only itself.
            await asyncio.gather(*(self._reconcile(name, plan) for name, plan in plans.items()))
            self._revision = revision

    async def _poll(self, interval_s: float) -> None:
        """Follow changes made through other server processes on the same registry."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                if await asyncio.to_thread(self.source.revision) != self._revision:
                    await self.sync()
            except Exception:
                log.exception("cannot sync with the registry; retrying")

    async def _reconcile(self, name: str, plan: ServingPlan, reload: bool = False) -> None:
        """Make ``name`` serve what ``plan`` says. ``reload``: load the versions already
        loaded again too (their files changed); if that fails, the loaded one keeps
        serving, marked with the reason."""
        source = self.source
        model = self._models.setdefault(name, _Model())
        async with model.lock:
            model.error = source.public(plan.error) if plan.error else None
            if plan.error:  # e.g. a broken config.yaml: what was loaded keeps serving
                log.error("model %s cannot be loaded: %s", name, plan.error)
                return
            current = self._loaded_versions(name, model)
            fresh = {key: v for key, v in current.items() if key in plan.versions and not reload}
            new = [key for key in plan.versions if key not in fresh]
            for key in new:
                model.states[key] = VersionState(LOADING)

            async def load(key: str) -> LoadedVersion:
                model_source, version = await asyncio.to_thread(source.materialise, plan.versions[key])
                return await self._load_version(model_source, version)

            results = await asyncio.gather(*(load(key) for key in new), return_exceptions=True)
            for key, result in zip(new, results, strict=True):
                if isinstance(result, LoadedVersion):
                    fresh[key] = result
                    model.states[key] = VersionState(READY)
                elif isinstance(result, Exception):
                    # Anything, even a bug in a model's own __init__, must fail only this
                    # version: an escaped exception would leave the server never ready.
                    reason = load_failure(result)
                    log.error("model %s version %s failed to load: %s", name, key, reason)
                    reason = source.public(reason)
                    if key in current:  # a failed reload keeps serving what already worked
                        fresh[key] = current[key]
                        model.states[key] = VersionState(READY, f"reload failed: {reason}")
                    else:
                        model.states[key] = VersionState(UNAVAILABLE, reason)
                else:
                    raise result
            replaced = [v for key, v in current.items() if fresh.get(key) is not v]
            # Routes and shadow swap together: no await between them.
            model.serve({k: v for k, v in fresh.items() if k not in plan.shadow_only}, plan.default, plan.weights)
            self._shadows.point(name, fresh.get(plan.shadow) if plan.shadow else None, plan.shadow_percent)
            for key in fresh:
                if key in plan.shadow_only:
                    model.states[key] = VersionState(READY, SHADOW_ONLY)
                elif getattr(model.states.get(key), "reason", "") == SHADOW_ONLY:
                    model.states[key] = VersionState(READY)
            model.unloaded = False
            for key in list(model.states):
                if key not in plan.versions:
                    del model.states[key]
        await self._drain(replaced)
        for gone in replaced:
            await asyncio.to_thread(source.release, name, int(gone.version))
            if gone.version not in fresh:
                log.info("unloaded %s version %s", name, gone.version)

    async def _drain(self, versions: list[LoadedVersion], timeout_s: float | None = None) -> None:
        await asyncio.gather(*(v.batcher.drain(timeout_s) for v in versions))
        for v in versions:
            if v.pipeline is not None:
                v.pipeline.close()
        if self.metrics is not None:
            for v in versions:
                self.metrics.unloaded(v.name, v.version)

    def _loaded_versions(self, name: str, model: _Model) -> dict[str, LoadedVersion]:
        """The versions routed to, and the shadow version."""
        target = self._shadows.target(name)
        if target is None:
            return dict(model.versions)
        return {**model.versions, target.version: target}

    def _reason(self, model: _Model) -> str:
        if model.error:
            return model.error
        reasons = [f"version {v} {s.state.lower()}: {s.reason}".rstrip(": ") for v, s in model.states.items()]
        return "; ".join(reasons) or "not loaded"

    async def _load_version(self, source: ModelSource, version: VersionSource) -> LoadedVersion:
        started = time.perf_counter()
        try:
            loaded = await self._build_version(source, version)
        except Exception:
            if self.metrics is not None:
                self.metrics.load_failed(source.name, str(version.version))
            raise
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.loaded(loaded.name, loaded.version, seconds, loaded.warmup_ms / 1000)
        log.info(
            "loaded %s version %s (%s) in %.0f ms, warm-up %.1f ms",
            loaded.name,
            loaded.version,
            loaded.platform,
            seconds * 1000,
            loaded.warmup_ms,
        )
        return loaded

    async def _build_version(self, source: ModelSource, version: VersionSource) -> LoadedVersion:
        runtime_name = source.runtime_for(version)
        config = source.config
        runtimes, warmup_ms = await asyncio.to_thread(build_runtimes, runtime_name, version.path, config)
        key = str(version.version)
        try:
            pipeline = build_pipeline(config, runtimes[0].signature, getattr(runtimes[0], "hooks", None))
            cache = build_cache(source.name, key, config, runtimes[0], self.shared_cache)
        except ConfigError:
            for runtime in runtimes:
                runtime.close()
            raise
        stats = ModelStats(self.metrics.version(source.name, key) if self.metrics is not None else None)
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
        return LoadedVersion(
            name=source.name,
            version=key,
            platform=source.platform_for(version),
            signature=pipeline.signature if pipeline is not None else runtimes[0].signature,
            config=config,
            batcher=batcher,
            stats=stats,
            batchable=runtimes[0].batchable and config.max_batch_size > 1,
            warmup_ms=warmup_ms,
            pipeline=pipeline,
            cache=cache,
        )
