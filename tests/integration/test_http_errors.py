"""Every bad request gets ``{"error": "..."}`` with the status DESIGN.md lists, and the
server goes on serving afterwards."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from ferry.settings import Settings
from tests.integration.serving import HEADER, binary_request, error_of, json_input, outputs_of, serve

SCALE = "/v2/models/scale/versions/1/infer"
ADD_SUB = "/v2/models/add_sub/infer"
X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def _x(**overrides: Any) -> dict[str, Any]:
    return {"inputs": [{**json_input("x", "FP32", X), **overrides}]}


def _add_sub(*names: str) -> dict[str, Any]:
    value = np.zeros((1, 16), dtype=np.float32)
    return {"inputs": [json_input(name, "FP32", value) for name in names]}


def _still_serving(client: TestClient) -> None:
    assert client.get("/v2/health/ready").status_code == 200
    _, outputs = outputs_of(client.post(SCALE, json={"inputs": [json_input("x", "FP32", X)]}))
    np.testing.assert_array_equal(outputs["y"], X)


@pytest.fixture(autouse=True)
def keeps_serving(client: TestClient) -> Iterator[None]:
    yield
    _still_serving(client)


# -- JSON requests -------------------------------------------------------------------------


JSON_CASES: dict[str, tuple[str, Any, str]] = {
    "not-an-object": (SCALE, [1, 2], "JSON object"),
    "no-inputs": (SCALE, {"outputs": []}, "inputs"),
    "empty-inputs": (SCALE, {"inputs": []}, "inputs"),
    "input-not-an-object": (SCALE, {"inputs": [3]}, "inputs[0]"),
    "input-without-name": (SCALE, {"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}, "name"),
    "wrong-datatype": (SCALE, _x(datatype="FP64"), "datatype"),
    "unknown-datatype": (SCALE, _x(datatype="FLOAT32"), "FLOAT32"),
    "wrong-rank": (SCALE, _x(shape=[4]), "rank"),
    "wrong-fixed-dim": (SCALE, _x(shape=[2, 2]), "shape"),
    "count-vs-data": (SCALE, _x(shape=[1, 4], data=[1.0, 2.0, 3.0]), "values"),
    "negative-dim": (SCALE, _x(shape=[-1, 4]), "shape"),
    "shape-not-a-list": (SCALE, _x(shape="1,4"), "shape"),
    "strings-for-numbers": (SCALE, _x(data=["a", "b", "c", "d"]), "numbers"),
    "null-in-data": (SCALE, _x(data=[1.0, None, 3.0, 4.0]), "x"),
    "bools-for-numbers": (SCALE, _x(data=[True, False, True, False]), "numbers"),
    "a-bool-among-floats": (SCALE, _x(data=[True, 2.0, 3.0, 4.0]), "input 'x': FP32 data must be numbers"),
    "ragged-data": (SCALE, _x(data=[[1.0, 2.0], [3.0]]), "ragged"),
    "object-as-data": (SCALE, _x(data={"a": 1}), "x"),
    "no-data": (SCALE, {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4]}]}, "neither"),
    "floats-for-int": (
        "/v2/models/identity_int32/infer",
        {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 2], "data": [1.5, 2.0]}]},
        "integers",
    ),
    "a-bool-among-ints": (
        "/v2/models/identity_int32/infer",
        {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 3], "data": [True, 0, 3]}]},
        "input 'INPUT0': INT32 data must be integers, not true/false",
    ),
    "int-out-of-range": (
        "/v2/models/identity_int32/infer",
        {"inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [1, 1], "data": [2**40]}]},
        "range",
    ),
    "negative-uint8": (
        "/v2/models/identity_uint8/infer",
        {"inputs": [{"name": "INPUT0", "datatype": "UINT8", "shape": [1, 1], "data": [-1]}]},
        "range",
    ),
    "numbers-for-bool": (
        "/v2/models/identity_bool/infer",
        {"inputs": [{"name": "INPUT0", "datatype": "BOOL", "shape": [1, 2], "data": [1, 0]}]},
        "BOOL",
    ),
    "numbers-for-bytes": (
        "/v2/models/identity_bytes/infer",
        {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 2], "data": [1, 2]}]},
        "BYTES",
    ),
    "missing-input": (ADD_SUB, _add_sub("INPUT0"), "INPUT1"),
    "unknown-input": (ADD_SUB, _add_sub("INPUT0", "INPUT1", "INPUT9"), "INPUT9"),
    "duplicate-input": (ADD_SUB, _add_sub("INPUT0", "INPUT0", "INPUT1"), "more than once"),
    "unknown-output": (SCALE, {**_x(), "outputs": [{"name": "nope"}]}, "nope"),
    "outputs-not-a-list": (SCALE, {**_x(), "outputs": {"name": "y"}}, "outputs"),
    "output-without-name": (SCALE, {**_x(), "outputs": [{}]}, "outputs[0]"),
    "id-not-a-string": (SCALE, {**_x(), "id": 7}, "id"),
    "parameters-not-an-object": (SCALE, {**_x(), "parameters": [1]}, "parameters"),
}


@pytest.mark.parametrize("case", list(JSON_CASES))
def test_bad_json_request_is_400(client: TestClient, case: str) -> None:
    url, body, mentions = JSON_CASES[case]
    message = error_of(client.post(url, json=body), 400)
    assert mentions.lower() in message.lower(), message


@pytest.mark.parametrize("body", [b"{", b'{"inputs": [}', b"", b"\xff\xfe", b"NaN"], ids=repr)
def test_malformed_json_is_400(client: TestClient, body: bytes) -> None:
    error_of(client.post(SCALE, content=body, headers={"Content-Type": "application/json"}), 400)


# -- binary requests -----------------------------------------------------------------------


def _binary(header: dict[str, Any], data: bytes, length: int | str | None = None) -> tuple[bytes, dict[str, str]]:
    json_part = orjson.dumps(header)
    return json_part + data, {HEADER: str(len(json_part) if length is None else length)}


def _x_header(size: int, shape: list[int] | None = None) -> dict[str, Any]:
    spec = {"name": "x", "datatype": "FP32", "shape": shape or [1, 4], "parameters": {"binary_data_size": size}}
    return {"inputs": [spec]}


BINARY_CASES: dict[str, tuple[str, tuple[bytes, dict[str, str]]]] = {
    "header-longer-than-body": (SCALE, _binary(_x_header(16), X.tobytes(), 10_000)),
    "negative-header-length": (SCALE, _binary(_x_header(16), X.tobytes(), -1)),
    "non-integer-header-length": (SCALE, _binary(_x_header(16), X.tobytes(), "ten")),
    "header-length-cuts-the-json": (SCALE, _binary(_x_header(16), X.tobytes(), 5)),
    "size-past-the-end": (SCALE, _binary(_x_header(32), X.tobytes())),
    "bytes-left-over": (SCALE, _binary(_x_header(16), X.tobytes() + b"\0\0\0\0")),
    "size-vs-shape": (SCALE, _binary(_x_header(12), X.tobytes()[:12])),
    "negative-size": (SCALE, _binary(_x_header(-4), b"")),
    "both-data-and-size": (
        SCALE,
        _binary({"inputs": [{**json_input("x", "FP32", X), "parameters": {"binary_data_size": 16}}]}, X.tobytes()),
    ),
    "bytes-element-overrun": (
        "/v2/models/identity_bytes/infer",
        _binary(
            {
                "inputs": [
                    {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1], "parameters": {"binary_data_size": 6}}
                ]
            },
            struct.pack("<I", 100) + b"ab",
        ),
    ),
    "bytes-too-few-elements": (
        "/v2/models/identity_bytes/infer",
        _binary(
            {
                "inputs": [
                    {"name": "INPUT0", "datatype": "BYTES", "shape": [1, 2], "parameters": {"binary_data_size": 6}}
                ]
            },
            struct.pack("<I", 2) + b"ab",
        ),
    ),
}


@pytest.mark.parametrize("case", list(BINARY_CASES))
def test_bad_binary_request_is_400(client: TestClient, case: str) -> None:
    url, (body, headers) = BINARY_CASES[case]
    error_of(client.post(url, content=body, headers=headers), 400)


def test_binary_request_without_the_header_is_400(client: TestClient) -> None:
    body, _ = binary_request([("x", "FP32", X)])
    error_of(client.post(SCALE, content=body), 400)


# -- models, versions, routes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/v2/models/nope/infer", 404),
        ("POST", "/v2/models/nope/versions/1/infer", 404),
        ("POST", "/v2/models/scale/versions/3/infer", 404),
        ("POST", "/v2/models/scale/versions/one/infer", 400),
        ("POST", "/v2/models/scale/versions/-1/infer", 400),
        ("POST", "/v2/models/scale/versions/\u00b2/infer", 400),  # isdigit() but not int()
        ("GET", "/v2/models/scale/versions/1.0", 400),
        ("GET", "/v2/models/nope", 404),
        ("GET", "/v2/models/scale/versions/3", 404),
        ("GET", "/v2/models/scale/versions/x1", 400),
        ("GET", "/v2/models/nope/config", 404),
        ("GET", "/v2/models/scale/versions/3/config", 404),
        ("GET", "/v2/models/scale/versions/3/ready", 404),
        ("GET", "/v2/models/scale/versions/abc/ready", 400),
        ("GET", "/v2/nowhere", 404),
        ("GET", "/nowhere", 404),
        ("POST", "/v2/repository/models/nope/load", 404),
        ("POST", "/v2/repository/models/nope/unload", 404),
        ("GET", "/v2/models/scale/infer", 405),
    ],
)
def test_unknown_things(client: TestClient, method: str, path: str, status: int) -> None:
    json = {"inputs": [json_input("x", "FP32", X)]} if method == "POST" else None
    error_of(client.request(method, path, json=json), status)


HUGE_VERSION = "9" * 5000  # int() refuses more than 4,300 digits with a ValueError
PAST_64_BITS = str(2**63)


@pytest.mark.parametrize("version", [HUGE_VERSION, PAST_64_BITS, "0" * 5000 + "1" + "0" * 19])
@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("POST", "/v2/models/scale/versions/{}/infer"),
        ("GET", "/v2/models/scale/versions/{}"),
        ("GET", "/v2/models/scale/versions/{}/ready"),
        ("GET", "/v2/models/scale/versions/{}/config"),
        ("GET", "/v2/models/scale/versions/{}/stats"),
    ],
)
def test_a_version_past_64_bits_is_400_on_every_route(
    client: TestClient, method: str, route: str, version: str
) -> None:
    json = {"inputs": [json_input("x", "FP32", X)]} if method == "POST" else None
    message = error_of(client.request(method, route.format(version), json=json), 400)
    assert message.startswith("version must be a positive integer of at most 19 digits")
    assert len(message) < 200  # the 5,000 digits are not echoed back
    assert client.get("/v2/health/ready").status_code == 200


def test_a_version_with_leading_zeros_is_that_version(client: TestClient) -> None:
    assert client.get("/v2/models/scale/versions/" + "0" * 5000 + "1/ready").status_code == 200


def test_load_with_inline_files_is_refused(client: TestClient) -> None:
    body = {"parameters": {"config": "{}", "file:1/model.onnx": "AAAA"}}
    message = error_of(client.post("/v2/repository/models/scale/load", json=body), 400)
    assert "config" in message


def test_repository_index_with_a_bad_body(client: TestClient) -> None:
    error_of(client.post("/v2/repository/index", content=b"[1]"), 400)
    error_of(client.post("/v2/repository/index", content=b"{oops"), 400)


# -- encodings -----------------------------------------------------------------------------


def test_unsupported_content_encoding_is_400(client: TestClient) -> None:
    body = orjson.dumps({"inputs": [json_input("x", "FP32", X)]})
    message = error_of(client.post(SCALE, content=body, headers={"Content-Encoding": "br"}), 400)
    assert "br" in message


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_corrupt_compressed_body_is_400(client: TestClient, encoding: str) -> None:
    error_of(client.post(SCALE, content=b"definitely not compressed", headers={"Content-Encoding": encoding}), 400)


def test_truncated_gzip_body_is_400(client: TestClient) -> None:
    body = gzip.compress(orjson.dumps({"inputs": [json_input("x", "FP32", X)]}))
    error_of(client.post(SCALE, content=body[: len(body) // 2], headers={"Content-Encoding": "gzip"}), 400)


# -- limits --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(model_repo: Path) -> Iterator[TestClient]:
    with serve([model_repo], Settings(max_body_bytes=1024, max_tensor_elements=4096, auth=False)) as running:
        yield running


def test_body_over_the_limit_is_413(small: TestClient) -> None:
    x = np.zeros((100, 4), dtype=np.float32)
    message = error_of(small.post(SCALE, json={"inputs": [json_input("x", "FP32", x)]}), 413)
    assert "1024" in message
    body, headers = binary_request([("x", "FP32", x)])
    error_of(small.post(SCALE, content=body, headers=headers), 413)
    _still_serving(small)


def test_chunked_body_over_the_limit_is_413(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b" " * 200

    error_of(small.post(SCALE, content=chunks()), 413)
    _still_serving(small)


def test_decompression_bomb_is_413(small: TestClient) -> None:
    inflated = orjson.dumps({"inputs": [json_input("x", "FP32", X)]}) + b" " * 100_000
    body = gzip.compress(inflated)
    assert len(body) < 1024
    error_of(small.post(SCALE, content=body, headers={"Content-Encoding": "gzip"}), 413)
    _still_serving(small)


def test_tensor_over_the_element_limit_is_413(small: TestClient) -> None:
    # Declared large, sent small: refused before any data is read.
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [100_000, 4], "data": [0.0]}]}
    error_of(small.post(SCALE, json=body), 413)
    error_of(small.post("/v1/models/scale:predict", json={"instances": [[0, 0, 0, 0]] * 1025}), 413)
    _still_serving(small)


def test_body_over_the_limit_on_v1_and_repository(small: TestClient) -> None:
    error_of(small.post("/v1/models/scale:predict", content=b" " * 2048), 413)
    error_of(small.post("/v2/repository/index", content=b" " * 2048), 413)
    _still_serving(small)
