"""V2 gRPC: ModelInfer over grpc.aio, with the request serialised once.

The method is called through a bytes-in, bytes-out multi-callable on the path Ferry's
generated stubs declare, so no request is serialised and no answer parsed per call: a
call that ends with status OK is a success, whatever it carries."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import grpc

from ferry.bench.driver import Connection, Failure
from ferry.bench.metadata import call_metadata
from ferry.bench.options import Target
from ferry.grpc.protos import grpc_service_pb2 as pb

if TYPE_CHECKING:
    from grpc.aio import UnaryUnaryMultiCallable

_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
MODEL_INFER = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['ModelInfer'].name}"
# Workers per HTTP/2 connection. One connection for every worker serialises all of them
# on one grpc.aio channel; one each costs a channel's own bookkeeping per worker.
WORKERS_PER_CHANNEL = 16
# Each channel its own TCP connection: by default grpc shares one between channels with
# the same target and options.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.use_local_subchannel_pool", 1),
]
# While the server cannot be reached calls fail at once: wait before the next, as the
# REST driver does, rather than spin.
UNAVAILABLE_DELAY_S = 0.05
CONNECT_TIMEOUT_S = 10.0


class GrpcConnection:
    def __init__(self, call: UnaryUnaryMultiCallable, message: bytes, metadata: tuple[tuple[str, str], ...]) -> None:
        self._call = call
        self._message = message
        self._metadata = metadata or None

    async def send(self) -> Failure | None:
        try:
            await self._call(self._message, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                await asyncio.sleep(UNAVAILABLE_DELAY_S)
            return Failure(code.name, exc.details() or "")
        return None


class GrpcDriver:
    def __init__(self, target: Target, message: bytes, api_key: str | None) -> None:
        self._target = target
        self._message = message
        self._metadata = call_metadata(api_key)
        self._channels: list[grpc.aio.Channel] = []

    def _channel(self) -> grpc.aio.Channel:
        if self._target.tls:
            return grpc.aio.secure_channel(self._target.address, grpc.ssl_channel_credentials(), CHANNEL_OPTIONS)
        return grpc.aio.insecure_channel(self._target.address, CHANNEL_OPTIONS)

    async def connect(self, count: int) -> list[Connection]:
        self._channels = [self._channel() for _ in range(-(-count // WORKERS_PER_CHANNEL))]
        for channel in self._channels:
            with contextlib.suppress(TimeoutError):  # the first calls report why
                await asyncio.wait_for(channel.channel_ready(), timeout=CONNECT_TIMEOUT_S)
        calls = [channel.unary_unary(MODEL_INFER) for channel in self._channels]
        return [GrpcConnection(calls[i % len(calls)], self._message, self._metadata) for i in range(count)]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
        self._channels = []
