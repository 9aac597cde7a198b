"""Pre- and post-processing around a model, per request: what config.yaml's
``preprocess``/``postprocess`` steps ask for (images in, class names out) and a Python
model's own ``preprocess``/``postprocess``. The model's ``predict`` in between is still
batched. Clients see the signature after processing (``Pipeline.signature``)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, FerryError, InvalidInput, ModelFailed, PayloadTooLarge, Unavailable
from ferry.pipeline.classify import Classify, triton_classification
from ferry.signature import Signature

if TYPE_CHECKING:
    from ferry.pipeline.image import ImageInput

Tensors = dict[str, np.ndarray]
T = TypeVar("T")
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
    _closed: bool = False

    @property
    def changes_inputs(self) -> bool:
        return bool(self.images) or self.hooks is not None

    @property
    def pending(self) -> int:
        """Requests in pre-processing now (decoding, or waiting for a thread)."""
        return self._pending

    async def run_preprocess(self, inputs: Tensors) -> Tensors:
        """One request's inputs, as clients send them -> as the model takes them, in
        this version's own few threads, never the event loop's shared pool (key reloads
        and audit writes run there). Beyond a few requests waiting: 503.

        Images are refused from their headers first (each image's ``max_pixels``, the
        request's ``max_request_pixels``), then decoded one per thread job. The request
        awaits its images here, between jobs, so cancelling it (its client left, its
        timeout passed) queues no more of them: at most the ones already running finish.
        And it never queues more than ``WORKERS`` at once, so the pool's FIFO queue
        interleaves concurrent requests image by image: a one-image request waits for
        about one image per busy thread, not behind all 64 of a large request."""
        if self._pending >= MAX_PENDING_PER_WORKER * WORKERS:
            raise Unavailable("the model's pre-processing is busy; retry shortly")
        self._pending += 1
        try:
            inputs = dict(inputs)
            if self.images:
                await self._in_thread(self._check_pixels, inputs)
                for image in self.images:
                    inputs[image.name] = await self._decode_images(image, inputs[image.name])
            if self.hooks is not None:
                inputs = await self._in_thread(_user_step, "preprocess", self.hooks.preprocess, inputs)
            return inputs
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _submit(self, work: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        if self._closed:
            raise Unavailable("the model is being unloaded; try again")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="ferry-preprocess")
        return asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    async def _in_thread(self, work: Callable[..., T], *args: Any) -> T:
        return await self._submit(work, *args)

    def _check_pixels(self, inputs: Tensors) -> None:
        """Refuse the request before any pixel is decoded: each image within its own
        limit (400), all of them within the request's budget (413). Headers only."""
        budget = min(image.config.max_request_pixels for image in self.images)
        total = 0
        for image in self.images:
            images = inputs[image.name]
            image.check(images)
            for row, item in enumerate(images):
                total += image.pixels(item, row)
                if total > budget:
                    raise PayloadTooLarge(
                        f"the images of this request have more than {budget} pixels in all (at least {total}); "
                        f"the limit per request is {budget} (image.max_request_pixels)"
                    )

    async def _decode_images(self, image: ImageInput, images: np.ndarray) -> np.ndarray:
        """Each image in its own thread job, at most WORKERS at a time (see run_preprocess);
        the first bad image stops the rest."""
        decoded: list[np.ndarray | None] = [None] * len(images)
        running: dict[asyncio.Future[np.ndarray], int] = {}
        try:
            for row, item in enumerate(images):
                while len(running) >= WORKERS:
                    await _collect(running, decoded)
                running[self._submit(image.decode, item, row)] = row
            while running:
                await _collect(running, decoded)
        finally:
            for future in running:  # cancelled or failed: drop what has not started
                future.cancel()
        return np.stack(decoded)  # type: ignore[arg-type]  # every row is filled here

    def postprocess(self, outputs: Tensors) -> Tensors:
        if self.hooks is not None:
            outputs = _user_step("postprocess", self.hooks.postprocess, outputs)
        for classify in self.classifiers:
            outputs = classify(outputs)
        return outputs


async def _collect(running: dict[asyncio.Future[np.ndarray], int], decoded: list[np.ndarray | None]) -> None:
    """Wait for one or more of ``running`` and put their arrays in ``decoded``; the
    first error (by row) is raised, after every finished job's result is read."""
    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    failed: list[BaseException] = []
    for future in sorted(done, key=running.__getitem__):
        row = running.pop(future)
        if future.cancelled():  # by close(): the version is being unloaded
            failed.append(Unavailable("the model is being unloaded; try again"))
            continue
        error = future.exception()
        if error is None:
            decoded[row] = future.result()
        else:
            failed.append(error)
    if failed:
        raise failed[0]


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
