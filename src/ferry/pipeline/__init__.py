"""Pre- and post-processing around a model, per request: what config.yaml's
``preprocess``/``postprocess`` steps ask for (images in, class names out) and a Python
model's own ``preprocess``/``postprocess``. The model's ``predict`` in between is still
batched. Clients see the signature after processing (``Pipeline.signature``)."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, FerryError, InvalidInput, ModelFailed, Unavailable
from ferry.pipeline.classify import Classify, triton_classification
from ferry.signature import Signature

if TYPE_CHECKING:
    from ferry.pipeline.image import ImageInput

Tensors = dict[str, np.ndarray]
log = logging.getLogger("ferry.pipeline")
# Threads per version for pre-processing (decoding images is CPU work: more threads than
# cores only queue), and how many requests may wait for them before 503.
WORKERS = min(4, os.cpu_count() or 1)
MAX_PENDING_PER_WORKER = 16


class Hooks(Protocol):
    """A ``ferry.Model`` that defines its own ``preprocess``/``postprocess``."""

    def preprocess(self, inputs: Tensors) -> Tensors: ...

    def postprocess(self, outputs: Tensors) -> Tensors: ...


@dataclass
class Pipeline:
    signature: Signature  # what clients see
    model_signature: Signature  # what the model's predict takes and returns
    images: list[ImageInput] = field(default_factory=list)
    classifiers: list[Classify] = field(default_factory=list)
    hooks: Hooks | None = None
    # Output name -> class names, for Triton's classification extension.
    labels: dict[str, list[str]] = field(default_factory=dict)

    _executor: ThreadPoolExecutor | None = field(default=None, repr=False)
    _pending: int = 0

    @property
    def changes_inputs(self) -> bool:
        return bool(self.images) or self.hooks is not None

    async def run_preprocess(self, inputs: Tensors) -> Tensors:
        """``preprocess`` in this version's own few threads, never the event loop's shared
        pool (key reloads and audit writes run there): slow images from one client cannot
        starve the rest of the server. Beyond a few requests waiting: 503."""
        if self._pending >= MAX_PENDING_PER_WORKER * WORKERS:
            raise Unavailable("the model's pre-processing is busy; retry shortly")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="ferry-preprocess")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self.preprocess, inputs)
        finally:
            self._pending -= 1

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def preprocess(self, inputs: Tensors) -> Tensors:
        """One request's inputs, as clients send them -> as the model takes them. Decoding
        images takes milliseconds: the data plane runs this in a worker thread."""
        inputs = dict(inputs)
        for image in self.images:
            inputs[image.name] = image(inputs[image.name])
        if self.hooks is not None:
            inputs = _user_step("preprocess", self.hooks.preprocess, inputs)
        return inputs

    def postprocess(self, outputs: Tensors) -> Tensors:
        if self.hooks is not None:
            outputs = _user_step("postprocess", self.hooks.postprocess, outputs)
        for classify in self.classifiers:
            outputs = classify(outputs)
        return outputs


def classification(name: str, values: np.ndarray, k: object, pipeline: Pipeline | None) -> np.ndarray:
    labels = pipeline.labels.get(name) if pipeline is not None else None
    return triton_classification(name, values, k, labels)


def build_pipeline(config: ModelConfig, signature: Signature, hooks: Hooks | None) -> Pipeline | None:
    """The pipeline config.yaml and the model ask for; None when there is nothing to do."""
    if not config.preprocess and not config.postprocess and hooks is None:
        return None
    inputs = {spec.name: spec for spec in signature.inputs}
    outputs = {spec.name: spec for spec in signature.outputs}
    images = []
    if config.preprocess:
        from ferry.pipeline.image import ImageInput  # Pillow, only for image models
    for step in config.preprocess:
        name = _pick(step.input, inputs, "preprocess", "input")
        image = ImageInput(inputs[name], step.image)
        images.append(image)
        inputs[name] = image.public
    classifiers = []
    labels = {}
    for post in config.postprocess:
        name = _pick(post.output, outputs, "postprocess", "output")
        if not isinstance(post.labels, list):
            raise ConfigError("postprocess: labels must be a list or a file beside config.yaml")
        classify = Classify(outputs[name], post, post.labels)
        classifiers.append(classify)
        labels[name] = post.labels
        for spec in classify.public:
            if spec.name in outputs:
                raise ConfigError(f"postprocess adds output {spec.name!r}, which the model already has")
            outputs[spec.name] = spec
    public = Signature(tuple(inputs.values()), tuple(outputs.values()))
    return Pipeline(public, signature, images, classifiers, hooks, labels)


def _pick(name: str | None, specs: dict[str, Any], step: str, kind: str) -> str:
    if name is None:
        if len(specs) != 1:
            raise ConfigError(f"{step}: the model has several {kind}s ({', '.join(specs)}): name one with {kind}:")
        return next(iter(specs))
    if name not in specs:
        raise ConfigError(f"{step}: the model has no {kind} {name!r} (it has: {', '.join(specs)})")
    return name


def _user_step(what: str, step: Any, tensors: Tensors) -> Tensors:
    try:
        result = step(tensors)
    except FerryError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"the model's {what} refused the input: {exc}") from None
    except Exception as exc:
        log.exception("the model's %s failed", what)
        raise ModelFailed(f"the model's {what} failed ({type(exc).__name__}); see the server log") from exc
    if not isinstance(result, dict):
        raise ModelFailed(f"the model's {what} must return a dict of arrays, not {type(result).__name__}")
    return {name: np.asarray(value) for name, value in result.items()}
