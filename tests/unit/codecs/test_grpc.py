"""The gRPC codec: ModelInferRequest (raw or typed contents) <-> numpy, both ways."""

from __future__ import annotations

import numpy as np
import pytest

from ferry.codecs.grpc import decode_request, encode_response
from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.inference import InferResponse

LIMIT = 1 << 20
ARRAYS = {
    "BOOL": np.array([[True, False, True]]),
    "UINT8": np.array([[0, 7, 255]], dtype=np.uint8),
    "UINT16": np.array([[0, 7, 65535]], dtype=np.uint16),
    "UINT32": np.array([[0, 7, 2**32 - 1]], dtype=np.uint32),
    "UINT64": np.array([[0, 7, 2**64 - 1]], dtype=np.uint64),
    "INT8": np.array([[-128, 0, 127]], dtype=np.int8),
    "INT16": np.array([[-3, 0, 3]], dtype=np.int16),
    "INT32": np.array([[-(2**31), 0, 2**31 - 1]], dtype=np.int32),
    "INT64": np.array([[-(2**63), 0, 2**63 - 1]], dtype=np.int64),
    "FP16": np.array([[0.5, -1.0, 2.0]], dtype=np.float16),
    "FP32": np.array([[0.5, -1.0, 2.25]], dtype=np.float32),
    "FP64": np.array([[0.1, -1.0, 1e300]], dtype=np.float64),
    "BYTES": np.array([[b"a", b"", b"\xff\x00"]], dtype=object),
}


def raw_of(array: np.ndarray, datatype: str) -> bytes:
    """Written here independently of the codec: little-endian, BYTES length-prefixed."""
    if datatype == "BYTES":
        return b"".join(len(x).to_bytes(4, "little") + x for x in array.reshape(-1))
    if datatype == "BOOL":
        return array.astype(np.uint8).tobytes()
    return array.astype(array.dtype.newbyteorder("<")).tobytes()


@pytest.mark.parametrize("datatype", list(ARRAYS))
def test_raw_inputs_decode_to_the_same_arrays(datatype: str) -> None:
    array = ARRAYS[datatype]
    message = pb.ModelInferRequest(model_name="m", id="7")
    message.inputs.add(name="x", datatype=datatype, shape=array.shape)
    message.raw_input_contents.append(raw_of(array, datatype))
    request = decode_request(message, LIMIT)
    assert request.raw and request.id == "7"
    decoded = request.inputs["x"]
    assert decoded.shape == array.shape
    assert decoded.tolist() == array.tolist()


@pytest.mark.parametrize("datatype", [d for d in ARRAYS if d != "FP16"])
def test_typed_contents_decode_to_the_same_arrays(datatype: str) -> None:
    array = ARRAYS[datatype]
    field = {
        "BOOL": "bool_contents",
        "UINT64": "uint64_contents",
        "INT64": "int64_contents",
        "FP32": "fp32_contents",
        "FP64": "fp64_contents",
        "BYTES": "bytes_contents",
    }.get(datatype, "uint_contents" if datatype.startswith("UINT") else "int_contents")
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype=datatype, shape=array.shape)
    getattr(tensor.contents, field).extend(array.reshape(-1).tolist())
    request = decode_request(message, LIMIT)
    assert not request.raw
    assert request.inputs["x"].dtype == (object if datatype == "BYTES" else array.dtype)
    assert request.inputs["x"].tolist() == array.tolist()


def test_parameters_and_requested_outputs() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.parameters["timeout"].int64_param = 2_000_000
    message.parameters["note"].string_param = "hi"
    message.inputs.add(name="x", datatype="FP32", shape=[1]).contents.fp32_contents.append(1.0)
    message.outputs.add(name="y").parameters["classification"].int64_param = 3
    request = decode_request(message, LIMIT)
    assert request.parameters == {"timeout": 2_000_000, "note": "hi"}
    assert request.timeout_s == 2.0
    assert request.outputs is not None and request.outputs[0].parameters == {"classification": 3}


