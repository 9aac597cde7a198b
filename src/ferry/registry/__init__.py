"""The model registry: models, versions, stages and traffic in SQL (SQLite or
PostgreSQL), artifacts in an ArtifactStore. See docs/registry.md."""

from ferry.registry.cleanup import CleanupReport, cleanup, delete_version
from ferry.registry.db import connect, default_url, migrate
from ferry.registry.records import Model, Traffic, Version
from ferry.registry.repository import Registry
from ferry.registry.schema import VersionState

__all__ = [
    "CleanupReport",
    "Model",
    "Registry",
    "Traffic",
    "Version",
    "VersionState",
    "cleanup",
    "connect",
    "default_url",
    "delete_version",
    "migrate",
]
