"""tritonclient.grpc (synchronous) against a Ferry gRPC endpoint: health, metadata,
configuration, inference of every datatype, statistics, the repository index, errors and
streaming. Usage: triton_grpc.py HOST:PORT [KEY [CA_PEM]]; prints a JSON report."""

from __future__ import annotations

import json
import queue
import sys

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

address = sys.argv[1]
key = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
ca = sys.argv[3] if len(sys.argv) > 3 else None
headers = {"authorization": f"Bearer {key}"} if key else None
client = grpcclient.InferenceServerClient(address, ssl=ca is not None, root_certificates=ca)
report: dict[str, object] = {}


def failure(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except InferenceServerException as exc:
        return f"{exc.status()} {exc.message()}"
    return "no error"


def tensor(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    value = grpcclient.InferInput(name, list(array.shape), datatype)
    value.set_data_from_numpy(array)
    return value


report["live"] = client.is_server_live(headers=headers)
report["ready"] = client.is_server_ready(headers=headers)
report["model_ready"] = client.is_model_ready("add_sub", headers=headers)
metadata = client.get_server_metadata(headers=headers, as_json=True)
report["server"] = {"name": metadata["name"], "extensions": metadata["extensions"]}
report["metadata"] = client.get_model_metadata("add_sub", headers=headers, as_json=True)
report["config"] = client.get_model_config("add_sub", headers=headers, as_json=True)["config"]

a = np.arange(32, dtype=np.float32).reshape(2, 16)
b = np.full((2, 16), 0.5, dtype=np.float32)
result = client.infer("add_sub", [tensor("INPUT0", a, "FP32"), tensor("INPUT1", b, "FP32")], headers=headers)
report["add_sub"] = {
    "sum_ok": bool(np.array_equal(result.as_numpy("OUTPUT0"), a + b)),
    "difference_ok": bool(np.array_equal(result.as_numpy("OUTPUT1"), a - b)),
    "id": result.get_response().id,
    "version": result.get_response().model_version,
}
only = client.infer(
    "add_sub",
    [tensor("INPUT0", a, "FP32"), tensor("INPUT1", b, "FP32")],
    outputs=[grpcclient.InferRequestedOutput("OUTPUT1")],
    request_id="mine",
    headers=headers,
)
report["requested_output"] = {"outputs": [o.name for o in only.get_response().outputs], "id": only.get_response().id}

samples = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.0, 65504.0]], dtype=np.float16),
    "FP32": np.array([[0.5, -1.0, 2.25]], dtype=np.float32),
    "FP64": np.array([[0.1, -1.0, 1e300]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"", "é".encode()]], dtype=object),
}
report["datatypes"] = {}
for datatype, array in samples.items():
    name = f"identity_{datatype.lower()}"
    meta = client.get_model_metadata(name, headers=headers)
    out = client.infer(name, [tensor(meta.inputs[0].name, array, datatype)], headers=headers)
    got = out.as_numpy(meta.outputs[0].name)
    report["datatypes"][datatype] = bool(got.dtype == array.dtype and np.array_equal(got, array)) or (
        datatype == "BYTES" and got.tolist() == array.tolist()
    )

classified = client.infer(
    "digits",
    [tensor("input", np.zeros((1, 64), dtype=np.float32), "FP32")],
    outputs=[grpcclient.InferRequestedOutput("probabilities", class_count=2)],
    headers=headers,
)
report["classification"] = [x.decode() for x in classified.as_numpy("probabilities").reshape(-1)]

stats = client.get_inference_statistics("add_sub", headers=headers, as_json=True)["model_stats"][0]
report["stats"] = {"name": stats["name"], "inference_count": int(stats.get("inference_count", 0))}
index = client.get_model_repository_index(headers=headers, as_json=True)["models"]
report["index"] = sorted(entry["name"] for entry in index)

bad_shape = [
    tensor("INPUT0", np.ones((1, 15), np.float32), "FP32"),
    tensor("INPUT1", np.ones((1, 15), np.float32), "FP32"),
]
report["errors"] = {
    "unknown_model": failure(lambda: client.infer("nope", bad_shape, headers=headers)),
    "bad_shape": failure(lambda: client.infer("add_sub", bad_shape, headers=headers)),
    "bad_version": failure(lambda: client.infer("add_sub", bad_shape, model_version="9", headers=headers)),
    "metadata_unknown": failure(lambda: client.get_model_metadata("nope", headers=headers)),
}

answers: queue.Queue[tuple[object, object]] = queue.Queue()
client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
good = [tensor("INPUT0", a, "FP32"), tensor("INPUT1", b, "FP32")]
for number in range(5):
    client.async_stream_infer("add_sub", good, request_id=f"s{number}")
client.async_stream_infer("add_sub", bad_shape, request_id="bad")
client.async_stream_infer("add_sub", good, request_id="after")
stream = []
for _ in range(7):
    result, error = answers.get(timeout=30)
    if error is not None:
        stream.append(f"error: {error.message()}")  # type: ignore[attr-defined]
    else:
        response = result.get_response()  # type: ignore[attr-defined]
        stream.append(response.id)
client.stop_stream()
report["stream"] = stream
client.close()
print(json.dumps(report))
