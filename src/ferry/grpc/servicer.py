"""The Open Inference Protocol's ``GRPCInferenceService``: a thin transport over the
DataPlane, like the REST routes. Each call: a request id, the key from the metadata,
the data plane, the answer or the FerryError's gRPC status, an access log line."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from ferry.codecs.grpc import GrpcCodec
from ferry.errors import CLIENT_CLOSED, FerryError, InvalidInput, PayloadTooLarge, RateLimited, Unavailable
from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from ferry.grpc.protos import model_config_pb2 as config_pb
from ferry.http.access import incoming_id
from ferry.http.errors import INTERNAL_ERROR, is_server_fault
from ferry.logs import REQUEST_ID, one_line
from ferry.requestinfo import RequestInfo
from ferry.security.audit import AuditEvent, utcnow
from ferry.security.auth import presented_key
from ferry.security.keys import ApiKey, Scope

if TYPE_CHECKING:
    from ferry.dataplane import DataPlane
    from ferry.security.audit_writer import AuditWriter
    from ferry.security.auth import Authenticator
    from ferry.settings import Settings
    from ferry.tracing import InferTracing

log = logging.getLogger("ferry.grpc")
access = logging.getLogger("ferry.access")

SERVICE = "inference.GRPCInferenceService"
T = TypeVar("T")
Metadata = Sequence[tuple[str, str | bytes]]
# How many requests of one stream are computed at once (so they can share batches);
# the stream's reader waits beyond that.
STREAM_WINDOW = 64


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        plane: DataPlane,
        settings: Settings,
        auth: Authenticator | None = None,
        tracing: InferTracing | None = None,
        audit: AuditWriter | None = None,
    ) -> None:
        self._plane = plane
        self._auth = auth
        self._tracing = tracing
        self._audit_writer = audit
        self._access_log = settings.access_log
        self._limit = settings.max_body_bytes
        self._codec = GrpcCodec(settings.max_tensor_elements)
        # A RequestInfo is made per request only when something reads it.
        self._want_info = settings.access_log or tracing is not None

    # -- health and metadata --------------------------------------------------------

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext) -> Any:
        return await self._call(context, "ServerLive", None, "", lambda key: _now(pb.ServerLiveResponse(live=True)))

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        ready = pb.ServerReadyResponse(ready=self._plane.ready())
        return await self._call(context, "ServerReady", None, "", lambda key: _now(ready))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work(key: ApiKey | None) -> pb.ModelReadyResponse:
            return pb.ModelReadyResponse(ready=self._plane.model_ready(request.name, request.version or None))

        return await self._call(context, "ModelReady", Scope.READ, request.name, work)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work(key: ApiKey | None) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(**self._plane.server_metadata())

        return await self._call(context, "ServerMetadata", Scope.READ, "", work)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work(key: ApiKey | None) -> pb.ModelMetadataResponse:
            doc = self._plane.model_metadata(request.name, request.version or None)
            tensors = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=doc["name"],
                versions=doc["versions"],
                platform=doc["platform"],
                inputs=[tensors(**spec) for spec in doc["inputs"]],
                outputs=[tensors(**spec) for spec in doc["outputs"]],
            )

        return await self._call(context, "ModelMetadata", Scope.READ, request.name, work)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work(key: ApiKey | None) -> pb.ModelConfigResponse:
            doc = self._plane.model_config(request.name, request.version or None)
            config = config_pb.ModelConfig(
                name=doc["name"],
                platform=doc["platform"],
                backend=doc["backend"],
                max_batch_size=doc["max_batch_size"],
                input=[config_pb.ModelInput(**_tensor_config(t)) for t in doc["input"]],
                output=[config_pb.ModelOutput(**_tensor_config(t)) for t in doc["output"]],
                instance_group=[
                    config_pb.ModelInstanceGroup(
                        count=g["count"], kind=config_pb.ModelInstanceGroup.Kind.Value(g["kind"])
                    )
                    for g in doc["instance_group"]
                ],
            )
            if "dynamic_batching" in doc:
                config.dynamic_batching.CopyFrom(config_pb.ModelDynamicBatching(**doc["dynamic_batching"]))
            return pb.ModelConfigResponse(config=config)

        return await self._call(context, "ModelConfig", Scope.READ, request.name, work)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work(key: ApiKey | None) -> pb.ModelStatisticsResponse:
            doc = self._plane.statistics(request.name or None, request.version or None)
            visible = [entry for entry in doc["model_stats"] if key is None or key.may_use(entry["name"])]
            return pb.ModelStatisticsResponse(model_stats=[_statistics(entry) for entry in visible])

        return await self._call(context, "ModelStatistics", Scope.READ, request.name or None, work)

    # -- the repository extension ---------------------------------------------------

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext) -> Any:
        async def work(key: ApiKey | None) -> pb.RepositoryIndexResponse:
            entries = self._plane.repository_index(ready_only=request.ready)
            index = pb.RepositoryIndexResponse.ModelIndex
            return pb.RepositoryIndexResponse(
                models=[index(**e) for e in entries if key is None or key.may_use(e["name"])]
            )

        return await self._call(context, "RepositoryIndex", Scope.READ, None, work)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        async def work(key: ApiKey | None) -> pb.RepositoryModelLoadResponse:
            overrides = sorted(k for k in request.parameters if k == "config" or k.startswith("file:"))
            if overrides:
                raise InvalidInput(
                    f"loading with {', '.join(overrides)} is not supported: put the files and "
                    "config.yaml in the model repository and load by name"
                )
            await self._plane.load(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._call(context, "RepositoryModelLoad", Scope.DEPLOY, request.model_name, work)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> Any:
        async def work(key: ApiKey | None) -> pb.RepositoryModelUnloadResponse:
            await self._plane.unload(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._call(context, "RepositoryModelUnload", Scope.DEPLOY, request.model_name, work)

    # -- inference ------------------------------------------------------------------

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> Any:
        metadata = context.invocation_metadata() or ()
        info = RequestInfo(protocol="grpc", model=request.model_name) if self._want_info else None

        async def work(key: ApiKey | None) -> pb.ModelInferResponse:
            return await self._infer(request, info)

        return await self._call(context, "ModelInfer", Scope.INFER, request.model_name, work, info, metadata)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """One response per request, in order; a failed request answers an in-stream
        error and the stream goes on. Up to STREAM_WINDOW requests compute at once."""
        metadata = context.invocation_metadata() or ()
        try:
            key = self._auth.identify(_key_in(metadata)) if self._auth is not None else None
        except FerryError as exc:
            await self._abort(context, exc)
            return
        window: asyncio.Queue[asyncio.Task[pb.ModelStreamInferResponse] | None] = asyncio.Queue(STREAM_WINDOW)

        async def read() -> None:
            try:
                async for request in requests:
                    await window.put(asyncio.create_task(self._stream_one(request, key, metadata)))
            finally:
                await window.put(None)

        reader = asyncio.create_task(read())
        try:
            while (task := await window.get()) is not None:
                yield await task
            await reader  # a broken client stream ends the call with its error
        finally:
            reader.cancel()
            while not window.empty():
                left = window.get_nowait()
                if left is not None:
                    left.cancel()

    async def _stream_one(
        self, request: pb.ModelInferRequest, key: ApiKey | None, metadata: Metadata
    ) -> pb.ModelStreamInferResponse:
        name = request.model_name
        info = RequestInfo(protocol="grpc", model=name) if self._want_info else None
        started = time.perf_counter_ns()
        status = 200
        try:
            if self._auth is not None and key is not None:
                await self._auth.authorize(key, Scope.INFER, name)
            return pb.ModelStreamInferResponse(infer_response=await self._infer(request, info))
        except FerryError as exc:
            status = exc.status
            if exc.status in (401, 403, 429):
                self._plane.refused(name, "grpc", exc.status, started)
            return pb.ModelStreamInferResponse(error_message=self._plane.public(exc.message))
        except Exception:
            status = 500
            log.exception("unhandled error while serving a streamed inference request")
            return pb.ModelStreamInferResponse(error_message=INTERNAL_ERROR)
        finally:
            self._finished("ModelStreamInfer", name, status, started, metadata, info)

    async def _infer(self, request: pb.ModelInferRequest, info: RequestInfo | None) -> pb.ModelInferResponse:
        name = request.model_name
        version = request.model_version or None
        limit = self._plane.body_limit(name, self._limit)
        if limit < self._limit and request.ByteSize() > limit:
            self._plane.refused(name, "grpc", PayloadTooLarge.status, time.perf_counter_ns())
            raise PayloadTooLarge(f"the request is larger than model {name!r} takes ({limit} bytes)")
        response: pb.ModelInferResponse = await self._plane.infer(name, version, request, self._codec, info)
        return response

    # -- every call -----------------------------------------------------------------

    async def _call(
        self,
        context: grpc.aio.ServicerContext,
        method: str,
        scope: Scope | None,
        model: str | None,
        work: Callable[[ApiKey | None], Awaitable[T]],
        info: RequestInfo | None = None,
        metadata: Metadata | None = None,
    ) -> T:
        """Run ``work`` as the caller's key (checked for ``scope`` on ``model``; None:
        open), with a request id, the FerryError's gRPC status, the audit trail for
        deploy actions and an access log line."""
        if metadata is None:  # read once: each read costs grpc.aio a copy
            metadata = context.invocation_metadata() or ()
        sent_id = incoming_id(_header_pairs(metadata))
        token = REQUEST_ID.set(sent_id or uuid.uuid4().hex)
        started = time.perf_counter_ns()
        status = 200
        key: ApiKey | None = None
        try:
            if sent_id is not None:
                # Echoed only when sent: metadata costs grpc.aio a third of a no-op call's
                # time, and an id Ferry made is in the answer's ``id`` and the log already.
                await context.send_initial_metadata((("x-request-id", sent_id),))
            if self._auth is not None and scope is not None:
                try:
                    key = self._auth.identify(_key_in(metadata))
                    await self._auth.authorize(key, scope, model or None)
                except FerryError as exc:
                    if method == "ModelInfer":
                        self._plane.refused(model or "", "grpc", exc.status, started)
                    raise
            return await work(key)
        except FerryError as exc:
            status = exc.status
            if is_server_fault(exc):
                log.error("%s -> %s: %s", method, exc.grpc_code, exc.message)
            await self._abort(context, exc)
            raise  # abort raised already; for the type checker
        except asyncio.CancelledError:
            status = CLIENT_CLOSED
            raise
        except Exception:
            status = 500
            log.exception("unhandled error on %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_ERROR)
            raise
        finally:
            if scope in (Scope.DEPLOY, Scope.ADMIN):
                self._audit(method, model or "", key, status, context)
            self._finished(method, model, status, started, metadata, info)
            REQUEST_ID.reset(token)

    async def _abort(self, context: grpc.aio.ServicerContext, exc: FerryError) -> None:
        """End the call with the error's gRPC status, its message without server paths;
        503 and 429 say when to retry."""
        trailers: tuple[tuple[str, str], ...] = ()
        if isinstance(exc, Unavailable | RateLimited):
            trailers = (("retry-after", str(exc.retry_after_s)),)
        await context.abort(grpc.StatusCode[exc.grpc_code], self._plane.public(exc.message), trailers)

    def _audit(
        self, method: str, model: str, key: ApiKey | None, status: int, context: grpc.aio.ServicerContext
    ) -> None:
        """Load and unload, and refused attempts at them by a valid key (as over REST)."""
        if self._audit_writer is None or (key is None and self._auth is not None):
            return
        denied = status in (401, 403, 429)
        self._audit_writer.submit(
            AuditEvent(
                at=utcnow(),
                key_id=key.key_id if key else None,
                key_name=key.name if key else "",
                action="repository_load" if method == "RepositoryModelLoad" else "repository_unload",
                target=one_line(model),
                method="GRPC",
                path=f"/{SERVICE}/{method}",
                status=status,
                result="ok" if status < 400 else "denied" if denied else "failed",
                client=_peer_host(context.peer()),
                model=one_line(model) or None,
            ),
        )

    def _finished(
        self,
        method: str,
        model: str | None,
        status: int,
        started: int,
        metadata: Metadata,
        info: RequestInfo | None,
    ) -> None:
        """What every call and every streamed request leaves behind: its status on the
        request's info, its span (inference, when traced) and its access log line."""
        if info is not None:
            info.status = status
            if self._tracing is not None:
                self._tracing.record(info, f"/{SERVICE}/{method}", _header_pairs(metadata), status)
        if not self._access_log:
            return
        fields: dict[str, object] = {
            "method": "GRPC",
            "path": f"/{SERVICE}/{method}",
            "status": status,
            "duration_ms": round((time.perf_counter_ns() - started) / 1e6, 3),
        }
        if model:
            fields["model"] = model
            fields["version"] = (info.version or None) if info is not None else None
        access.info("request", extra=fields)


