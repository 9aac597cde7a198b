"""A grpc.aio server whose ModelInfer does nothing but answer: the most requests/s any
servicer written on grpcio's asyncio server can reach on this machine, measured beside
Ferry by bench/grpc.py. Usage: python -m bench.grpc_noop PORT"""

from __future__ import annotations

import asyncio
import sys

import grpc

from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.grpc.protos import grpc_service_pb2_grpc as pb_grpc


class NoOp(pb_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        return pb.ModelInferResponse(model_name=request.model_name)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(NoOp(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
