"""GrpcServer: the gRPC endpoint, a ``grpc.aio`` server on uvicorn's event loop, so a
gRPC request and a REST request share the data plane and can land in one batch. It
serves the inference service, the standard health service (Kubernetes gRPC probes:
"" and the service name follow server readiness, each model's name its readiness) and
server reflection (grpcurl). Same host, TLS files and keys as the REST port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ferry.grpc.protos import grpc_service_pb2_grpc as pb_grpc
from ferry.grpc.servicer import SERVICE, InferenceServicer

if TYPE_CHECKING:
    from ferry.dataplane import DataPlane
    from ferry.security.audit_writer import AuditWriter
    from ferry.security.auth import Authenticator
    from ferry.settings import Settings
    from ferry.tracing import InferTracing

log = logging.getLogger("ferry.grpc")

# How often the health service's statuses are brought up to date with the data plane.
HEALTH_INTERVAL_S = 0.5
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Health(health.aio.HealthServicer):
    """The standard health service, its statuses brought up to date before each Check
    (Watch follows the periodic update)."""

    def __init__(self, refresh: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._refresh = refresh

    async def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> Any:
        await self._refresh()
        return await super().Check(request, context)


class GrpcServer:
    def __init__(
        self,
        settings: Settings,
        plane: DataPlane,
        auth: Authenticator | None = None,
        tracing: InferTracing | None = None,
        audit: AuditWriter | None = None,
    ) -> None:
        self._settings = settings
        self._plane = plane
        self._servicer = InferenceServicer(plane, settings, auth, tracing, audit)
        self._server: grpc.aio.Server | None = None
        self._health: _Health | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        host = self._settings.host
        return f"[{host}]:{self._settings.grpc_port}" if ":" in host else f"{host}:{self._settings.grpc_port}"

    async def start(self) -> None:
        """Listen (raises OSError when the port cannot be bound) and serve."""
        settings = self._settings
        server = grpc.aio.server(
            options=[
                # The message limit is the body limit of REST: a larger request is
                # refused with RESOURCE_EXHAUSTED before it is read whole.
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                # Metadata (gRPC's headers) under the REST head limit. Soft and hard limit
                # alike: between the two gRPC would refuse a random share of the calls.
                ("grpc.max_metadata_size", settings.max_header_bytes),
                ("grpc.absolute_max_metadata_size", settings.max_header_bytes),
                # One port per server: a second server on it must fail, not share it.
                ("grpc.so_reuseport", 0),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(self._servicer, server)
        self._health = _Health(self._update_health)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        services = (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(services, server)
        if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
            credentials = grpc.ssl_server_credentials(
                [(settings.ssl_keyfile.read_bytes(), settings.ssl_certfile.read_bytes())]
            )
            self.port = server.add_secure_port(self.address, credentials)
        else:
            self.port = server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {self.address}")
        await server.start()
        self._server = server
        await self._update_health()
        self._watcher = asyncio.create_task(self._watch_health())
        scheme = "grpcs" if settings.ssl_certfile else "grpc"
        log.info("serving gRPC on %s://%s", scheme, self.address)

    def stop(self) -> asyncio.Task[None]:
        """Stop taking calls and let those in flight finish (for at most the graceful
        timeout); health answers NOT_SERVING from now on. Called again, the same stop."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop())
        return self._stopping

    async def _stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(self._settings.graceful_timeout_s)
            log.info("gRPC stopped")

    async def _watch_health(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL_S)
            try:
                await self._update_health()
            except Exception:  # a bug here must not stop the probes from being answered
                log.exception("cannot update the gRPC health statuses")

    async def _update_health(self) -> None:
        assert self._health is not None
        ready = SERVING if self._plane.ready() else NOT_SERVING
        await self._health.set("", ready)
        await self._health.set(SERVICE, ready)
        for name in self._plane.model_names():
            try:
                model = SERVING if self._plane.model_ready(name, None) else NOT_SERVING
            except Exception:  # forgotten between the two calls
                model = NOT_SERVING
            await self._health.set(name, model)
