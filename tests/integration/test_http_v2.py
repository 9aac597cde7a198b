"""Open Inference Protocol V2 REST through the whole app: health, metadata, Triton
config, inference in JSON and binary both ways, compression, repository index and
statistics."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from tests.integration.serving import (
    HEADER,
    binary_request,
    error_of,
    index_of,
    json_input,
    outputs_of,
    stats_of,
)

# One awkward sample per datatype: extremes, negative zero, empty and non-ASCII strings.
SAMPLES: dict[str, np.ndarray] = {
    "FP32": np.array([[1.5, -2.25, 3.0e38], [0.0, -0.0, 1.0e-30]], dtype=np.float32),
    "FP16": np.array([[0.5, -1.0, 65504.0], [0.0, 0.099975586, -3.0]], dtype=np.float16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1], [1, -1, 7]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1], [1, -1, 7]], dtype=np.int64),
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "BYTES": np.array([[b"a", b"", "\u00fcn\u00efcode".encode()], [b"x y", b"{}", b"\\"]], dtype=object),
    "UINT8": np.array([[0, 128, 255], [1, 2, 3]], dtype=np.uint8),
}


def _x(rows: int = 1) -> np.ndarray:
    return np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) + 1


# -- health and metadata ---------------------------------------------------------------


def test_live_and_ready(client: TestClient) -> None:
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200


def test_server_metadata_lists_extensions(client: TestClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    doc = response.json()
    assert doc["name"] == "ferry"
    assert isinstance(doc["version"], str) and doc["version"]
    assert {"binary_tensor_data", "model_repository", "statistics"} <= set(doc["extensions"])


def test_model_metadata_without_version_lists_every_version(client: TestClient) -> None:
    doc = client.get("/v2/models/scale").json()
    assert doc["name"] == "scale"
    assert doc["versions"] == ["1", "2"]
    assert doc["platform"] == "onnxruntime_onnx"
    assert doc["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert doc["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]


def test_model_metadata_of_one_version(client: TestClient) -> None:
    doc = client.get("/v2/models/scale/versions/1").json()
    assert doc["name"] == "scale"
    assert doc["versions"] == ["1"]
    assert doc["inputs"][0]["name"] == "x"


def test_model_ready(client: TestClient) -> None:
    assert client.get("/v2/models/scale/ready").status_code == 200
    assert client.get("/v2/models/scale/versions/1/ready").status_code == 200
    assert client.get("/v2/models/scale/versions/2/ready").status_code == 200
    error_of(client.get("/v2/models/scale/versions/3/ready"), 404)
    error_of(client.get("/v2/models/nope/ready"), 404)


def test_triton_config_leaves_out_the_batch_dimension(client: TestClient) -> None:
    response = client.get("/v2/models/add_sub/config")
    assert response.status_code == 200
    config = response.json()
    assert config["name"] == "add_sub"
    assert config["max_batch_size"] > 0
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("INPUT0", "TYPE_FP32", [16]),
        ("INPUT1", "TYPE_FP32", [16]),
    ]
    assert [t["name"] for t in config["output"]] == ["OUTPUT0", "OUTPUT1"]
    strings = client.get("/v2/models/identity_bytes/versions/1/config").json()
    assert strings["input"][0]["data_type"] == "TYPE_STRING"


# -- inference: versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "version", "factor"),
    [
        ("/v2/models/scale/infer", "2", 2.0),
        ("/v2/models/scale/versions/1/infer", "1", 1.0),
        ("/v2/models/scale/versions/2/infer", "2", 2.0),
    ],
)
def test_infer_goes_to_the_requested_or_latest_version(
    client: TestClient, path: str, version: str, factor: float
) -> None:
    x = _x(2)
    doc, outputs = outputs_of(client.post(path, json={"inputs": [json_input("x", "FP32", x)]}))
    assert doc["model_name"] == "scale"
    assert doc["model_version"] == version
    np.testing.assert_array_equal(outputs["y"], x * factor)


# -- inference: datatypes in JSON and binary, both directions ------------------------------


@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_identity_round_trip(client: TestClient, datatype: str, binary_in: bool, binary_out: bool) -> None:
    sample = SAMPLES[datatype]
    extra = {"parameters": {"binary_data_output": binary_out}}
    url = f"/v2/models/identity_{datatype.lower()}/infer"
    if binary_in:
        body, headers = binary_request([("INPUT0", datatype, sample)], **extra)
        response = client.post(url, content=body, headers=headers)
    else:
        response = client.post(url, json={"inputs": [json_input("INPUT0", datatype, sample)], **extra})
    doc, outputs = outputs_of(response)
    (out,) = doc["outputs"]
    assert out["name"] == "OUTPUT0"
    assert out["datatype"] == datatype
    assert out["shape"] == list(sample.shape)
    if binary_out:
        assert HEADER.lower() in response.headers
        assert response.headers["content-type"] == "application/octet-stream"
        assert "data" not in out
    else:
        assert HEADER.lower() not in response.headers
        assert response.headers["content-type"].startswith("application/json")
        assert isinstance(out["data"], list) and len(out["data"]) == sample.size  # flat
    np.testing.assert_array_equal(outputs["OUTPUT0"], sample)
    if datatype not in ("BYTES", "BOOL"):
        assert outputs["OUTPUT0"].dtype == sample.dtype


def test_nested_json_data_is_accepted(client: TestClient) -> None:
    x = _x(2)
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.tolist()}]}
    _, outputs = outputs_of(client.post("/v2/models/scale/versions/1/infer", json=body))
    np.testing.assert_array_equal(outputs["y"], x)


def test_binary_and_json_inputs_mixed_in_one_request(client: TestClient) -> None:
    a = np.arange(32, dtype=np.float32).reshape(2, 16)
    b = np.ones((2, 16), dtype=np.float32)
    body, headers = binary_request([("INPUT0", "FP32", a)])
    header = orjson.loads(body[: int(headers[HEADER])])
    header["inputs"].insert(0, json_input("INPUT1", "FP32", b))
    new_header = orjson.dumps(header)
    content = new_header + body[int(headers[HEADER]) :]
    response = client.post("/v2/models/add_sub/infer", content=content, headers={HEADER: str(len(new_header))})
    _, outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["OUTPUT0"], a + b)
    np.testing.assert_array_equal(outputs["OUTPUT1"], a - b)


def test_tritonclient_encoding_is_understood(client: TestClient) -> None:
    """Bodies as tritonclient.http builds and parses them, byte for byte."""
    import tritonclient.http as httpclient

    a = np.random.default_rng(0).random((3, 16), dtype=np.float32)
    b = np.full((3, 16), 0.5, dtype=np.float32)
    inputs = []
    for name, value in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value, binary_data=True)
        inputs.append(tensor)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs, request_id="tc-1")
    headers = {HEADER: str(json_size)} if json_size is not None else {}
    response = client.post("/v2/models/add_sub/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = response.headers.get(HEADER)
    result = httpclient.InferenceServerClient.parse_response_body(
        response.content, header_length=int(length) if length else None
    )
    assert result.get_response()["id"] == "tc-1"
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_allclose(result.as_numpy("OUTPUT1"), a - b)


# -- inference: outputs, id, binary_data_output ------------------------------------------


def _add_sub_inputs() -> tuple[np.ndarray, np.ndarray, list[dict[str, object]]]:
    a = np.arange(16, dtype=np.float32).reshape(1, 16)
    b = np.full((1, 16), 2.0, dtype=np.float32)
    return a, b, [json_input("INPUT0", "FP32", a), json_input("INPUT1", "FP32", b)]


def test_all_outputs_by_default(client: TestClient) -> None:
    a, b, inputs = _add_sub_inputs()
    doc, outputs = outputs_of(client.post("/v2/models/add_sub/infer", json={"inputs": inputs}))
    assert [o["name"] for o in doc["outputs"]] == ["OUTPUT0", "OUTPUT1"]
    np.testing.assert_array_equal(outputs["OUTPUT0"], a + b)
    np.testing.assert_array_equal(outputs["OUTPUT1"], a - b)


def test_output_selection_returns_only_what_was_asked(client: TestClient) -> None:
    a, b, inputs = _add_sub_inputs()
    request = {"inputs": inputs, "outputs": [{"name": "OUTPUT1"}]}
    doc, outputs = outputs_of(client.post("/v2/models/add_sub/infer", json=request))
    assert [o["name"] for o in doc["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(outputs["OUTPUT1"], a - b)


def test_id_is_echoed_else_the_request_id(client: TestClient) -> None:
    """The KServe SDK's response model requires an id: the client's, else the request id."""
    _, _, inputs = _add_sub_inputs()
    doc, _ = outputs_of(client.post("/v2/models/add_sub/infer", json={"id": "req-42", "inputs": inputs}))
    assert doc["id"] == "req-42"
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs})
    doc, _ = outputs_of(response)
    assert doc["id"] == response.headers["x-request-id"]
    response = client.post("/v2/models/add_sub/infer", json={"inputs": inputs}, headers={"X-Request-ID": "trace-7"})
    assert outputs_of(response)[0]["id"] == "trace-7"


def test_id_is_echoed_with_binary_outputs(client: TestClient) -> None:
    a, b, _ = _add_sub_inputs()
    body, headers = binary_request(
        [("INPUT0", "FP32", a), ("INPUT1", "FP32", b)], id="bin-7", parameters={"binary_data_output": True}
    )
    doc, _ = outputs_of(client.post("/v2/models/add_sub/infer", content=body, headers=headers))
    assert doc["id"] == "bin-7"


def test_binary_data_output_makes_every_output_binary(client: TestClient) -> None:
    a, b, inputs = _add_sub_inputs()
    request = {"inputs": inputs, "parameters": {"binary_data_output": True}}
    response = client.post("/v2/models/add_sub/infer", json=request)
    doc, outputs = outputs_of(response)
    assert int(response.headers[HEADER]) < len(response.content)
    sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
    assert sizes == [16 * 4, 16 * 4]
    assert all("data" not in o for o in doc["outputs"])
    np.testing.assert_array_equal(outputs["OUTPUT1"], a - b)


def test_per_output_binary_data_wins_over_the_request_default(client: TestClient) -> None:
    a, b, inputs = _add_sub_inputs()
    request = {
        "inputs": inputs,
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": False}}, {"name": "OUTPUT1"}],
    }
    response = client.post("/v2/models/add_sub/infer", json=request)
    doc, outputs = outputs_of(response)
    first, second = doc["outputs"]
    assert "data" in first and "binary_data_size" not in (first.get("parameters") or {})
    assert second["parameters"]["binary_data_size"] == 64
    np.testing.assert_array_equal(outputs["OUTPUT0"], a + b)
    np.testing.assert_array_equal(outputs["OUTPUT1"], a - b)


def test_one_binary_output_on_request(client: TestClient) -> None:
    a, b, inputs = _add_sub_inputs()
    request = {"inputs": inputs, "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}]}
    response = client.post("/v2/models/add_sub/infer", json=request)
    doc, outputs = outputs_of(response)
    assert [o["name"] for o in doc["outputs"]] == ["OUTPUT0"]
    assert response.headers["content-type"] == "application/octet-stream"
    np.testing.assert_array_equal(outputs["OUTPUT0"], a + b)


def test_unknown_query_parameters_are_ignored(client: TestClient) -> None:
    x = _x()
    response = client.post("/v2/models/scale/versions/1/infer?foo=bar", json={"inputs": [json_input("x", "FP32", x)]})
    _, outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["y"], x)


# -- compressed request bodies -------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_json_request(client: TestClient, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    x = _x(3)
    body = compress(orjson.dumps({"inputs": [json_input("x", "FP32", x)]}))
    response = client.post(
        "/v2/models/scale/versions/2/infer",
        content=body,
        headers={"Content-Encoding": encoding, "Content-Type": "application/json"},
    )
    _, outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["y"], x * 2)


@pytest.mark.parametrize(("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)])
def test_compressed_binary_request(client: TestClient, encoding: str, compress: Callable[[bytes], bytes]) -> None:
    """The header length counts the uncompressed JSON, as tritonclient sends it."""
    x = _x(3)
    body, headers = binary_request([("x", "FP32", x)])
    response = client.post(
        "/v2/models/scale/versions/2/infer",
        content=compress(body),
        headers={**headers, "Content-Encoding": encoding},
    )
    _, outputs = outputs_of(response)
    np.testing.assert_array_equal(outputs["y"], x * 2)


# -- repository index ----------------------------------------------------------------------


def test_index_with_an_empty_body(client: TestClient) -> None:
    response = client.post("/v2/repository/index", content=b"")
    assert response.status_code == 200, response.text
    entries = response.json()
    assert {"name": "scale", "version": "2", "state": "READY", "reason": ""} in entries
    assert all(set(e) == {"name", "version", "state", "reason"} for e in entries)


def test_index_with_no_content_length(client: TestClient) -> None:
    """tritonclient may send a chunked, empty body."""

    def nothing() -> Iterator[bytes]:
        yield from ()

    response = client.post("/v2/repository/index", content=nothing())
    assert response.status_code == 200, response.text
    assert any(e["name"] == "digits" for e in response.json())


def test_index_ready_filter(client: TestClient) -> None:
    everything = client.post("/v2/repository/index", json={}).json()
    ready = client.post("/v2/repository/index", json={"ready": True}).json()
    assert ready and all(e["state"] == "READY" for e in ready)
    assert [e for e in everything if e["state"] == "READY"] == ready
    names = set(index_of(client))
    assert {"add_sub/1", "scale/1", "scale/2", "digits/1", "upper/1"} <= names


# -- statistics ----------------------------------------------------------------------------


def test_statistics_count_the_requests_made(client: TestClient) -> None:
    before = stats_of(client, "scale", "1")
    rows = [1, 3, 2]
    for n in rows:
        outputs_of(client.post("/v2/models/scale/versions/1/infer", json={"inputs": [json_input("x", "FP32", _x(n))]}))
    bad = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}
    error_of(client.post("/v2/models/scale/versions/1/infer", json=bad), 400)
    after = stats_of(client, "scale", "1")

    assert after["name"] == "scale" and after["version"] == "1"
    success = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    fail = after["inference_stats"]["fail"]["count"] - before["inference_stats"]["fail"]["count"]
    assert success == len(rows)
    assert fail == 1
    assert after["inference_count"] - before["inference_count"] == sum(rows)
    assert after["execution_count"] - before["execution_count"] == len(rows)  # one at a time: no batching
    assert after["last_inference"] >= before["last_inference"]
    assert after["last_inference"] > 0
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    sizes = {b["batch_size"] for b in after["batch_stats"]}
    assert {1, 2, 3} <= sizes


def test_statistics_scopes(client: TestClient) -> None:
    every = client.get("/v2/models/stats").json()["model_stats"]
    assert {("scale", "1"), ("scale", "2"), ("digits", "1")} <= {(s["name"], s["version"]) for s in every}
    scale = client.get("/v2/models/scale/stats").json()["model_stats"]
    assert [(s["name"], s["version"]) for s in scale] == [("scale", "1"), ("scale", "2")]
    error_of(client.get("/v2/models/nope/stats"), 404)
    error_of(client.get("/v2/models/scale/versions/9/stats"), 404)