async def _now(value: T) -> T:
    return value


def _key_in(metadata: Metadata) -> str | None:
    """The key in ``authorization: Bearer <key>`` or ``x-api-key`` metadata."""
    return presented_key(
        [
            (k.encode(), v if isinstance(v, bytes) else v.encode())
            for k, v in metadata
            if k in ("authorization", "x-api-key")
        ]
    )


def _header_pairs(metadata: Metadata) -> list[tuple[bytes, bytes]]:
    """Text metadata as HTTP header pairs (for the request id and ``traceparent``)."""
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in metadata if isinstance(v, str)]


def _peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``; ``ipv6:[::1]:5000`` -> ``::1``."""
    _, _, address = peer.partition(":")
    host = address.rsplit(":", 1)[0]
    return host.strip("[]")


def _tensor_config(tensor: dict[str, Any]) -> dict[str, Any]:
    return {"name": tensor["name"], "data_type": config_pb.DataType.Value(tensor["data_type"]), "dims": tensor["dims"]}


def _statistics(entry: dict[str, Any]) -> pb.ModelStatistics:
    """One version's statistics, from the same JSON the REST extension answers."""
    duration = pb.StatisticDuration
    inference = entry["inference_stats"]
    return pb.ModelStatistics(
        name=entry["name"],
        version=entry["version"],
        last_inference=entry["last_inference"],
        inference_count=entry["inference_count"],
        execution_count=entry["execution_count"],
        inference_stats=pb.InferStatistics(**{k: duration(**v) for k, v in inference.items()}),
        batch_stats=[
            pb.InferBatchStatistics(
                batch_size=b["batch_size"], **{k: duration(**v) for k, v in b.items() if k != "batch_size"}
            )
            for b in entry["batch_stats"]
        ],
    )
