"""The runtime contract and the dispatch from a runtime name to its module."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ferry.config import ModelConfig, TensorConfig
from ferry.errors import ConfigError
from ferry.signature import Signature, TensorSpec

_MODULES = {
    "onnx": "ferry.runtimes.onnx",
    "sklearn": "ferry.runtimes.sklearn",
    "torch": "ferry.runtimes.torch",
    "python": "ferry.runtimes.python",
}


@runtime_checkable
class Runtime(Protocol):
    signature: Signature
    # True when predict accepts several requests stacked along the first axis.
    batchable: bool

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


def load_runtime(runtime: str, path: Path, config: ModelConfig) -> Runtime:
    """Load ``path`` with the named runtime. Raises ConfigError with a readable reason
    when the file, its config or the runtime's library is unusable."""
    try:
        module = importlib.import_module(_MODULES[runtime])
    except KeyError:
        raise ConfigError(f"unknown runtime {runtime!r}") from None
    loaded: Runtime = module.load(path, config)
    return loaded


def declared_signature(config: ModelConfig) -> Signature | None:
    """The signature config.yaml declares, when it declares both sides."""
    if config.inputs is None or config.outputs is None:
        return None
    return Signature(tuple(t.spec() for t in config.inputs), tuple(t.spec() for t in config.outputs))


def override_specs(found: tuple[TensorSpec, ...], configured: list[TensorConfig] | None) -> tuple[TensorSpec, ...]:
    """config.yaml may refine what the file says (say, a fixed size where the graph
    has -1); the names must be the model's own."""
    if not configured:
        return found
    declared = [t.spec() for t in configured]
    known = {s.name for s in found}
    unknown = [s.name for s in declared if s.name not in known]
    if unknown:
        raise ConfigError(
            f"config.yaml declares tensor(s) {', '.join(unknown)} that the model does not have "
            f"(it has: {', '.join(sorted(known))})"
        )
    return tuple(declared)
