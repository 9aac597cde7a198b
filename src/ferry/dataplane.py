"""DataPlane: everything a transport (REST V2, V1, gRPC) serves, and the one place that
knows how: inference, health, metadata, statistics and the repository extension.
Transports parse, authenticate, call it and encode; they never reach the ModelManager.
Read ``infer`` top to bottom to follow a request."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ferry import __version__
from ferry.compute import Tensors, compute
from ferry.decoder import Decoder
from ferry.errors import FerryError, NotFound, Unavailable
from ferry.inference import InferRequest, InferResponse
from ferry.logs import REQUEST_ID
from ferry.manager import LoadedVersion, ModelManager
from ferry.metrics import status_of
from ferry.requestinfo import RequestInfo
from ferry.signature import Signature

if TYPE_CHECKING:
    from ferry.metrics import Metrics

PayloadT = TypeVar("PayloadT", contravariant=True)
EncodedT = TypeVar("EncodedT", covariant=True)

EXTENSIONS = ["binary_tensor_data", "classification", "model_repository", "statistics", "model_configuration"]


class Codec(Protocol, Generic[PayloadT, EncodedT]):
    """A wire format: the transport's payload in, its encoded answer out."""

    # The ``protocol`` label of the metrics: "v2", "v1" or "grpc".
    @property
    def protocol(self) -> str: ...

    def decode(self, payload: PayloadT, signature: Signature) -> InferRequest: ...

    # Bytes of text ``decode`` would parse: big ones are decoded off the event loop.
    def parse_size(self, payload: PayloadT) -> int: ...

    def encode(self, response: InferResponse, request: InferRequest) -> EncodedT: ...


