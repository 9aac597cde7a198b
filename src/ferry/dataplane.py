"""DataPlane: the one inference path behind every transport, and the metadata the
protocols report. Read ``infer`` top to bottom to follow a request."""

from __future__ import annotations

import time
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from ferry import __version__
from ferry.errors import FerryError, InvalidInput, ModelFailed
from ferry.inference import InferRequest, InferResponse
from ferry.manager import LoadedVersion, ModelManager
from ferry.metrics import status_of
from ferry.pipeline import classification
from ferry.requestinfo import RequestInfo
from ferry.signature import Signature, check_inputs

PayloadT = TypeVar("PayloadT", contravariant=True)
EncodedT = TypeVar("EncodedT", covariant=True)

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "model_configuration"]


class Codec(Protocol, Generic[PayloadT, EncodedT]):
    """A wire format: the transport's payload in, its encoded answer out."""

    # The ``protocol`` label of the metrics: "v2" or "v1".
    @property
    def protocol(self) -> str: ...

    def decode(self, payload: PayloadT, signature: Signature) -> InferRequest: ...

    def encode(self, response: InferResponse, request: InferRequest) -> EncodedT: ...


class DataPlane:
    def __init__(self, models: ModelManager) -> None:
        self.models = models

    async def infer(
        self, name: str, version: str | None, payload: Any, codec: Codec[Any, EncodedT], info: RequestInfo | None = None
    ) -> EncodedT:
        """``info``, when given, records the version that answered and when each step
        ended (for the access log and tracing)."""
        started = time.perf_counter_ns()
        # route: the version that answers (explicit, or the latest)
        model = self._route(name, version, codec.protocol, started)
        if info is not None:
            info.version = model.version
        # counted from here in the version's statistics and metrics (model.stats)
        model.stats.request_started()
        try:
            # shed load before spending time on decoding
            model.batcher.check_capacity()
            # decode the wire format, then validate against the signature
            request = codec.decode(payload, model.signature)
            check_inputs(model.signature, request.inputs, model.config.max_tensor_elements)
            wanted = _output_names(model, request)
            inputs = request.inputs
            pipeline = model.pipeline
            # preprocess (images, a Python model's own step), per request, in a thread
            if pipeline is not None and pipeline.changes_inputs:
                inputs = await pipeline.run_preprocess(inputs)
                if pipeline.images:
                    check_inputs(pipeline.model_signature, inputs)
            if info is not None:
                info.decoded = time.perf_counter_ns()
            # batch -> predict: queue with concurrent requests, run in a worker thread
            outputs = await model.batcher.submit(inputs, request.timeout_s, info)
            # postprocess: class names and scores, a Python model's own step
            if pipeline is not None:
                outputs = pipeline.postprocess(outputs)
            response = InferResponse(
                model_name=model.name,
                model_version=model.version,
                outputs=_select(model, outputs, wanted, request),
                id=request.id,
            )
            # encode in the caller's wire format
            encoded = codec.encode(response, request)
            if info is not None:
                info.answered = time.perf_counter_ns()
        except BaseException as exc:
            model.stats.record_request(False, time.perf_counter_ns() - started, codec.protocol, status_of(exc))
            raise
        model.stats.record_request(True, time.perf_counter_ns() - started, codec.protocol, 200)
        # shadow: copy an unversioned request to the model's shadow version, if it has one
        # (its answer is compared and counted, never returned; the answer is not delayed)
        if version is None and self.models.shadows:
            self._shadow(name, request, response)
        return encoded

    def _route(self, name: str, version: str | None, protocol: str, started: int) -> LoadedVersion:
        try:
            return self.models.get(name, version)
        except FerryError as exc:
            self.refused(name, protocol, exc.status, started)
            raise

    def refused(self, name: str, protocol: str, status: int, started: int) -> None:
        """Count a request no version answered: not routed, or refused before routing
        (no key, too large, wrong method). Counted with version "", and model "" for a
        name this server does not have, so unknown names create no series."""
        if self.models.metrics is not None:
            known = name if self.models.knows(name) else ""
            seconds = (time.perf_counter_ns() - started) / 1e9
            self.models.metrics.unrouted(known, protocol, status, seconds)

    def _shadow(self, name: str, request: InferRequest, response: InferResponse) -> None:
        shadow = self.models.shadows.get(name)
        if shadow is not None:
            shadow.copy(request, response.outputs)

    # -- metadata -------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "ferry", "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self.models.get(name, version)
        versions = [model.version] if version is not None else self.models.versions_of(name)
        return {
            "name": model.name,
            "versions": versions,
            "platform": model.platform,
            "inputs": [s.to_json() for s in model.signature.inputs],
            "outputs": [s.to_json() for s in model.signature.outputs],
        }

    def model_ready(self, name: str, version: str | None) -> None:
        """Raises unless the model (version) is ready to serve."""
        self.models.get(name, version)

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's model configuration, as tritonclient's get_model_config expects:
        with batching on, ``dims`` leave out the batch dimension."""
        model = self.models.get(name, version)
        max_batch = model.config.max_batch_size if model.batchable else 0

        def tensor(spec: Any) -> dict[str, Any]:
            dims = list(spec.shape[1:] if max_batch else spec.shape)
            return {"name": spec.name, "data_type": f"TYPE_{_triton_type(spec.datatype)}", "dims": dims}

        config: dict[str, Any] = {
            "name": model.name,
            "platform": model.platform,
            "backend": model.platform.split("_")[0],
            "max_batch_size": max_batch,
            "input": [tensor(s) for s in model.signature.inputs],
            "output": [tensor(s) for s in model.signature.outputs],
            "instance_group": [{"count": model.config.instances, "kind": "KIND_CPU"}],
        }
        if max_batch:
            config["dynamic_batching"] = {
                "max_queue_delay_microseconds": int(model.config.max_delay_ms * 1000),
            }
        return config

    def statistics(self, name: str | None, version: str | None) -> dict[str, Any]:
        if name is None:
            loaded = self.models.loaded()
        elif version is None:
            self.models.get(name)
            loaded = [v for v in self.models.loaded() if v.name == name]
        else:
            loaded = [self.models.get(name, version)]
        return {"model_stats": [v.stats.to_json(v.name, v.version) for v in loaded]}


def _triton_type(datatype: str) -> str:
    return "STRING" if datatype == "BYTES" else datatype


def _output_names(model: LoadedVersion, request: InferRequest) -> list[str]:
    available = model.signature.output_names
    if request.outputs is None:
        return list(available)
    names = []
    for requested in request.outputs:
        if requested.name not in available:
            raise InvalidInput(f"unknown output {requested.name!r}; the model has: {', '.join(available)}")
        names.append(requested.name)
    return names


def _select(
    model: LoadedVersion, outputs: dict[str, np.ndarray], wanted: list[str], request: InferRequest
) -> dict[str, np.ndarray]:
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
