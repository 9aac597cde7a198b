"""scikit-learn estimators. ``.skops`` files load without running code from the file;
pickle and joblib files can run anything when loaded, so they need the operator's trust
(``trusted: true`` in config.yaml on the server's disk, or ``ferry server --trust-model``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, InvalidInput
from ferry.runtimes.base import override_specs
from ferry.signature import Signature, TensorSpec, datatype_of

log = logging.getLogger("ferry.runtimes.sklearn")


class SklearnRuntime:
    batchable = True

    def __init__(self, estimator: Any, signature: Signature) -> None:
        self._estimator = estimator
        self.signature = signature
        self._input = signature.inputs[0].name
        self._has_proba = any(s.name == "probabilities" for s in signature.outputs)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        features = inputs[self._input]
        if features.dtype == object:
            features = np.vectorize(_text, otypes=[object])(features)
        try:
            outputs = {"label": np.asarray(self._estimator.predict(features))}
            if self._has_proba:
                outputs["probabilities"] = np.asarray(self._estimator.predict_proba(features))
        except ValueError as exc:
            # scikit-learn raises ValueError for inputs it cannot use (NaN, wrong width).
            raise InvalidInput(f"the model refused the input: {exc}") from None
        return outputs

    def close(self) -> None:
        self._estimator = None


def load(path: Path, config: ModelConfig) -> SklearnRuntime:
    estimator = _load_skops(path, config) if path.suffix == ".skops" else _load_pickle(path, config)
    if not hasattr(estimator, "predict"):
        raise ConfigError(f"{path.name} holds a {type(estimator).__name__}, which has no predict()")
    return SklearnRuntime(estimator, _signature(estimator, config))


def _load_skops(path: Path, config: ModelConfig) -> Any:
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ConfigError(f"{path.name} is not a readable .skops file: {exc}") from None
    allowed = set(config.trusted_types)
    refused = [t for t in untrusted if t not in allowed]
    if refused and not config.trusted:
        raise ConfigError(
            f"{path.name} contains types that skops does not trust by default: "
            f"{', '.join(refused)}. If you trust this file, its server's operator can allow them: "
            "trusted_types in the model's config.yaml for ferry serve, --trust-type TYPE for ferry server."
        )
    try:
        return sio.load(path, trusted=untrusted)
    except Exception as exc:
        raise ConfigError(f"skops cannot load {path.name}: {exc}") from None


def _load_pickle(path: Path, config: ModelConfig) -> Any:
    if not config.trusted:
        raise ConfigError(
            f"refusing to load {path.name}: pickle and joblib files run arbitrary code when "
            "loaded. Save the model with skops (.skops) instead, or, if you trust this file, its "
            "server's operator can allow it: trusted: true in the model's config.yaml for ferry serve, "
            "--trust-model NAME for ferry server."
        )
    import joblib

    log.warning("loading %s with joblib: the operator trusts this model", path.name)
    try:
        return joblib.load(path)
    except Exception as exc:
        raise ConfigError(f"cannot load {path.name}: {exc}") from None


def _signature(estimator: Any, config: ModelConfig) -> Signature:
    features = getattr(estimator, "n_features_in_", None)
    width = int(features) if features is not None else -1
    inputs: tuple[TensorSpec, ...] = (TensorSpec("input", "FP32", (-1, width)),)
    if config.inputs:
        if len(config.inputs) != 1:
            raise ConfigError("a scikit-learn model takes exactly one input tensor")
        inputs = (config.inputs[0].spec(),)
    outputs = [TensorSpec("label", _label_datatype(estimator), (-1,))]
    if hasattr(estimator, "predict_proba") and hasattr(estimator, "classes_"):
        outputs.append(TensorSpec("probabilities", "FP64", (-1, len(estimator.classes_))))
    return Signature(inputs, override_specs(tuple(outputs), config.outputs))


def _label_datatype(estimator: Any) -> str:
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return "FP64"
    return datatype_of(np.asarray(classes))


def _text(item: Any) -> Any:
    return item.decode("utf-8") if isinstance(item, bytes) else item
