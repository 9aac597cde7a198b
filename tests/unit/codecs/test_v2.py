"""ferry.codecs.v2: Open Inference Protocol V2 REST bodies, JSON and binary."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest

from ferry.codecs.v2 import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    V2Codec,
    V2Payload,
    decode_request,
    encode_response,
    split_body,
)
from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.inference import InferRequest, InferResponse, RequestedOutput

LIMIT = 1000


def _json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def _binary(doc: dict[str, Any], *chunks: bytes) -> tuple[bytes, str]:
    """A binary-extension body written by hand: JSON header, then the raw tensors."""
    header = orjson.dumps(doc)
    return header + b"".join(chunks), str(len(header))


def _fp32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def _tensor(name: str = "x", datatype: str = "FP32", shape: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": [2] if shape is None else shape, **extra}


def _binary_tensor(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return _tensor(name, datatype, shape, parameters={"binary_data_size": size})


def _decode_error(body: bytes, header: str | None = None, limit: int = LIMIT) -> str:
    with pytest.raises(InvalidInput) as info:
        decode_request(body, header, limit)
    assert info.value.status == 400
    return info.value.message


# -- decode: JSON bodies ---------------------------------------------------------------


def test_decode_json_request() -> None:
    body = _json(
        {
            "id": "req-1",
            "parameters": {"binary_data_output": True},
            "inputs": [
                _tensor("a", "FP32", [2, 2], data=[[1, 2], [3, 4]]),
                _tensor("b", "INT64", [3], data=[5, 6, 7]),
                _tensor("c", "BYTES", [1], data=["hi"]),
                _tensor("d", "BOOL", [2], data=[True, False]),
            ],
        }
    )
    request = decode_request(body, None, LIMIT)

    assert request.id == "req-1"
    assert request.parameters == {"binary_data_output": True}
    assert request.binary_output_default is True
    assert request.outputs is None
    assert list(request.inputs) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(request.inputs["a"], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert request.inputs["a"].dtype == np.float32
    assert request.inputs["b"].dtype == np.int64
    assert request.inputs["c"].tolist() == [b"hi"]
    assert request.inputs["d"].tolist() == [True, False]


def test_decode_flat_json_data_takes_the_declared_shape() -> None:
    body = _json({"inputs": [_tensor("a", "INT32", [2, 3], data=[1, 2, 3, 4, 5, 6])]})
    array = decode_request(body, None, LIMIT).inputs["a"]
    assert array.shape == (2, 3)
    assert array[1].tolist() == [4, 5, 6]


def test_decode_nested_json_data_with_a_different_nesting_takes_the_declared_shape() -> None:
    body = _json({"inputs": [_tensor("a", "INT32", [3, 2], data=[[1, 2, 3], [4, 5, 6]])]})
    assert decode_request(body, None, LIMIT).inputs["a"].tolist() == [[1, 2], [3, 4], [5, 6]]


def test_decode_scalar_shape() -> None:
    body = _json({"inputs": [_tensor("a", "FP64", [], data=[2.5])]})
    array = decode_request(body, None, LIMIT).inputs["a"]
    assert array.shape == ()
    assert float(array) == 2.5


def test_decode_header_length_covering_the_whole_body_means_no_binary_part() -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2])]})
    assert decode_request(body, str(len(body)), LIMIT).inputs["a"].tolist() == [1.0, 2.0]


def test_decode_keeps_empty_string_id() -> None:
    body = _json({"id": "", "inputs": [_tensor("a", data=[1, 2])]})
    assert decode_request(body, None, LIMIT).id == ""


# -- decode: binary bodies -------------------------------------------------------------


def test_decode_binary_inputs_in_order() -> None:
    body, header = _binary(
        {"inputs": [_binary_tensor("a", "FP32", [2], 8), _binary_tensor("b", "INT16", [3], 6)]},
        _fp32(1.5, -2.0),
        struct.pack("<3h", 7, -8, 9),
    )
    request = decode_request(body, header, LIMIT)
    assert request.inputs["a"].tolist() == [1.5, -2.0]
    assert request.inputs["b"].dtype == np.int16
    assert request.inputs["b"].tolist() == [7, -8, 9]


def test_decode_mixed_json_and_binary_inputs_skip_json_ones_when_counting_offsets() -> None:
    body, header = _binary(
        {
            "inputs": [
                _binary_tensor("a", "FP32", [1], 4),
                _tensor("j", "INT32", [2], data=[10, 20]),
                _binary_tensor("b", "FP32", [2], 8),
            ]
        },
        _fp32(1.0),
        _fp32(2.0, 3.0),
    )
    request = decode_request(body, header, LIMIT)
    assert request.inputs["a"].tolist() == [1.0]
    assert request.inputs["j"].tolist() == [10, 20]
    assert request.inputs["b"].tolist() == [2.0, 3.0]


def test_decode_binary_bytes_input_with_length_prefixes() -> None:
    raw = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    body, header = _binary({"inputs": [_binary_tensor("s", "BYTES", [2], len(raw))]}, raw)
    assert decode_request(body, header, LIMIT).inputs["s"].tolist() == [b"abc", b""]


def test_decode_binary_bool_and_fp16() -> None:
    body, header = _binary(
        {"inputs": [_binary_tensor("b", "BOOL", [3], 3), _binary_tensor("h", "FP16", [2], 4)]},
        bytes([1, 0, 1]),
        struct.pack("<2e", 0.5, 8.0),
    )
    request = decode_request(body, header, LIMIT)
    assert request.inputs["b"].tolist() == [True, False, True]
    assert request.inputs["h"].dtype == np.float16
    assert request.inputs["h"].tolist() == [0.5, 8.0]


def test_decode_zero_size_binary_input() -> None:
    body, header = _binary({"inputs": [_binary_tensor("e", "FP32", [0, 3], 0)]})
    assert decode_request(body, header, LIMIT).inputs["e"].shape == (0, 3)


# -- decode: header length -------------------------------------------------------------


@pytest.mark.parametrize("header", ["abc", "1.5", "", "0x10", "1_0", " 2", "\u0662"])
def test_decode_header_length_must_be_an_integer(header: str) -> None:
    assert "must be a non-negative integer" in _decode_error(b"{}", header)


def test_decode_header_length_of_thousands_of_digits_is_bad_input() -> None:
    # int() refuses strings of 4,300 digits and more: that must not become a 500.
    assert "longer than the body" in _decode_error(b"{}", "9" * 5000)


@pytest.mark.parametrize("header", ["-1", "-100"])
def test_decode_negative_header_length(header: str) -> None:
    assert "must be a non-negative integer" in _decode_error(b'{"inputs": []}', header)


def test_decode_header_length_past_the_end_of_the_body() -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2])]})
    message = _decode_error(body, str(len(body) + 1))
    assert f"the body has {len(body)} bytes" in message


def test_decode_header_length_cutting_the_json_short() -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2])]})
    assert "malformed JSON" in _decode_error(body, str(len(body) - 3))


def test_split_body_gives_views_of_both_parts() -> None:
    json_part, binary = split_body(b"{}\x01\x02", "2")
    assert bytes(json_part) == b"{}"
    assert bytes(binary) == b"\x01\x02"
    json_part, binary = split_body(b"{}", None)
    assert bytes(json_part) == b"{}"
    assert len(binary) == 0


# -- decode: binary sizes --------------------------------------------------------------


def test_decode_binary_data_size_past_the_end_of_the_body() -> None:
    body, header = _binary({"inputs": [_binary_tensor("a", "FP32", [2], 8)]}, _fp32(1.0))
    message = _decode_error(body, header)
    assert "input 'a': binary_data_size 8 runs past the end of the body (4 bytes left)" in message


def test_decode_binary_input_without_header_length_has_no_bytes() -> None:
    body = _json({"inputs": [_binary_tensor("a", "FP32", [1], 4)]})
    assert "runs past the end of the body (0 bytes left)" in _decode_error(body, None)
    # Without the header the whole body is JSON, so raw bytes after it are malformed JSON.
    assert "malformed JSON" in _decode_error(body + _fp32(1.0), None)


def test_decode_leftover_binary_bytes() -> None:
    body, header = _binary({"inputs": [_binary_tensor("a", "FP32", [1], 4)]}, _fp32(1.0), b"junk")
    assert "the binary part of the body has 8 bytes but the inputs use 4" in _decode_error(body, header)


def test_decode_binary_part_with_only_json_inputs_is_leftover() -> None:
    body, header = _binary({"inputs": [_tensor("a", data=[1, 2])]}, b"\x00")
    assert "has 1 bytes but the inputs use 0" in _decode_error(body, header)


def test_decode_binary_size_that_does_not_match_the_shape() -> None:
    body, header = _binary({"inputs": [_binary_tensor("a", "FP32", [3], 8)]}, _fp32(1.0, 2.0))
    assert "binary data has 8 bytes, but shape [3] of FP32 needs 12" in _decode_error(body, header)


@pytest.mark.parametrize("size", [-1, 1.5, "4", True])
def test_decode_binary_data_size_must_be_a_non_negative_integer(size: Any) -> None:
    body, header = _binary({"inputs": [_tensor("a", "FP32", [1], parameters={"binary_data_size": size})]}, _fp32(1))
    assert "binary_data_size must be a non-negative integer" in _decode_error(body, header)


def test_decode_both_data_and_binary_data_size() -> None:
    item = _tensor("a", "FP32", [1], data=[1.0], parameters={"binary_data_size": 4})
    body, header = _binary({"inputs": [item]}, _fp32(1.0))
    assert "both data and binary_data_size" in _decode_error(body, header)


# -- decode: structure -----------------------------------------------------------------


def test_decode_duplicate_inputs() -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2]), _tensor("a", data=[3, 4])]})
    assert "input 'a' appears more than once" in _decode_error(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "malformed JSON"),
        (b"", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"{}", 'non-empty "inputs" list'),
        (b'{"inputs": []}', 'non-empty "inputs" list'),
        (b'{"inputs": {"name": "a"}}', 'non-empty "inputs" list'),
        (b'{"inputs": [1]}', "inputs[0] must be an object"),
        (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', 'inputs[0] needs a "name" string'),
        (b'{"inputs": [{"name": "", "datatype": "FP32", "shape": [1], "data": [1]}]}', 'needs a "name" string'),
        (b'{"inputs": [{"name": 3, "datatype": "FP32", "shape": [1], "data": [1]}]}', 'needs a "name" string'),
        (b'{"inputs": [{"name": "a", "shape": [1], "data": [1]}]}', "input 'a' needs a \"datatype\" string"),
        (b'{"inputs": [{"name": "a", "datatype": "FP8", "shape": [1], "data": [1]}]}', "unknown datatype 'FP8'"),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "data": [1]}]}', '"shape" must be a list'),
        (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1]}]}', "neither data nor binary_data_size"),
    ],
)
def test_decode_malformed_requests(body: bytes, expected: str) -> None:
    assert expected in _decode_error(body)


@pytest.mark.parametrize("shape", [[-1, 2], [2, -1], "2", 2, [1.0], [True], [None], {"0": 1}])
def test_decode_shape_must_be_non_negative_integers(shape: Any) -> None:
    body = _json({"inputs": [_tensor("a", shape=shape, data=[1, 2])]})
    assert '"shape" must be a list of non-negative integers' in _decode_error(body)


@pytest.mark.parametrize(("shape", "data"), [([3], [1, 2]), ([2, 2], [1, 2, 3]), ([1], [[1, 2]]), ([0], [1])])
def test_decode_element_count_must_match_the_shape(shape: list[int], data: list[Any]) -> None:
    body = _json({"inputs": [_tensor("a", shape=shape, data=data)]})
    assert f"shape {shape} needs" in _decode_error(body)


def test_decode_json_data_errors_name_the_input() -> None:
    body = _json({"inputs": [_tensor("a", "INT32", [2], data=[1.5, 2])]})
    assert "input 'a': INT32 data must be integers" in _decode_error(body)


@pytest.mark.parametrize("shape", [[1001], [10, 101], [2**40, 2**40]])
def test_decode_too_many_elements_is_payload_too_large(shape: list[int]) -> None:
    body = _json({"inputs": [_tensor("a", shape=shape, data=[1])]})
    with pytest.raises(PayloadTooLarge, match="elements; the limit is 1000") as info:
        decode_request(body, None, LIMIT)
    assert info.value.status == 413


def test_decode_too_many_elements_is_refused_before_reading_binary_data() -> None:
    body, header = _binary({"inputs": [_binary_tensor("a", "FP32", [2000], 8000)]}, b"\0" * 8000)
    with pytest.raises(PayloadTooLarge):
        decode_request(body, header, LIMIT)


def test_decode_the_limit_itself_is_allowed() -> None:
    body = _json({"inputs": [_tensor("a", "UINT8", [LIMIT], data=[1] * LIMIT)]})
    assert decode_request(body, None, LIMIT).inputs["a"].size == LIMIT


@pytest.mark.parametrize("shape", [[0, 2**62], [0, 2**40, 2**40], [0, 1001]])
def test_decode_empty_shape_with_huge_dimensions_is_payload_too_large(shape: list[int]) -> None:
    body = _json({"inputs": [_tensor("a", shape=shape, data=[])]})
    with pytest.raises(PayloadTooLarge):
        decode_request(body, None, LIMIT)
    body, header = _binary({"inputs": [_binary_tensor("a", "FP32", shape, 0)]})
    with pytest.raises(PayloadTooLarge):
        decode_request(body, header, LIMIT)


@pytest.mark.parametrize("rank", [33, 70])
def test_decode_too_many_dimensions_is_invalid_input(rank: int) -> None:
    body = _json({"inputs": [_tensor("a", shape=[1] * rank, data=[1])]})
    assert "the limit is 32" in _decode_error(body)


def test_decode_empty_shape_with_moderate_dimensions_is_fine() -> None:
    body = _json({"inputs": [_tensor("a", shape=[0, 1000], data=[])]})
    assert decode_request(body, None, LIMIT).inputs["a"].shape == (0, 1000)


@pytest.mark.parametrize("request_id", [1, 1.5, ["a"], {"a": 1}, True])
def test_decode_id_must_be_a_string(request_id: Any) -> None:
    body = _json({"id": request_id, "inputs": [_tensor("a", data=[1, 2])]})
    assert '"id" must be a string' in _decode_error(body)


def test_decode_null_id_is_no_id() -> None:
    body = _json({"id": None, "inputs": [_tensor("a", data=[1, 2])]})
    assert decode_request(body, None, LIMIT).id is None


@pytest.mark.parametrize("parameters", [[1], "x", 5])
def test_decode_request_parameters_must_be_an_object(parameters: Any) -> None:
    body = _json({"parameters": parameters, "inputs": [_tensor("a", data=[1, 2])]})
    assert '"parameters" must be an object' in _decode_error(body)


def test_decode_input_parameters_must_be_an_object() -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2], parameters=[1])]})
    assert "input 'a': \"parameters\" must be an object" in _decode_error(body)


def test_decode_timeout_parameter_is_in_microseconds() -> None:
    body = _json({"parameters": {"timeout": 250_000}, "inputs": [_tensor("a", data=[1, 2])]})
    assert decode_request(body, None, LIMIT).timeout_s == pytest.approx(0.25)


# -- decode: requested outputs ---------------------------------------------------------


def test_decode_requested_outputs() -> None:
    body = _json(
        {
            "inputs": [_tensor("a", data=[1, 2])],
            "outputs": [
                {"name": "y"},
                {"name": "z", "parameters": {"binary_data": True, "other": 1}},
                {"name": "w", "parameters": {"binary_data": False}},
            ],
        }
    )
    outputs = decode_request(body, None, LIMIT).outputs
    assert outputs == [
        RequestedOutput("y", None, {}),
        RequestedOutput("z", True, {"binary_data": True, "other": 1}),
        RequestedOutput("w", False, {"binary_data": False}),
    ]


def test_decode_empty_outputs_list_is_kept() -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2])], "outputs": []})
    assert decode_request(body, None, LIMIT).outputs == []


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ({"name": "y"}, '"outputs" must be a list'),
        (["y"], 'outputs[0] needs a "name" string'),
        ([{"name": "y"}, {}], 'outputs[1] needs a "name" string'),
        ([{"name": 1}], 'outputs[0] needs a "name" string'),
        ([{"name": "y", "parameters": [1]}], "output 'y': \"parameters\" must be an object"),
    ],
)
def test_decode_malformed_outputs(outputs: Any, expected: str) -> None:
    body = _json({"inputs": [_tensor("a", data=[1, 2])], "outputs": outputs})
    assert expected in _decode_error(body)


# -- encode ----------------------------------------------------------------------------


def _response(**outputs: np.ndarray) -> InferResponse:
    return InferResponse(model_name="m", model_version="3", outputs=outputs, id="abc")


def _split(encoded_body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    if header_length is None:
        return orjson.loads(encoded_body), b""
    return orjson.loads(encoded_body[:header_length]), encoded_body[header_length:]


def test_encode_json_response() -> None:
    response = _response(y=np.array([[1.5, 2.0]], dtype=np.float32), n=np.array([3, 4], dtype=np.int64))
    encoded = encode_response(response, InferRequest(inputs={}))

    assert encoded.content_type == JSON_CONTENT_TYPE
    assert encoded.header_length is None
    assert orjson.loads(encoded.body) == {
        "model_name": "m",
        "model_version": "3",
        "id": "abc",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.0]},
            {"name": "n", "datatype": "INT64", "shape": [2], "data": [3, 4]},
        ],
    }


def test_encode_leaves_out_id_when_the_request_had_none() -> None:
    response = InferResponse("m", "1", {"y": np.zeros(1, dtype=np.float32)})
    doc = orjson.loads(encode_response(response, InferRequest(inputs={})).body)
    assert "id" not in doc


def test_encode_json_bytes_bool_and_fp16() -> None:
    response = _response(
        s=np.array([b"a", "\u00e9".encode()], dtype=object),
        b=np.array([True, False]),
        h=np.array([0.5, 2.0], dtype=np.float16),
    )
    doc = orjson.loads(encode_response(response, InferRequest(inputs={})).body)
    by_name = {o["name"]: o for o in doc["outputs"]}
    assert by_name["s"]["datatype"] == "BYTES"
    assert by_name["s"]["data"] == ["a", "\u00e9"]
    assert by_name["b"]["datatype"] == "BOOL"
    assert by_name["b"]["data"] == [True, False]
    assert by_name["h"]["datatype"] == "FP16"
    assert by_name["h"]["data"] == [0.5, 2.0]


def test_encode_json_output_is_flat_in_row_major_order() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3).T
    doc = orjson.loads(encode_response(_response(y=array), InferRequest(inputs={})).body)
    assert doc["outputs"][0]["shape"] == [3, 2]
    assert doc["outputs"][0]["data"] == [0, 3, 1, 4, 2, 5]


def test_encode_binary_data_output_makes_every_output_binary() -> None:
    y = np.array([1.0, 2.0], dtype=np.float32)
    s = np.array([b"xy", b"\xff"], dtype=object)
    request = InferRequest(inputs={}, parameters={"binary_data_output": True})

    encoded = encode_response(_response(y=y, s=s), request)

    assert encoded.content_type == BINARY_CONTENT_TYPE
    assert encoded.header_length is not None
    doc, binary = _split(encoded.body, encoded.header_length)
    assert doc["id"] == "abc"
    assert [o["parameters"] for o in doc["outputs"]] == [{"binary_data_size": 8}, {"binary_data_size": 11}]
    assert all("data" not in o for o in doc["outputs"])
    assert binary == _fp32(1.0, 2.0) + struct.pack("<I", 2) + b"xy" + struct.pack("<I", 1) + b"\xff"


def test_encode_per_output_binary_flag() -> None:
    request = InferRequest(inputs={}, outputs=[RequestedOutput("b", binary=True), RequestedOutput("a")])
    response = _response(a=np.array([1, 2], dtype=np.int32), b=np.array([3.0], dtype=np.float64))

    encoded = encode_response(response, request)

    doc, binary = _split(encoded.body, encoded.header_length)
    a, b = doc["outputs"]
    assert a["data"] == [1, 2]
    assert "parameters" not in a
    assert b["parameters"] == {"binary_data_size": 8}
    assert "data" not in b
    assert binary == struct.pack("<d", 3.0)


def test_encode_per_output_false_wins_over_binary_data_output() -> None:
    request = InferRequest(
        inputs={}, parameters={"binary_data_output": True}, outputs=[RequestedOutput("a", binary=False)]
    )
    response = _response(a=np.array([1], dtype=np.uint8), b=np.array([7], dtype=np.uint8))
    encoded = encode_response(response, request)
    doc, binary = _split(encoded.body, encoded.header_length)
    assert doc["outputs"][0]["data"] == [1]
    assert doc["outputs"][1]["parameters"] == {"binary_data_size": 1}
    assert binary == b"\x07"


def test_encode_all_outputs_json_when_every_one_is_refused_binary() -> None:
    request = InferRequest(
        inputs={}, parameters={"binary_data_output": True}, outputs=[RequestedOutput("a", binary=False)]
    )
    encoded = encode_response(_response(a=np.array([1], dtype=np.uint8)), request)
    assert encoded.content_type == JSON_CONTENT_TYPE
    assert encoded.header_length is None


def test_encode_header_length_is_the_json_length_exactly() -> None:
    request = InferRequest(inputs={}, parameters={"binary_data_output": True})
    response = _response(y=np.array([[1, 2, 3]], dtype=np.int16))
    encoded = encode_response(response, request)
    assert encoded.header_length == len(encoded.body) - 6
    assert encoded.body[: encoded.header_length].endswith(b"}")
    assert np.frombuffer(encoded.body[encoded.header_length :], dtype="<i2").tolist() == [1, 2, 3]


def test_encode_non_utf8_bytes_as_json_is_invalid_input() -> None:
    response = _response(s=np.array([b"\xff\xfe"], dtype=object))
    with pytest.raises(InvalidInput, match="binary_data"):
        encode_response(response, InferRequest(inputs={}))


def test_encode_bool_binary_is_one_byte_each() -> None:
    request = InferRequest(inputs={}, parameters={"binary_data_output": True})
    encoded = encode_response(_response(b=np.array([True, False, True])), request)
    _, binary = _split(encoded.body, encoded.header_length)
    assert binary == b"\x01\x00\x01"


def test_encoded_binary_response_decodes_back_as_a_request() -> None:
    y = np.array([[1.0, -2.0], [3.5, 4.0]], dtype=np.float32)
    s = np.array([b"one", b"\x00two"], dtype=object)
    request = InferRequest(inputs={}, outputs=[RequestedOutput("y", binary=True), RequestedOutput("s", binary=True)])
    encoded = encode_response(_response(y=y, s=s), request)

    doc, binary = _split(encoded.body, encoded.header_length)
    header = orjson.dumps({"inputs": doc["outputs"]})
    decoded = decode_request(header + binary, str(len(header)), LIMIT)

    np.testing.assert_array_equal(decoded.inputs["y"], y)
    assert decoded.inputs["s"].tolist() == s.tolist()


# -- the DataPlane's view --------------------------------------------------------------


def test_codec_decodes_payload_and_encodes_response() -> None:
    codec = V2Codec(max_elements=4)
    body, header = _binary({"inputs": [_binary_tensor("a", "FP32", [2], 8)]}, _fp32(1.0, 2.0))
    request = codec.decode(V2Payload(body, header), signature=None)
    assert request.inputs["a"].tolist() == [1.0, 2.0]

    encoded = codec.encode(_response(y=request.inputs["a"] * 2), request)
    assert orjson.loads(encoded.body)["outputs"][0]["data"] == [2.0, 4.0]

    too_big = _json({"inputs": [_tensor("a", shape=[5], data=[1] * 5)]})
    with pytest.raises(PayloadTooLarge):
        codec.decode(V2Payload(too_big, None), signature=None)
