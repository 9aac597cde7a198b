"""Python models: a ``model.py`` defining a subclass of ``ferry.Model``."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import threading
from pathlib import Path
from types import ModuleType

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, FerryError, InvalidInput, first_line
from ferry.model import Model
from ferry.runtimes.base import declared_signature
from ferry.signature import Signature


class PythonRuntime:
    def __init__(self, model: Model, signature: Signature) -> None:
        self._model = model
        self.signature = signature
        self.batchable = bool(type(model).batchable) and signature.batch_axis
        self.deterministic = bool(type(model).deterministic)
        kind = type(model)
        overrides = kind.preprocess is not Model.preprocess or kind.postprocess is not Model.postprocess
        # The model's own per-request steps, for ferry.pipeline (None: it has none).
        self.hooks: Model | None = model if overrides else None

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._model.predict(inputs)
        except FerryError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"the model refused the input: {exc}") from None
        return {name: np.asarray(value) for name, value in outputs.items()}

    def close(self) -> None:
        self._model.close()


def load(path: Path, config: ModelConfig) -> PythonRuntime:
    module = _import(path)
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Model) and obj is not Model and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        found = ", ".join(c.__name__ for c in classes) or "none"
        raise ConfigError(f"{path.name} must define exactly one subclass of ferry.Model (found: {found})")
    model_class = classes[0]
    signature = declared_signature(config)
    if signature is None:
        if model_class.inputs is None or model_class.outputs is None:
            raise ConfigError(
                f"{model_class.__name__} declares no inputs/outputs; set them as class attributes or in config.yaml"
            )
        signature = Signature(tuple(model_class.inputs), tuple(model_class.outputs))
    model = model_class(path.parent, config.model_dump())
    try:
        model.load()
    except Exception as exc:
        raise ConfigError(f"{model_class.__name__}.load() failed: {type(exc).__name__}: {first_line(exc)}") from None
    return PythonRuntime(model, signature)


# sys.path and sys.modules are process-wide, and models load in concurrent threads.
_IMPORT_LOCK = threading.Lock()


def _import(path: Path) -> ModuleType:
    # A unique module name per file, so two versions of one model never share state.
    name = f"ferry_user_model_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path.name}")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    with _IMPORT_LOCK:
        before = set(sys.modules)
        # Let model.py import helper modules that sit beside it.
        sys.path.insert(0, folder)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise ConfigError(f"importing {path.name} failed: {type(exc).__name__}: {first_line(exc)}") from None
        finally:
            sys.path.remove(folder)
            # Forget helpers imported from beside model.py (model.py keeps its references),
            # so version 2's "import helpers" finds its own file, not version 1's.
            for added in set(sys.modules) - before:
                origin = getattr(sys.modules[added], "__file__", None) or ""
                if origin.startswith(folder + "/"):
                    del sys.modules[added]
    return module
