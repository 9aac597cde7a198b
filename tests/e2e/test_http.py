"""Plain HTTP against a real ``ferry serve`` process, as curl and ``requests`` users
call it: V2 JSON and binary bodies, V1 ``:predict``, and the error contract."""

from __future__ import annotations

import gzip
import json
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests

from tests.builders import add_sub_onnx, digits_sample
from tests.e2e.server import Server, running

TIMEOUT = 30


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a 1 KiB body limit (the smallest Settings allows)."""
    root = tmp_path_factory.mktemp("small")
    model = add_sub_onnx(root / "add_sub.onnx")
    with running([model], root / "server.log", "--max-body-bytes", "1024") as srv:
        yield srv


def post(server: Server, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(server.url + path, timeout=TIMEOUT, **kwargs)


def assert_error(response: requests.Response, status: int, fragment: str = "") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert fragment in body["error"], body["error"]
    return str(body["error"])


def add_sub_json(rows: int = 2) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    a = np.arange(rows * 16, dtype=np.float32).reshape(rows, 16)
    b = np.full((rows, 16), 2.0, dtype=np.float32)
    body = {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [rows, 16], "data": a.reshape(-1).tolist()},
            {"name": "INPUT1", "datatype": "FP32", "shape": [rows, 16], "data": b.tolist()},
        ]
    }
    return body, a, b


# -- V2 JSON --------------------------------------------------------------------------


def test_v2_json_infer(server: Server) -> None:
    body, a, b = add_sub_json()
    body["id"] = "curl-1"
    response = post(server, "/v2/models/add_sub/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    assert doc["model_name"] == "add_sub"
    assert doc["model_version"] == "1"
    assert doc["id"] == "curl-1"
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert set(outputs) == {"OUTPUT0", "OUTPUT1"}
    for name, expected in (("OUTPUT0", a + b), ("OUTPUT1", a - b)):
        assert outputs[name]["datatype"] == "FP32"
        assert outputs[name]["shape"] == [2, 16]
        np.testing.assert_array_equal(np.array(outputs[name]["data"], dtype=np.float32).reshape(2, 16), expected)


def test_v2_json_infer_versioned_path(server: Server) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    one = post(server, "/v2/models/scale/versions/1/infer", json=body).json()
    two = post(server, "/v2/models/scale/versions/2/infer", json=body).json()
    assert (one["model_version"], one["outputs"][0]["data"]) == ("1", [1.0, 2.0, 3.0, 4.0])
    assert (two["model_version"], two["outputs"][0]["data"]) == ("2", [2.0, 4.0, 6.0, 8.0])


def test_v2_json_bytes_python_model(server: Server) -> None:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["hi", "th\u00e9re"]}]}
    response = post(server, "/v2/models/upper/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["upper"] == {"name": "upper", "datatype": "BYTES", "shape": [2], "data": ["HI", "TH\u00c9RE"]}
    assert outputs["length"]["data"] == [2, 5]
    assert outputs["length"]["datatype"] == "INT64"


def test_v2_binary_body_by_hand(server: Server) -> None:
    """The binary tensor extension without tritonclient: JSON header, then raw bytes."""
    a = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
    b = np.ones((1, 16), dtype=np.float32)
    header = {
        "inputs": [
            {"name": "INPUT0", "datatype": "FP32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
            {"name": "INPUT1", "datatype": "FP32", "shape": [1, 16], "parameters": {"binary_data_size": 64}},
        ],
        "outputs": [{"name": "OUTPUT1", "parameters": {"binary_data": True}}],
    }
    head = json.dumps(header).encode()
    response = post(
        server,
        "/v2/models/add_sub/infer",
        data=head + a.tobytes() + b.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    doc = json.loads(response.content[:length])
    (output,) = doc["outputs"]
    assert output["name"] == "OUTPUT1"
    assert output["parameters"]["binary_data_size"] == 64
    got = np.frombuffer(response.content[length:], dtype="<f4").reshape(1, 16)
    np.testing.assert_array_equal(got, a - b)


def binary_bytes_request(server: Server, words: list[bytes]) -> requests.Response:
    raw = b"".join(struct.pack("<I", len(w)) + w for w in words)
    header = {
        "inputs": [
            {
                "name": "INPUT0",
                "datatype": "BYTES",
                "shape": [1, len(words)],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    head = json.dumps(header).encode()
    return post(
        server,
        "/v2/models/identity_bytes/infer",
        data=head + raw,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )


def test_v2_binary_bytes_by_hand(server: Server) -> None:
    words = [b"abc", b"", "été ☃".encode()]
    response = binary_bytes_request(server, words)
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    assert response.content[length:] == b"".join(struct.pack("<I", len(w)) + w for w in words)


def test_v2_binary_bytes_not_utf8_for_onnx_strings(server: Server) -> None:
    """ONNX string tensors are text in onnxruntime: bytes it cannot carry are refused,
    never silently replaced."""
    assert_error(binary_bytes_request(server, [b"ok", b"\xff\x00 raw"]), 400, "UTF-8")


def test_v2_gzip_body_by_hand(server: Server) -> None:
    body, a, b = add_sub_json(rows=1)
    response = post(
        server,
        "/v2/models/add_sub/infer",
        data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == (a + b).reshape(-1).tolist()


def test_v2_metadata_and_health_by_hand(server: Server) -> None:
    assert requests.get(server.url + "/v2/health/live", timeout=TIMEOUT).status_code == 200
    assert requests.get(server.url + "/v2/health/ready", timeout=TIMEOUT).status_code == 200
    assert requests.get(server.url + "/v2/models/scale/versions/2/ready", timeout=TIMEOUT).status_code == 200
    metadata = requests.get(server.url + "/v2/models/digits", timeout=TIMEOUT).json()
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
    assert_error(requests.get(server.url + "/v2/models/nope/ready", timeout=TIMEOUT), 404, "nope")


# -- V1 -------------------------------------------------------------------------------


def test_v1_predict_digits(server: Server) -> None:
    features, labels = digits_sample(8)
    response = post(server, "/v1/models/digits:predict", json={"instances": features.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["label"] for p in predictions] == labels.tolist()
    for p in predictions:
        assert len(p["probabilities"]) == 10
        assert sum(p["probabilities"]) == pytest.approx(1.0)
        assert int(np.argmax(p["probabilities"])) == p["label"]


def test_v1_predict_python_model(server: Server) -> None:
    response = post(server, "/v1/models/upper:predict", json={"instances": ["ab", "cde"]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == [{"upper": "AB", "length": 2}, {"upper": "CDE", "length": 3}]


def test_v1_model_status(server: Server) -> None:
    assert requests.get(server.url + "/v1/models/digits", timeout=TIMEOUT).json() == {"name": "digits", "ready": True}
    assert "digits" in requests.get(server.url + "/v1/models", timeout=TIMEOUT).json()["models"]


def test_v1_bad_instances(server: Server) -> None:
    assert_error(post(server, "/v1/models/digits:predict", json={"instances": [[1, 2, 3]]}), 400)
    assert_error(post(server, "/v1/models/digits:predict", json={"rows": []}), 400, "instances")
    assert_error(post(server, "/v1/models/nope:predict", json={"instances": [[1]]}), 404, "nope")


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v2/models/add_sub/infer", "/v1/models/digits:predict", "/v2/repository/index"],
)
def test_malformed_json(server: Server, path: str) -> None:
    response = post(server, path, data=b'{"inputs": [', headers={"Content-Type": "application/json"})
    assert_error(response, 400, "JSON")


def test_bad_v2_bodies(server: Server) -> None:
    body, _, _ = add_sub_json(rows=1)
    body["inputs"][0]["shape"] = [1, 8]
    assert_error(post(server, "/v2/models/add_sub/infer", json=body), 400, "shape")
    assert_error(post(server, "/v2/models/add_sub/infer", json={"inputs": []}), 400, "inputs")
    assert_error(post(server, "/v2/models/add_sub/infer", json=[1, 2]), 400, "JSON object")
    body, _, _ = add_sub_json(rows=1)
    body["inputs"][0]["datatype"] = "FLOAT32"
    assert_error(post(server, "/v2/models/add_sub/infer", json=body), 400, "FLOAT32")
    body, _, _ = add_sub_json(rows=1)
    body["inputs"][0]["data"] = ["a"] * 16
    assert_error(post(server, "/v2/models/add_sub/infer", json=body), 400, "INPUT0")
    assert_error(
        post(server, "/v2/models/add_sub/infer", data=b"{}", headers={"Inference-Header-Content-Length": "99"}),
        400,
        "Inference-Header-Content-Length",
    )
    assert_error(post(server, "/v2/models/add_sub/infer", data=b"xx", headers={"Content-Encoding": "gzip"}), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/no/such/route"), ("POST", "/v3/models/add_sub/infer"), ("GET", "/v2/models/add_sub/nothing")],
)
def test_unknown_route(server: Server, method: str, path: str) -> None:
    assert_error(requests.request(method, server.url + path, timeout=TIMEOUT), 404)


def test_wrong_method_is_json_error(server: Server) -> None:
    assert_error(requests.get(server.url + "/v2/models/add_sub/infer", timeout=TIMEOUT), 405)


def test_server_still_serves_after_errors(server: Server) -> None:
    post(server, "/v2/models/add_sub/infer", data=b"\x00\xff garbage")
    body, a, b = add_sub_json()
    response = post(server, "/v2/models/add_sub/infer", json=body)
    assert response.status_code == 200
    assert response.json()["outputs"][1]["data"] == (a - b).reshape(-1).tolist()
    assert server.alive()


# -- body limit -----------------------------------------------------------------------


def test_small_body_is_served(small_server: Server) -> None:
    body, a, b = add_sub_json(rows=1)
    response = post(small_server, "/v2/models/add_sub/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == (a + b).reshape(-1).tolist()
    # A single model file is served under its file name.
    assert response.json()["model_name"] == "add_sub"


def test_body_too_large(small_server: Server) -> None:
    body, _, _ = add_sub_json(rows=8)
    data = json.dumps(body).encode()
    assert len(data) > 1024
    assert_error(post(small_server, "/v2/models/add_sub/infer", data=data), 413, "1024")
    assert_error(post(small_server, "/v1/models/add_sub:predict", data=data), 413)


def test_chunked_body_too_large(small_server: Server) -> None:
    """No Content-Length to refuse up front: the limit holds while streaming."""
    body, _, _ = add_sub_json(rows=8)
    data = json.dumps(body).encode()
    chunks = (data[i : i + 256] for i in range(0, len(data), 256))
    assert_error(post(small_server, "/v2/models/add_sub/infer", data=chunks), 413)


def test_gzip_bomb_too_large(small_server: Server) -> None:
    """Small on the wire, large once inflated: refused, not inflated without bound."""
    compressed = gzip.compress(b" " * 1_000_000)
    assert len(compressed) < 1024
    response = post(small_server, "/v2/models/add_sub/infer", data=compressed, headers={"Content-Encoding": "gzip"})
    assert_error(response, 413)
    assert small_server.alive()
