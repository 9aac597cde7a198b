"""The one compute path of a decoded request on one loaded version: validate ->
preprocess -> batch/predict -> postprocess -> select outputs. The data plane runs it for
the version that answers, and shadow traffic for the version that gets a copy, so both
see the same pipeline (images decoded, classes named) and their answers compare."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import numpy as np

from ferry.errors import InvalidInput, ModelFailed, Unavailable
from ferry.inference import InferRequest
from ferry.pipeline import classification
from ferry.signature import check_inputs

if TYPE_CHECKING:
    from ferry.manager import LoadedVersion
    from ferry.requestinfo import RequestInfo

Tensors = dict[str, np.ndarray]


async def compute(model: LoadedVersion, request: InferRequest, info: RequestInfo | None = None) -> Tensors:
    """The outputs ``request`` asked for, computed by ``model``. ``info``, when given,
    records when decoding and validation ended."""
    # validate against the signature clients see, and the outputs asked for
    check_inputs(model.signature, request.inputs, model.config.max_tensor_elements)
    wanted = output_names(model, request)
    inputs = request.inputs
    pipeline = model.pipeline
    timeout_s = request.timeout_s
    # preprocess (images, a Python model's own step), per request, in threads, within
    # the request's timeout: past it the request is cancelled and decodes no more images
    if pipeline is not None and pipeline.changes_inputs:
        limit = model.config.timeout_ms / 1000 if timeout_s is None else min(timeout_s, model.config.timeout_ms / 1000)
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                inputs = await pipeline.run_preprocess(inputs)
        except TimeoutError:
            raise Unavailable(f"the request timed out after {limit:g} s in pre-processing") from None
        if pipeline.images:
            check_inputs(pipeline.model_signature, inputs)
        timeout_s = max(limit - (time.monotonic() - started), 0.001)  # what is left for the queue
    if info is not None:
        info.decoded = time.perf_counter_ns()
    # batch -> predict: queue with concurrent requests, run in a worker thread
    outputs = await model.batcher.submit(inputs, timeout_s, info)
    # postprocess: class names and scores, a Python model's own step
    if pipeline is not None:
        outputs = pipeline.postprocess(outputs)
    return select(model, outputs, wanted, request)


def output_names(model: LoadedVersion, request: InferRequest) -> list[str]:
    """The outputs to answer: the requested ones (each once), else every output."""
    available = model.signature.output_names
    if request.outputs is None:
        return list(available)
    names: list[str] = []
    for requested in request.outputs:
        if requested.name not in available:
            raise InvalidInput(f"unknown output {requested.name!r}; the model has: {', '.join(available)}")
        if requested.name in names:
            raise InvalidInput(f"output {requested.name!r} is requested more than once")
        names.append(requested.name)
    return names


def select(model: LoadedVersion, outputs: Tensors, wanted: list[str], request: InferRequest) -> Tensors:
    """The requested outputs, in the datatypes the metadata advertises (a Python model
    that computes FP64 for a declared FP32 output answers FP32); an output requested
    with ``"classification": k`` as Triton's ``"score:index:label"`` strings."""
    missing = [n for n in wanted if n not in outputs]
    if missing:
        raise ModelFailed(f"the model did not return output(s) {', '.join(missing)}")
    classify = {
        o.name: o.parameters["classification"] for o in request.outputs or () if "classification" in o.parameters
    }
    selected = {}
    for name in wanted:
        array = outputs[name]
        spec = model.signature.output(name)
        if name in classify:
            array = classification(name, array, classify[name], model.pipeline)
        elif spec is not None and spec.datatype != "BYTES" and array.dtype != spec.dtype:
            array = array.astype(spec.dtype)
        selected[name] = array
    return selected
