"""Find models on disk: single model files, or repositories laid out as
``<repo>/<name>/<version>/model.<ext>`` with an optional ``<repo>/<name>/config.yaml``."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ferry.config import ModelConfig, load_config
from ferry.errors import ConfigError
from ferry.names import is_model_name, version_number
from ferry.serverpaths import server_paths

log = logging.getLogger("ferry.sources")

# File suffix -> (runtime, platform name reported in metadata, as Triton names its own).
SUFFIXES = {
    ".onnx": ("onnx", "onnxruntime_onnx"),
    ".skops": ("sklearn", "sklearn_skops"),
    ".joblib": ("sklearn", "sklearn_joblib"),
    ".pkl": ("sklearn", "sklearn_pickle"),
    ".pickle": ("sklearn", "sklearn_pickle"),
    ".pt": ("torch", "pytorch_torchscript"),
    ".pt2": ("torch", "pytorch_export"),
    ".py": ("python", "python"),
}
RUNTIME_BY_SUFFIX = {suffix: runtime for suffix, (runtime, _) in SUFFIXES.items()}


@dataclass(frozen=True)
class VersionSource:
    version: int
    path: Path


@dataclass
class ModelSource:
    """One model: its versions on disk and its config, or why it cannot be used."""

    name: str
    versions: list[VersionSource] = field(default_factory=list)
    config: ModelConfig = field(default_factory=ModelConfig)
    error: str | None = None

    def runtime_for(self, version: VersionSource) -> str:
        return self.config.runtime or RUNTIME_BY_SUFFIX[version.path.suffix]

    def platform_for(self, version: VersionSource) -> str:
        return SUFFIXES[version.path.suffix][1]


@dataclass(frozen=True)
class ServingPlan:
    """What one model should serve now: its versions by number (each as its source's
    ``materialise`` takes it), the version for unversioned requests (None: the highest),
    the traffic split (empty: none set), and the shadow version with the percent of
    unversioned requests copied to it. A shadow that is not also a stage or weighted is
    in ``versions`` (it is loaded) and in ``shadow_only`` (it never answers clients).
    ``error``: why the model cannot be loaded at all (its versions are not touched)."""

    versions: dict[str, Any] = field(default_factory=dict)
    default: str | None = None
    weights: dict[str, int] = field(default_factory=dict)
    shadow: str | None = None
    shadow_percent: int = 0
    shadow_only: frozenset[str] = frozenset()
    error: str | None = None


class Source(Protocol):
    """Where the ModelManager's models come from; it reconciles what it has loaded with
    ``plan()`` the same way for every source."""

    # Seconds between looks for changes made elsewhere; None: nothing to follow.
    poll_interval_s: float | None
    # Whether a load reads versions already loaded again (files on disk change in
    # place; registry artifacts never do).
    reloads: bool

    def revision(self) -> int: ...

    def plan(self) -> dict[str, ServingPlan]: ...

    def materialise(self, version: Any) -> tuple[ModelSource, VersionSource]: ...

    def release(self, model: str, number: int) -> None: ...

    def public(self, reason: str) -> str:
        """``reason`` as clients may read it: no server paths (ferry.serverpaths)."""
        ...


class DirectorySource:
    """``ferry serve``: model files and repositories on the server's own disk. Every
    version found is served; unversioned requests go to the highest."""

    poll_interval_s: float | None = None
    reloads = True

    def __init__(self, paths: Iterable[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        self._server_paths = server_paths(repositories=self.paths)
        self._found: dict[str, ModelSource] | None = None

    def discover(self) -> dict[str, ModelSource]:
        """Look at the paths now (logging what is skipped); the next plan uses this
        look instead of taking another."""
        self._found = discover(self.paths)
        return self._found

    def revision(self) -> int:
        return 0

    def plan(self) -> dict[str, ServingPlan]:
        found, self._found = self._found, None
        if found is None:
            found = discover(self.paths)
        return {
            name: ServingPlan({str(v.version): (source, v) for v in source.versions}, error=source.error)
            for name, source in found.items()
        }

    def materialise(self, version: tuple[ModelSource, VersionSource]) -> tuple[ModelSource, VersionSource]:
        return version

    def release(self, model: str, number: int) -> None:
        """Nothing to release: the files are the operator's."""

    def public(self, reason: str) -> str:
        return self._server_paths.scrub(reason)


def discover(paths: Iterable[Path]) -> dict[str, ModelSource]:
    """Models found under ``paths``, by name. Anything that is not a model is logged
    and skipped; a model with a broken config is returned with ``error`` set."""
    found: dict[str, ModelSource] = {}
    for path in paths:
        for source in _discover_one(Path(path)):
            if source.name in found:
                log.warning("model %r found twice; keeping the first one", source.name)
                continue
            found[source.name] = source
    return found


def _discover_one(path: Path) -> list[ModelSource]:
    if path.is_file():
        if path.suffix not in RUNTIME_BY_SUFFIX:
            log.warning("ignoring %s: not a model file (%s)", path, ", ".join(RUNTIME_BY_SUFFIX))
            return []
        if not is_model_name(path.stem):
            log.warning("ignoring %s: %r is not a valid model name", path, path.stem)
            return []
        return [ModelSource(path.stem, [VersionSource(1, path)])]
    if not path.is_dir():
        log.warning("ignoring %s: no such file or directory", path)
        return []
    if _version_dirs(path):
        # The path is one model's directory rather than a repository of models.
        source = _model_dir(path)
        return [source] if source else []
    sources = []
    for child in sorted(path.iterdir()):
        if child.name.startswith("."):
            continue
        if not child.is_dir():
            if child.suffix in RUNTIME_BY_SUFFIX:
                sources.extend(_discover_one(child))
            else:
                log.info("ignoring %s: not a model directory or model file", child)
            continue
        source = _model_dir(child)
        if source:
            sources.append(source)
    return sources


def _version_dirs(path: Path) -> list[tuple[int, Path]]:
    """``<number>/`` folders (ASCII digits within 64 bits, above 0), by number."""
    numbered = ((version_number(p.name), p) for p in path.iterdir() if p.is_dir())
    return sorted((number, p) for number, p in numbered if number)


def _model_dir(path: Path) -> ModelSource | None:
    if not is_model_name(path.name):
        log.warning("ignoring %s: %r is not a valid model name", path, path.name)
        return None
    versions = []
    for number, version_dir in _version_dirs(path):
        model_file = _model_file(version_dir)
        if model_file is None:
            log.warning("ignoring %s: no model file in it", version_dir)
            continue
        versions.append(VersionSource(number, model_file))
    if not versions:
        log.info("ignoring %s: no <version>/model.<ext> inside", path)
        return None
    source = ModelSource(path.name, versions)
    config_path = path / "config.yaml"
    if config_path.is_file():
        try:
            source.config = load_config(config_path)
        except ConfigError as exc:
            source.error = str(exc)
    return source


def _model_file(version_dir: Path) -> Path | None:
    candidates = [p for p in version_dir.iterdir() if p.is_file() and p.suffix in RUNTIME_BY_SUFFIX]
    named = [p for p in candidates if p.stem == "model"]
    if named:
        return sorted(named)[0]
    if len(candidates) == 1:
        return candidates[0]
    return None