class DataPlane:
    def __init__(
        self,
        models: ModelManager,
        metrics: Metrics | None = None,
        ready_despite_failures: bool = False,
        decoder: Decoder | None = None,
    ) -> None:
        """``metrics``: where requests no version answered are counted (the versions'
        own requests are counted by their stats). ``ready_despite_failures``: a model
        that failed to load does not keep the server from being ready. ``decoder``:
        decodes big bodies off the event loop (by default every body inline)."""
        self._models = models
        self._metrics = metrics
        self._ready_despite_failures = ready_despite_failures
        self._decoder = decoder or Decoder(0)

    def close(self) -> None:
        """Stop the decoding workers, if any were started."""
        self._decoder.close()

    # -- inference --------------------------------------------------------------------

    async def infer(
        self, name: str, version: str | None, payload: Any, codec: Codec[Any, EncodedT], info: RequestInfo | None = None
    ) -> EncodedT:
        """``info``, when given, records the version that answered and when each step
        ended (for the access log and tracing)."""
        started = time.perf_counter_ns()
        # route: the version that answers (explicit, a canary split, or the default)
        model = self._route(name, version, codec.protocol, started)
        if info is not None:
            info.version = model.version
        # counted from here in the version's statistics and metrics (model.stats)
        model.stats.request_started()
        try:
            # shed load before spending time on decoding
            model.batcher.check_capacity()
            # decode the wire format (a big body in a worker process: it would stall every
            # other request on the event loop)
            request = await self._decoder.decode(codec, payload, model.signature)
            # validate -> preprocess -> batch/predict -> postprocess -> select outputs, or
            # the answer to the same request from the version's cache
            outputs = await self._compute(model, request, info)
            response = InferResponse(
                model_name=model.name,
                model_version=model.version,
                outputs=outputs,
                # Always an id (the KServe SDK requires one): the client's, else the request id.
                id=request.id or REQUEST_ID.get(),
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
        if version is None:
            shadow = self._models.shadow(name)
            if shadow is not None:
                shadow.copy(request, response.outputs)
        return encoded

    @staticmethod
    async def _compute(model: LoadedVersion, request: InferRequest, info: RequestInfo | None) -> Tensors:
        cache = model.cache
        if cache is None:
            return await compute(model, request, info)
        started = time.perf_counter_ns()
        key = cache.key(request)
        outputs = await cache.get(key)
        looked_up = time.perf_counter_ns()
        if outputs is not None:
            model.stats.record_cache(True, looked_up - started)
            if info is not None:
                info.decoded = looked_up
            return outputs
        outputs = await compute(model, request, info)
        stored = time.perf_counter_ns()
        await cache.put(key, outputs)
        model.stats.record_cache(False, looked_up - started + time.perf_counter_ns() - stored)
        return outputs

    def _route(self, name: str, version: str | None, protocol: str, started: int) -> LoadedVersion:
        try:
            return self._models.get(name, version)
        except FerryError as exc:
            self.refused(name, protocol, exc.status, started)
            raise

    def refused(self, name: str, protocol: str, status: int, started: int) -> None:
        """Count a request no version answered: not routed, or refused before routing
        (no key, too large, wrong method). Counted with version "", and model "" for a
        name this server does not have, so unknown names create no series."""
        if self._metrics is not None:
            known = name if self._models.knows(name) else ""
            seconds = (time.perf_counter_ns() - started) / 1e9
            self._metrics.unrouted(known, protocol, status, seconds)

    def body_limit(self, name: str, server_limit: int) -> int:
        """The request size limit of model ``name``: its versions' ``max_body_bytes`` (the
        largest, as the version that answers is picked later), within the server's."""
        limits = [v.config.max_body_bytes for v in self._models.routed(name)]
        if not limits or None in limits:
            return server_limit
        return min(server_limit, max(limit for limit in limits if limit is not None))

    # -- health -----------------------------------------------------------------------

    def live(self) -> bool:
        """The process serves requests (it may still be loading its models)."""
        return True

    def unready_reason(self) -> str | None:
        """None when the server is ready: its first load has finished and every model it
        should serve has a version answering (and none failed, unless failures are
        allowed). Else why not, for the 503 and the log."""
        if not self._models.started:
            return "the server is still loading its models"
        waiting, failed = self._models.unready()
        if waiting:
            return f"still loading: {', '.join(waiting)}"
        if failed and not self._ready_despite_failures:
            return f"failed to load: {'; '.join(failed)} (--ready-despite-failures serves the rest)"
        return None

    def ready(self) -> bool:
        return self.unready_reason() is None

    def require_ready(self, name: str, version: str | None) -> None:
        """Raises unless the model (version) answers requests now: NotFound for one this
        server does not have (or unloaded), Unavailable while loading or failed."""
        self._models.get(name, version)

    def model_ready(self, name: str, version: str | None) -> bool:
        """Whether the model (version) answers requests now; NotFound for a model this
        server does not have, or a version it never had."""
        try:
            self._models.get(name, version)
        except Unavailable:
            return False
        except NotFound:
            if self._models.knows(name) and version is None:
                return False  # unloaded through the repository extension
            raise
        return True

    def public(self, message: str) -> str:
        """``message`` as a client may read it: the server's directories replaced by
        labels (ferry.serverpaths). Every transport's error answers go through it."""
        return self._models.public(message)

    # -- metadata -------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": "ferry", "version": __version__, "extensions": EXTENSIONS}

    def model_names(self) -> list[str]:
        return self._models.names()

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        model = self._models.get(name, version)
        versions = [model.version] if version is not None else [v.version for v in self._models.routed(name)]
        return {
            "name": model.name,
            "versions": versions,
            "platform": model.platform,
            "inputs": [s.to_json() for s in model.signature.inputs],
            "outputs": [s.to_json() for s in model.signature.outputs],
        }

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's model configuration, as tritonclient's get_model_config expects:
        with batching on, ``dims`` leave out the batch dimension."""
        model = self._models.get(name, version)
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
            loaded = self._models.loaded()
        elif version is None:
            self._models.get(name)
            loaded = [v for v in self._models.loaded() if v.name == name]
        else:
            loaded = [self._models.get(name, version)]
        return {"model_stats": [v.stats.to_json(v.name, v.version) for v in loaded]}

    # -- the repository extension -----------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Every model and version with its state (READY, LOADING, UNAVAILABLE) and why."""
        entries = self._models.index()
        return [e for e in entries if e["state"] == "READY"] if ready_only else entries

    async def load(self, name: str) -> None:
        """(Re)load model ``name``; returns once it serves (or raises why it does not)."""
        await self._models.load(name)

    async def unload(self, name: str) -> None:
        """Stop serving model ``name``: queued requests finish, then it is released."""
        await self._models.unload(name)


def _triton_type(datatype: str) -> str:
    return "STRING" if datatype == "BYTES" else datatype
