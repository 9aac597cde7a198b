"""The KServe SDK's REST and gRPC clients against Ferry. Usage:
kserve_sdk.py HTTP_URL GRPC_HOST:PORT; prints a JSON report."""

from __future__ import annotations

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig


def request() -> InferRequest:
    a = InferInput("INPUT0", [1, 16], "FP32")
    a.set_data_from_numpy(np.arange(16, dtype=np.float32).reshape(1, 16))
    b = InferInput("INPUT1", [1, 16], "FP32")
    b.set_data_from_numpy(np.ones((1, 16), dtype=np.float32))
    return InferRequest(model_name="add_sub", infer_inputs=[a, b], request_id="kserve-1")


def summary(response: object) -> dict[str, object]:
    out = {o.name: o for o in response.outputs}  # type: ignore[attr-defined]
    total = out["OUTPUT0"].as_numpy()
    return {
        "model": response.model_name,  # type: ignore[attr-defined]
        "id": response.id,  # type: ignore[attr-defined]
        "sum_ok": bool(np.array_equal(total, np.arange(16, dtype=np.float32).reshape(1, 16) + 1)),
    }


async def main() -> dict[str, object]:
    http_url, grpc_address = sys.argv[1], sys.argv[2]
    report: dict[str, object] = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    report["rest"] = {
        "live": await rest.is_server_live(http_url),
        "ready": await rest.is_server_ready(http_url),
        "model_ready": await rest.is_model_ready(http_url, "add_sub"),
        "infer": summary(await rest.infer(http_url, request(), model_name="add_sub")),
    }
    await rest.close()
    grpc = InferenceGRPCClient(grpc_address, timeout=30)
    report["grpc"] = {
        "live": await grpc.is_server_live(),
        "ready": await grpc.is_server_ready(),
        "model_ready": await grpc.is_model_ready("add_sub"),
        "infer": summary(await grpc.infer(request())),
    }
    await grpc.close()
    return report


print(json.dumps(asyncio.run(main())))