def add_input(message: pb.ModelInferRequest, name: str, datatype: str, shape: list[int]) -> pb.ModelInferRequest:
    message.inputs.add(name=name, datatype=datatype, shape=shape)
    return message


@pytest.mark.parametrize(
    ("build", "error", "mentions"),
    [
        (lambda m: m, InvalidInput, "at least one input"),
        (lambda m: add_input(m, "x", "FP99", [1]), InvalidInput, "unknown datatype"),
        (lambda m: add_input(m, "x", "FP32", [-1]), InvalidInput, "non-negative"),
        (lambda m: add_input(m, "x", "FP32", [1] * 33), InvalidInput, "dimensions"),
        (lambda m: add_input(m, "x", "FP32", [LIMIT, 2]), PayloadTooLarge, "limit"),
        (lambda m: add_input(m, "x", "FP32", [2]), InvalidInput, "needs 2"),
        (lambda m: add_input(m, "x", "FP16", [0]), InvalidInput, "raw_input_contents"),
        (lambda m: add_input(add_input(m, "x", "FP32", [0]), "x", "FP32", [0]), InvalidInput, "more than once"),
        (lambda m: add_input(m, "", "FP32", [0]), InvalidInput, "needs a name"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(build: object, error: type[Exception], mentions: str) -> None:
    message = build(pb.ModelInferRequest(model_name="m"))  # type: ignore[operator]
    with pytest.raises(error, match=mentions):
        decode_request(message, LIMIT)


def test_out_of_range_typed_values_and_inconsistent_raw_entries_are_refused() -> None:
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    with pytest.raises(InvalidInput, match="out of range for INT8"):
        decode_request(message, LIMIT)
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[1])
    message.inputs.add(name="y", datatype="FP32", shape=[1])
    message.raw_input_contents.append(b"\0\0\0\0")
    with pytest.raises(InvalidInput, match="1 entries for 2 inputs"):
        decode_request(message, LIMIT)
    message = pb.ModelInferRequest(model_name="m")
    message.inputs.add(name="x", datatype="FP32", shape=[2])
    message.raw_input_contents.append(b"\0\0\0\0")
    with pytest.raises(InvalidInput, match="needs 8"):
        decode_request(message, LIMIT)


def test_answers_are_raw_for_raw_requests_and_typed_for_typed_ones() -> None:
    outputs = {"y": np.array([[1.5, 2.5]], dtype=np.float32), "label": np.array([b"cat"], dtype=object)}
    response = InferResponse("m", "2", outputs, id="9")
    raw = encode_response(response, raw=True)
    assert (raw.model_name, raw.model_version, raw.id) == ("m", "2", "9")
    assert [(o.name, o.datatype, list(o.shape)) for o in raw.outputs] == [
        ("y", "FP32", [1, 2]),
        ("label", "BYTES", [1]),
    ]
    assert list(raw.raw_output_contents) == [raw_of(outputs["y"], "FP32"), raw_of(outputs["label"], "BYTES")]
    typed = encode_response(response, raw=False)
    assert not typed.raw_output_contents
    assert list(typed.outputs[0].contents.fp32_contents) == [1.5, 2.5]
    assert list(typed.outputs[1].contents.bytes_contents) == [b"cat"]


def test_an_fp16_output_makes_a_typed_answer_raw_throughout() -> None:
    outputs = {"a": np.array([1, 2], dtype=np.int32), "h": np.array([0.5], dtype=np.float16)}
    message = encode_response(InferResponse("m", "1", outputs), raw=False)
    assert list(message.raw_output_contents) == [raw_of(outputs["a"], "INT32"), raw_of(outputs["h"], "FP16")]
    assert not any(o.HasField("contents") for o in message.outputs)


def test_a_big_typed_answer_holds_every_element_in_order() -> None:
    # Encoded in chunks (a whole output's tolist took 8 times its memory): none lost.
    values = np.arange(200_001, dtype=np.int64).reshape(1, -1)
    message = encode_response(InferResponse("m", "1", {"y": values}), raw=False)
    assert list(message.outputs[0].contents.int64_contents) == values.reshape(-1).tolist()
