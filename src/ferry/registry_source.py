"""The registry as a source of models for the ModelManager (``ferry server``): which
versions each model serves and how unversioned requests are routed, artifacts laid out
where the runtimes can load them, and the validation of an upload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

from ferry import sandbox
from ferry.artifacts import FETCH_SUFFIX, ArtifactStore, StoreUnavailable
from ferry.config import ModelConfig
from ferry.errors import Conflict, InvalidInput
from ferry.names import check_file_name, check_model_name
from ferry.pipeline import build_pipeline
from ferry.registry import Registry, Version, VersionState
from ferry.serverpaths import server_paths
from ferry.sources import RUNTIME_BY_SUFFIX, ModelSource, ServingPlan, VersionSource
from ferry.trust import TrustPolicy
from ferry.warmup import build_runtimes, load_failure

log = logging.getLogger("ferry.registry")

# Uploads that would run code from the file as it loads are refused outright; pickles
# are accepted but fail validation unless the server trusts the model (ferry.trust).
UPLOAD_SUFFIXES = sorted(suffix for suffix in RUNTIME_BY_SUFFIX if suffix != ".py")


DEFAULT_VALIDATION_LIMITS = sandbox.Limits(memory_bytes=2 * 2**30, cpu_seconds=300, timeout_s=600)


class RegistrySource:
    """``ferry server``: the registry's versions, followed every ``poll_interval_s``."""

    # Artifacts never change: a version loaded once stays loaded until it is not needed.
    reloads = False

    def __init__(
        self,
        registry: Registry,
        store: ArtifactStore,
        data_dir: Path,
        poll_interval_s: float = 1.0,
        trust: TrustPolicy | None = None,
        limits: sandbox.Limits = DEFAULT_VALIDATION_LIMITS,
    ) -> None:
        self.registry = registry
        self.store = store
        self.serving_dir = Path(data_dir) / "serving"
        self.paths = server_paths(data_dir, registry.database_file())
        store_root = getattr(store, "root", None)
        if store_root is not None:
            self.paths.add(store_root, "<artifact store>")
        self.poll_interval_s: float | None = poll_interval_s
        self.trust = trust or TrustPolicy()
        self.limits = limits

    def revision(self) -> int:
        return self.registry.revision()

    def plan(self) -> dict[str, ServingPlan]:
        """Each model serves the versions with a traffic weight above 0 and every stage's
        version, and loads its shadow version. Unversioned requests follow the weights
        when set, else the production stage, else the highest version served (never a
        shadow-only version)."""
        plans = {}
        for model in self.registry.list_models():
            stages = self.registry.get_stages(model.name)
            traffic = self.registry.get_traffic(model.name)
            weights = {str(n): w for n, w in traffic.weights.items() if w > 0}
            routed = set(weights) | {str(n) for n in stages.values()}
            shadow = str(traffic.shadow_version) if traffic.shadow_version is not None else None
            wanted = routed | ({shadow} if shadow else set())
            versions = {
                str(v.number): v
                for v in self.registry.list_versions(model.name)
                if str(v.number) in wanted and v.state == VersionState.READY
            }
            if shadow not in versions:
                shadow = None
            production = stages.get("production")
            default = str(production) if production is not None and str(production) in versions else None
            if default is None and routed & set(versions):
                default = max(routed & set(versions), key=int)
            shadow_only = frozenset({shadow} - routed) if shadow else frozenset()
            plans[model.name] = ServingPlan(
                versions, default, weights, shadow, traffic.shadow_percent if shadow else 0, shadow_only
            )
        return plans

    def materialise(self, version: Version) -> tuple[ModelSource, VersionSource]:
        """``<data dir>/serving/<model>/<number>/<original file name>``: artifacts are stored
        by digest without a suffix, and the runtimes pick their loader by suffix. The
        store fetches it there: a hard link from a local store, a checked download from
        S3 (so a node with an empty disk serves every version of the registry)."""
        stored = ModelConfig.model_validate(version.config) if version.config else ModelConfig()
        # Whatever a stored config says about trust (older releases let uploads set it),
        # the server's policy decides.
        config = self.trust.apply(version.model, stored)
        self.trust.check_runtime(version.model, config.runtime or RUNTIME_BY_SUFFIX[Path(version.filename).suffix])
        path = self.serving_dir / version.model / str(version.number) / version.filename
        # The serving directory is this node's copy: a file laid out before (by this
        # process or another on the same data directory) is whole, as fetch renames it
        # into place only once it is complete and checked.
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.store.fetch(version.artifact_digest, path)
        source = ModelSource(version.model, [VersionSource(version.number, path)], config)
        return source, source.versions[0]

    def release(self, model: str, number: int | str) -> None:
        """Remove the version's laid-out files (and its model's folder once empty)."""
        folder = self.serving_dir / model / str(number)
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # not empty: other versions are laid out
            folder.parent.rmdir()

    def prune(self, older_than_s: float = 0.0) -> list[Path]:
        """At start-up: remove the laid-out files of versions no process can be serving
        (failed, deleted, or of a deleted model), which a crash or an older release left.
        Ready versions stay (another process on this data directory may serve them), and
        so do versions being uploaded or validated. Half-fetched files a killed process
        left beside a kept version go too, once not written to for ``older_than_s``
        (another process on this data directory may be fetching right now)."""
        if not self.serving_dir.is_dir():
            return []
        cutoff = time.time() - older_than_s
        for temp in self.serving_dir.glob(f"*/*/.*{FETCH_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if older_than_s <= 0 or temp.stat().st_mtime <= cutoff:
                    temp.unlink()
        # Folders first, records second: a version's record is written before its folder,
        # so a folder seen here whose record is missing was deleted, not just uploaded.
        folders = [v for m in self.serving_dir.iterdir() if m.is_dir() for v in m.iterdir() if v.is_dir()]
        models = {m.name for m in self.registry.list_models()}
        states = {
            (name, str(v.number)): v.state
            for name in sorted({f.parent.name for f in folders} & models)
            for v in self.registry.list_versions(name)
        }
        removed = []
        for folder in sorted(folders):
            state = states.get((folder.parent.name, folder.name))
            if state is None or state == VersionState.FAILED:
                self.release(folder.parent.name, folder.name)
                removed.append(folder)
        return removed

    def public(self, reason: str) -> str:
        """Clients see labels (``<data dir>/serving/...``), never the server's paths."""
        return self.paths.scrub(reason)

    # -- uploads ------------------------------------------------------------------------

    async def upload(
        self,
        model: str,
        filename: str,
        stream: BinaryIO,
        uploaded_by: str = "",
        config: dict[str, Any] | None = None,
    ) -> Version:
        """Store the artifact, record the next version, and validate it: load it with its
        runtime, read the signature, run a warm-up inference. The version comes back
        ``ready`` (signature, warm-up ms) or ``failed`` (with the reason). ``config``: its
        config.yaml as a mapping; None: the config of the model's latest ready version that
        has one (a new version of a model keeps its pre-processing, labels and limits)."""
        check_file_name(filename)
        suffix = Path(filename).suffix
        if suffix not in UPLOAD_SUFFIXES:
            raise InvalidInput(f"cannot serve {filename!r}: the file name must end in {', '.join(UPLOAD_SUFFIXES)}")
        runtime = RUNTIME_BY_SUFFIX[suffix]
        check_model_name(model)
        # The artifact first: when the store fails (503), nothing of the upload is in the
        # registry, not even a new model without versions.
        artifact = await asyncio.to_thread(self.store.put, stream)
        with contextlib.suppress(Conflict):  # it exists: the usual case
            await asyncio.to_thread(self.registry.create_model, model)
        if config is None:
            config = await asyncio.to_thread(self._latest_config, model)
        version = await asyncio.to_thread(self.registry.add_version, model, runtime, artifact, filename, uploaded_by)
        number = version.number
        version = await asyncio.to_thread(
            self.registry.set_version_state, model, number, VersionState.VALIDATING, config=config
        )
        try:
            signature, warmup_ms = await asyncio.to_thread(self._validate, version)
        except StoreUnavailable:
            # The store failed (fetching the artifact to validate it), not the file: the
            # version is taken back so that the upload can simply be retried (503).
            await asyncio.to_thread(self.registry.delete_version, model, number)
            raise
        except Exception as exc:
            reason = self.public(str(exc) if isinstance(exc, sandbox.SandboxFailure) else load_failure(exc))
            log.warning("%s version %d failed validation: %s", model, number, reason)
            return await asyncio.to_thread(self.registry.set_version_state, model, number, VersionState.FAILED, reason)
        finally:
            # Laid out for validation only: a process that serves the version lays it out
            # again. Removed before the version is ready, so no process serves it yet.
            await asyncio.to_thread(self.release, model, number)
        return await asyncio.to_thread(
            self.registry.set_version_state,
            model,
            number,
            VersionState.READY,
            signature=signature,
            warmup_ms=warmup_ms,
        )

    def _latest_config(self, model: str) -> dict[str, Any] | None:
        versions = self.registry.list_versions(model)
        configs = [v.config for v in versions if v.config is not None and v.state == VersionState.READY]
        return configs[-1] if configs else None

    def _validate(self, version: Version) -> tuple[dict[str, list[dict[str, object]]], float]:
        """Load and warm up in a limited child process (ferry.sandbox): the upload is
        untrusted, and a bomb must fail its version, not the server."""
        source, version_source = self.materialise(version)
        runtime = source.runtime_for(version_source)
        memory = self.limits.memory_bytes + ARTIFACT_MEMORY_FACTOR * version.artifact_size
        limits = sandbox.Limits(memory, self.limits.cpu_seconds, self.limits.timeout_s)
        return sandbox.run(check_artifact, (runtime, version_source.path, source.config), limits)


# A model takes a few times its file's size once loaded (weights, copies while parsing):
# validation may use the configured memory plus this many times the artifact's size.
ARTIFACT_MEMORY_FACTOR = 4


def check_artifact(
    runtime_name: str, path: Path, config: ModelConfig
) -> tuple[dict[str, list[dict[str, object]]], float]:
    """Load, read the signature, build the config's pipeline and warm up: what makes a
    version ``ready``. Runs in the validation child process."""
    runtimes, warmup_ms = build_runtimes(runtime_name, path, config)
    try:
        signature = runtimes[0].signature
        # The config's pre- and post-processing must fit the model (labels per class,
        # image inputs): else the version would be "ready" and fail every request.
        build_pipeline(config, signature, getattr(runtimes[0], "hooks", None))
        return {
            "inputs": [spec.to_json() for spec in signature.inputs],
            "outputs": [spec.to_json() for spec in signature.outputs],
        }, warmup_ms
    finally:
        for runtime in runtimes:
            runtime.close()
