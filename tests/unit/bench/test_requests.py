"""ferry.bench.requests: the tensors built from a model's metadata or a file, and their
three encodings, each read back by Ferry's own decoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ferry.bench.options import UsageError
from ferry.bench.requests import (
    InferInputs,
    Tensor,
    binary_body,
    grpc_message,
    input_shape,
    json_body,
    load_input_data,
    random_inputs,
)
from ferry.codecs import grpc as grpc_codec
from ferry.codecs import v2
from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.signature import DATATYPES, NUMPY_DTYPES, TensorSpec, datatype_of

MAX = 10**9


def spec(datatype: str, shape: tuple[int, ...] = (-1, 3), name: str = "x") -> TensorSpec:
    return TensorSpec(name, datatype, shape)


def test_the_batch_dimension_takes_the_batch_size_and_other_variable_dimensions_take_one() -> None:
    assert input_shape(spec("FP32", (-1, -1, 3)), 8) == [8, 1, 3]
    assert input_shape(spec("FP32", (-1,)), 4) == [4]
    assert input_shape(spec("FP32", (2, -1)), 8) == [2, 1]  # a fixed first dimension is no batch
    assert input_shape(spec("FP32", ()), 8) == []


@pytest.mark.parametrize("datatype", DATATYPES)
def test_random_inputs_have_the_metadata_s_datatype_and_shape(datatype: str) -> None:
    inputs = random_inputs((spec(datatype, (-1, 5, -1)),), batch=3)
    (tensor,) = inputs.tensors
    assert tensor.datatype == datatype
    assert datatype_of(tensor.array) == datatype
    assert tensor.array.shape == (3, 5, 1)
    assert inputs.rows == 3
    if datatype == "BYTES":
        assert all(isinstance(item, bytes) and len(item) == 8 for item in tensor.array.reshape(-1))
    elif datatype != "BOOL":
        assert tensor.array.dtype == NUMPY_DTYPES[datatype]


def test_random_values_are_reproducible_and_integers_stay_small() -> None:
    specs = (spec("INT8"), spec("UINT64", name="y"))
    first, second = random_inputs(specs, 4), random_inputs(specs, 4)
    for a, b in zip(first.tensors, second.tensors, strict=True):
        np.testing.assert_array_equal(a.array, b.array)
        assert a.array.min() >= 0 and a.array.max() < 100


def test_a_batch_needs_a_batch_dimension_on_every_input() -> None:
    specs = (spec("FP32", (-1, 3)), spec("FP32", (3,), name="y"))
    with pytest.raises(UsageError, match="no batch dimension"):
        random_inputs(specs, 2)
    unbatched = random_inputs(specs, 1)
    assert unbatched.rows == 1
    assert [t.array.shape for t in unbatched.tensors] == [(1, 3), (3,)]


def mixed_inputs() -> InferInputs:
    specs = (spec("FP16", (-1, 4), "half"), spec("BOOL", (-1, 2), "flag"), spec("BYTES", (-1,), "text"),
             spec("INT64", (-1, 3), "ids"))  # fmt: skip
    return random_inputs(specs, 2)


def assert_same(decoded: dict[str, np.ndarray], inputs: InferInputs) -> None:
    assert list(decoded) == [t.name for t in inputs.tensors]
    for tensor in inputs.tensors:
        got = decoded[tensor.name]
        assert datatype_of(got) == tensor.datatype
        assert got.shape == tensor.array.shape
        np.testing.assert_array_equal(got, tensor.array)


def test_the_json_body_is_read_back_by_ferry_s_decoder() -> None:
    inputs = mixed_inputs()
    body = json_body(inputs)
    assert body.headers == {"Content-Type": "application/json"}
    assert_same(v2.decode_request(body.body, None, MAX).inputs, inputs)


def test_the_binary_body_is_read_back_by_ferry_s_decoder_and_asks_for_binary_outputs() -> None:
    inputs = mixed_inputs()
    body = binary_body(inputs)
    length = body.headers["Inference-Header-Content-Length"]
    assert body.headers["Content-Type"] == "application/octet-stream"
    request = v2.decode_request(body.body, length, MAX)
    assert_same(request.inputs, inputs)
    assert request.binary_output_default
    header = json.loads(body.body[: int(length)])
    sizes = [t["parameters"]["binary_data_size"] for t in header["inputs"]]
    assert sum(sizes) == len(body.body) - int(length)


def test_binary_bytes_elements_are_a_little_endian_length_then_the_bytes() -> None:
    array = np.array([b"ab", b"", b"xyz"], dtype=object)
    body = binary_body(InferInputs((Tensor("text", "BYTES", array),), 3))
    raw = body.body[int(body.headers["Inference-Header-Content-Length"]) :]
    assert raw == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x03\x00\x00\x00xyz"


def test_binary_numbers_are_little_endian() -> None:
    array = np.array([1.0, -2.0], dtype=np.float16)
    body = binary_body(InferInputs((Tensor("h", "FP16", array),), 2))
    raw = body.body[int(body.headers["Inference-Header-Content-Length"]) :]
    assert raw == array.astype("<f2").tobytes() == b"\x00\x3c\x00\xc0"


def test_the_grpc_message_carries_raw_contents_read_back_by_ferry_s_decoder() -> None:
    inputs = mixed_inputs()
    message = pb.ModelInferRequest.FromString(grpc_message(inputs, "my-model"))
    assert message.model_name == "my-model"
    assert len(message.raw_input_contents) == len(inputs.tensors)
    assert not any(t.HasField("contents") for t in message.inputs)
    request = grpc_codec.decode_request(message, MAX)
    assert request.raw
    assert_same(request.inputs, inputs)


def test_input_data_is_read_as_a_v2_request_with_its_outputs(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]},
            {"name": "t", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]},
        ],
        "outputs": [{"name": "y"}],
    }))  # fmt: skip
    specs = (spec("FP32", (-1, 2)), spec("BYTES", (-1,), "t"))
    inputs = load_input_data(path, specs)
    assert inputs.rows == 2
    assert inputs.outputs == ("y",)
    described = [(t.name, t.datatype, t.array.shape) for t in inputs.tensors]
    assert described == [("x", "FP32", (2, 2)), ("t", "BYTES", (2,))]
    assert json.loads(json_body(inputs).body)["outputs"] == [{"name": "y"}]
    binary = binary_body(inputs)
    header = json.loads(binary.body[: int(binary.headers["Inference-Header-Content-Length"])])
    assert header["outputs"] == [{"name": "y", "parameters": {"binary_data": True}}]
    assert [o.name for o in pb.ModelInferRequest.FromString(grpc_message(inputs, "m")).outputs] == ["y"]


def test_input_data_without_a_batch_dimension_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 2], "data": [0] * 6}]}))
    assert load_input_data(path, (spec("FP32", (3, 2)),)).rows == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed JSON"),
        ('{"inputs": []}', "non-empty"),
        ('{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [1]}]}', "needs 3"),
    ],
)
def test_a_bad_input_data_file_is_a_usage_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "request.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        load_input_data(path, (spec("FP32"),))
    with pytest.raises(UsageError, match="No such file"):
        load_input_data(tmp_path / "missing.json", (spec("FP32"),))


def test_bytes_that_are_not_text_cannot_go_as_json() -> None:
    inputs = InferInputs((Tensor("b", "BYTES", np.array([b"\xff"], dtype=object)),), 1)
    with pytest.raises(UsageError, match="rest-binary or grpc"):
        json_body(inputs)
    assert binary_body(inputs).body.endswith(b"\x01\x00\x00\x00\xff")


def test_without_inputs_in_the_metadata_only_input_data_can_say_what_to_send(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--input-data"):
        random_inputs((), 1)
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [5, 1], "data": [1] * 5}]}))
    assert load_input_data(path, ()).rows == 5
