"""Runtimes turn a model file into ``predict(dict[str, ndarray]) -> dict[str, ndarray]``.
Each lives in its own module and imports its heavy library only when a model needs it."""

from ferry.runtimes.base import Runtime, load_runtime

__all__ = ["Runtime", "load_runtime"]
