"""Find models on disk: single model files, or repositories laid out as
``<repo>/<name>/<version>/model.<ext>`` with an optional ``<repo>/<name>/config.yaml``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ferry.config import ModelConfig, load_config
from ferry.errors import ConfigError

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
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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
        if not MODEL_NAME.match(path.stem):
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


def _version_dirs(path: Path) -> list[Path]:
    # isascii: str.isdigit() is also true of names such as "²" that int() refuses.
    return sorted(
        (p for p in path.iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit() and int(p.name) > 0),
        key=lambda p: int(p.name),
    )


def _model_dir(path: Path) -> ModelSource | None:
    if not MODEL_NAME.match(path.name):
        log.warning("ignoring %s: %r is not a valid model name", path, path.name)
        return None
    versions = []
    for version_dir in _version_dirs(path):
        model_file = _model_file(version_dir)
        if model_file is None:
            log.warning("ignoring %s: no model file in it", version_dir)
            continue
        versions.append(VersionSource(int(version_dir.name), model_file))
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
