"""tritonclient.grpc.aio against a Ferry gRPC endpoint: concurrent unary calls and a
bidirectional stream. Usage: triton_grpc_aio.py HOST:PORT; prints a JSON report."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
import tritonclient.grpc.aio as aioclient


def inputs(rows: int, offset: float) -> list[aioclient.InferInput]:
    a = np.full((rows, 16), offset, dtype=np.float32)
    b = np.ones((rows, 16), dtype=np.float32)
    tensors = [aioclient.InferInput("INPUT0", [rows, 16], "FP32"), aioclient.InferInput("INPUT1", [rows, 16], "FP32")]
    tensors[0].set_data_from_numpy(a)
    tensors[1].set_data_from_numpy(b)
    return tensors


async def main() -> dict[str, object]:
    client = aioclient.InferenceServerClient(sys.argv[1])
    report: dict[str, object] = {"live": await client.is_server_live(), "ready": await client.is_server_ready()}
    results = await asyncio.gather(*(client.infer("add_sub", inputs(1 + n % 3, n)) for n in range(20)))
    report["unary_ok"] = all(
        np.array_equal(r.as_numpy("OUTPUT0"), np.full((1 + n % 3, 16), n + 1, dtype=np.float32))
        for n, r in enumerate(results)
    )

    async def requests():  # type: ignore[no-untyped-def]
        for n in range(10):
            yield {"model_name": "add_sub", "inputs": inputs(1, n), "request_id": f"r{n}"}

    stream = []
    async for result, error in client.stream_infer(requests()):
        if error is not None:
            stream.append(f"error: {error}")
        else:
            value = float(result.as_numpy("OUTPUT0")[0, 0])
            stream.append([result.get_response().id, value])
    report["stream"] = stream
    await client.close()
    return report


print(json.dumps(asyncio.run(main())))
