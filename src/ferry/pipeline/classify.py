"""Class scores -> names: the ``classes``/``scores`` outputs of a ``postprocess`` step,
and Triton's classification extension (``"parameters": {"classification": k}`` on a
requested output answers ``"score:index:label"`` strings, as tritonclient's
``class_count`` expects)."""

from __future__ import annotations

import numpy as np

from ferry.config import PostprocessStep
from ferry.errors import ConfigError, InvalidInput
from ferry.signature import TensorSpec

CLASSES, SCORES = "classes", "scores"


class Classify:
    def __init__(self, spec: TensorSpec, step: PostprocessStep, labels: list[str]) -> None:
        if spec.datatype not in ("FP16", "FP32", "FP64"):
            raise ConfigError(f"postprocess: output {spec.name!r} is {spec.datatype}; class scores must be floats")
        width = spec.shape[-1] if spec.shape else -1
        if width > 0 and width != len(labels):
            raise ConfigError(f"postprocess: output {spec.name!r} has {width} classes but {len(labels)} labels")
        self.output = spec.name
        self.labels = np.array(labels, dtype=object)
        self.top_k = min(step.top_k, len(labels))
        self.softmax = step.softmax
        batch = spec.shape[:-1]
        self.public = (
            TensorSpec(CLASSES, "BYTES", (*batch, self.top_k)),
            TensorSpec(SCORES, "FP32", (*batch, self.top_k)),
        )

    def __call__(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores = np.asarray(outputs[self.output], dtype=np.float32)
        if scores.shape[-1] != len(self.labels):
            raise InvalidInput(f"output {self.output!r} has {scores.shape[-1]} classes, not {len(self.labels)}")
        if self.softmax:
            scores = softmax(scores)
        best = top_indices(scores, self.top_k)
        return {
            **outputs,
            CLASSES: self.labels[best],
            SCORES: np.take_along_axis(scores, best, axis=-1),
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    result: np.ndarray = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k highest scores along the last axis, highest first."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    return order[..., :k]


def triton_classification(name: str, values: np.ndarray, k: object, labels: list[str] | None) -> np.ndarray:
    """Triton's classification extension: for each row, the k highest values as
    ``"value:index:label"`` (``"value:index"`` without labels), highest first."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f'output {name!r}: "classification" must be a positive integer, not {k!r}')
    if values.dtype.kind not in "fiu" or values.ndim == 0:
        raise InvalidInput(f"output {name!r} holds no class scores; it cannot be classified")
    best = top_indices(values, min(k, values.shape[-1]))
    picked = np.take_along_axis(values, best, axis=-1).astype(np.float64)
    # numpy's string functions loop in C: a million rows take a fraction of a second.
    text = np.char.add(np.char.add(np.char.mod("%f", picked), ":"), best.astype(str))
    if labels is not None:
        names = np.array([*labels, ""], dtype=str)
        known = np.where(best < len(labels), best, len(labels))
        text = np.where(best < len(labels), np.char.add(np.char.add(text, ":"), names[known]), text)
    return text.astype(object)
