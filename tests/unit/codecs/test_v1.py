"""ferry.codecs.v1: KServe V1 / TensorFlow Serving style bodies."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from ferry.codecs.v1 import V1Codec, decode_request, encode_response
from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.inference import InferRequest, InferResponse
from ferry.signature import Signature, TensorSpec

LIMIT = 100

ONE_INPUT = Signature((TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("y", "FP32", (-1,)),))
TWO_INPUTS = Signature(
    (TensorSpec("a", "INT64", (-1, 2)), TensorSpec("b", "BYTES", (-1,))),
    (TensorSpec("y", "FP32", (-1,)),),
)


def _decode(doc: Any, signature: Signature = ONE_INPUT, limit: int = LIMIT) -> dict[str, np.ndarray]:
    return decode_request(orjson.dumps(doc), signature, limit)


def _error(doc: Any, signature: Signature = ONE_INPUT) -> str:
    with pytest.raises(InvalidInput) as info:
        _decode(doc, signature)
    assert info.value.status == 400
    return info.value.message


def _predictions(**outputs: np.ndarray) -> Any:
    return orjson.loads(encode_response(outputs))["predictions"]


# -- instances -------------------------------------------------------------------------


def test_instances_are_rows_of_the_single_input() -> None:
    inputs = _decode({"instances": [[1, 2], [3, 4], [5, 6]]})
    assert list(inputs) == ["x"]
    assert inputs["x"].shape == (3, 2)
    assert inputs["x"].dtype == np.float32
    assert inputs["x"][2].tolist() == [5.0, 6.0]


def test_instances_of_scalars_for_a_one_dimensional_input() -> None:
    signature = Signature((TensorSpec("n", "INT32", (-1,)),), ())
    inputs = _decode({"instances": [1, 2, 3]}, signature)
    assert inputs["n"].dtype == np.int32
    assert inputs["n"].tolist() == [1, 2, 3]


def test_instances_as_objects_for_several_inputs() -> None:
    inputs = _decode(
        {"instances": [{"a": [1, 2], "b": "first"}, {"b": "second", "a": [3, 4]}]},
        TWO_INPUTS,
    )
    assert inputs["a"].dtype == np.int64
    assert inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert inputs["b"].tolist() == [b"first", b"second"]


def test_instances_as_objects_for_a_single_input() -> None:
    inputs = _decode({"instances": [{"x": [1, 2]}, {"x": [3, 4]}]})
    assert inputs["x"].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_instances_b64_values_are_not_taken_for_objects() -> None:
    signature = Signature((TensorSpec("img", "BYTES", (-1,)),), ())
    raw = b"\x89PNG\x00"
    inputs = _decode({"instances": [{"b64": base64.b64encode(raw).decode()}, "text"]}, signature)
    assert inputs["img"].tolist() == [raw, b"text"]


def test_columnar_b64_value_is_not_taken_for_an_input_name() -> None:
    signature = Signature((TensorSpec("img", "BYTES", (-1,)),), ())
    raw = b"\x89PNG\x00"
    inputs = _decode({"inputs": {"b64": base64.b64encode(raw).decode()}}, signature)
    assert inputs["img"].tolist() == raw


def test_instances_must_be_a_non_empty_list() -> None:
    assert '"instances" must be a non-empty list' in _error({"instances": []})
    assert '"instances" must be a non-empty list' in _error({"instances": {"x": [1, 2]}})


def test_instances_must_be_objects_for_several_inputs() -> None:
    message = _error({"instances": [[1, 2]]}, TWO_INPUTS)
    assert "several inputs (a, b): each instance must be an object" in message


def test_instances_mixing_objects_and_rows() -> None:
    assert "each instance must be an object" in _error({"instances": [{"a": [1, 2], "b": "x"}, [1, 2]]}, TWO_INPUTS)


def test_instances_missing_an_input_in_some_rows() -> None:
    message = _error({"instances": [{"a": [1, 2], "b": "x"}, {"a": [3, 4]}]}, TWO_INPUTS)
    assert "input 'b' is missing from some instances" in message


def test_instances_naming_an_unknown_input() -> None:
    message = _error({"instances": [{"a": [1, 2], "c": 1}]}, TWO_INPUTS)
    assert "unknown input 'c'; the model expects: a, b" in message


# -- inputs (columnar) -----------------------------------------------------------------


def test_columnar_inputs_for_the_single_input() -> None:
    inputs = _decode({"inputs": [[1, 2]]})
    assert inputs["x"].tolist() == [[1.0, 2.0]]
    assert inputs["x"].dtype == np.float32


def test_columnar_inputs_by_name() -> None:
    inputs = _decode({"inputs": {"a": [[1, 2], [3, 4]], "b": ["p", "q"]}}, TWO_INPUTS)
    assert inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert inputs["b"].tolist() == [b"p", b"q"]


def test_columnar_inputs_must_be_an_object_for_several_inputs() -> None:
    assert '"inputs" must be an object' in _error({"inputs": [[1, 2]]}, TWO_INPUTS)


def test_columnar_inputs_naming_an_unknown_input() -> None:
    assert "unknown input 'z'" in _error({"inputs": {"z": [1]}})


# -- casting to the signature ----------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "data", "dtype"),
    [
        ("FP32", [1, 2], np.float32),
        ("FP64", [1.5, 2], np.float64),
        ("INT8", [-1, 2], np.int8),
        ("UINT16", [1, 65535], np.uint16),
        ("FP16", [0.5, 1], np.float16),
        ("BOOL", [True, False], np.bool_),
    ],
)
def test_values_are_cast_to_the_signature_datatype(datatype: str, data: list[Any], dtype: type) -> None:
    signature = Signature((TensorSpec("v", datatype, (-1,)),), ())
    array = _decode({"instances": data}, signature)["v"]
    assert array.dtype == np.dtype(dtype)
    assert array.tolist() == data


def test_empty_columnar_input_has_the_signature_dtype() -> None:
    signature = Signature((TensorSpec("v", "INT16", (-1,)),), ())
    assert _decode({"inputs": []}, signature)["v"].dtype == np.int16


@pytest.mark.parametrize(
    ("datatype", "data", "expected"),
    [
        ("INT32", [1.5], "INT32 data must be integers"),
        ("FP32", ["1"], "FP32 data must be numbers"),
        ("INT64", [True], "INT64 data must be integers"),
        ("INT32", [True, 0, 3], "INT32 data must be integers, not true/false"),
        ("FP32", [0.5, False], "FP32 data must be numbers, not true/false"),
        ("UINT8", [256], "out of range for UINT8"),
        ("FP32", [1e39], "out of range for FP32"),
        ("BOOL", [1], "BOOL data must be true/false"),
        ("BYTES", [1], "BYTES data must be strings"),
        ("FP32", [[1, 2], [3]], "ragged"),
    ],
)
def test_values_that_do_not_fit_the_signature_are_refused(datatype: str, data: list[Any], expected: str) -> None:
    signature = Signature((TensorSpec("v", datatype, (-1,)),), ())
    assert expected in _error({"instances": data}, signature)


def test_too_many_elements_is_payload_too_large() -> None:
    with pytest.raises(PayloadTooLarge, match="input 'x' has 6 elements; the limit is 5") as info:
        _decode({"instances": [[1, 2], [3, 4], [5, 6]]}, limit=5)
    assert info.value.status == 413


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"instances"', "must be a JSON object"),
        (b'{"rows": [1]}', 'needs "instances" or "inputs"'),
    ],
)
def test_malformed_bodies(body: bytes, expected: str) -> None:
    with pytest.raises(InvalidInput, match=expected):
        decode_request(body, ONE_INPUT, LIMIT)


# -- encode ----------------------------------------------------------------------------


def test_single_output_predictions_are_its_rows() -> None:
    assert _predictions(y=np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)) == [[0.25, 0.75], [1.0, 0.0]]


def test_several_outputs_give_one_object_per_row() -> None:
    predictions = _predictions(label=np.array([1, 0], dtype=np.int64), p=np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert predictions == [{"label": 1, "p": [0.1, 0.9]}, {"label": 0, "p": [0.8, 0.2]}]


def test_several_outputs_with_different_row_counts_are_columns() -> None:
    predictions = _predictions(a=np.array([1, 2]), b=np.array([3]))
    assert predictions == {"a": [1, 2], "b": [3]}


def test_several_outputs_with_a_scalar_are_columns() -> None:
    predictions = _predictions(a=np.array([1, 2]), s=np.array(7))
    assert predictions == {"a": [1, 2], "s": 7}


def test_bytes_outputs_are_text_or_b64() -> None:
    predictions = _predictions(s=np.array([[b"ok", b"\xff\x00"]], dtype=object))
    assert predictions == [["ok", {"b64": base64.b64encode(b"\xff\x00").decode()}]]


def test_bool_and_fp16_outputs() -> None:
    assert _predictions(b=np.array([True, False])) == [True, False]
    assert _predictions(h=np.array([0.5], dtype=np.float16)) == [0.5]


def test_codec_decodes_with_the_signature_and_encodes_predictions() -> None:
    codec = V1Codec(max_elements=LIMIT)
    request = codec.decode(b'{"instances": [[1, 2]]}', ONE_INPUT)
    assert request.inputs["x"].dtype == np.float32
    response = InferResponse("m", "1", {"y": request.inputs["x"].sum(axis=1)})
    assert orjson.loads(codec.encode(response, InferRequest(inputs={}))) == {"predictions": [3.0]}


def test_numbers_are_written_from_the_array_itself() -> None:
    # orjson writes the array (no Python object per element): views and float32 too.
    transposed = np.arange(6, dtype=np.int32).reshape(2, 3).T
    assert _predictions(y=transposed) == [[0, 3], [1, 4], [2, 5]]
    assert _predictions(y=np.array([0.1], dtype=np.float32)) == [0.1]
    assert _predictions(y=np.array([np.nan, 1.0])) == [None, 1.0]
