"""Loading a model's runtimes and warming them up with synthetic inputs, so the first
real request pays no lazy initialisation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, FerryError
from ferry.runtimes import Runtime, load_runtime
from ferry.signature import TensorSpec


def load_failure(exc: Exception) -> str:
    if isinstance(exc, FerryError):
        return exc.message
    if isinstance(exc, ConfigError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def build_runtimes(runtime_name: str, path: Path, config: ModelConfig) -> tuple[list[Runtime], float]:
    """In a thread: load each instance and warm it up with synthetic inputs, so the
    first real request pays no lazy initialisation."""
    runtimes = [load_runtime(runtime_name, path, config) for _ in range(config.instances)]
    if not config.warmup:
        return runtimes, 0.0
    inputs = synthetic_inputs(runtimes[0].signature.inputs)
    hooks = getattr(runtimes[0], "hooks", None)
    if hooks is not None:  # a Python model's predict takes what its preprocess makes
        try:
            inputs = hooks.preprocess(inputs)
        except Exception as exc:
            for r in runtimes:
                r.close()
            raise ConfigError(
                f"warm-up: preprocess refused synthetic inputs ({type(exc).__name__}: {exc}); "
                "set warmup: false in config.yaml"
            ) from None
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
