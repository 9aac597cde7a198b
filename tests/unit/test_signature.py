"""ferry.signature: datatypes between OIP and numpy, and input validation."""

from __future__ import annotations

import numpy as np
import pytest

from ferry.errors import InvalidInput
from ferry.signature import DATATYPES, Signature, TensorSpec, check_inputs, datatype_of, element_count, numpy_dtype


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [
        (np.bool_, "BOOL"),
        (np.uint8, "UINT8"),
        (np.uint16, "UINT16"),
        (np.uint32, "UINT32"),
        (np.uint64, "UINT64"),
        (np.int8, "INT8"),
        (np.int16, "INT16"),
        (np.int32, "INT32"),
        (np.int64, "INT64"),
        (np.float16, "FP16"),
        (np.float32, "FP32"),
        (np.float64, "FP64"),
        (object, "BYTES"),
        ("S3", "BYTES"),
        ("U3", "BYTES"),
        (">f4", "FP32"),
    ],
)
def test_datatype_of(dtype: object, datatype: str) -> None:
    assert datatype_of(np.zeros(2, dtype=dtype)) == datatype


@pytest.mark.parametrize("dtype", [np.complex64, "datetime64[s]", np.longdouble])
def test_datatype_of_types_the_protocol_lacks(dtype: object) -> None:
    if np.dtype(dtype).itemsize == 8 and np.dtype(dtype).kind == "f":
        pytest.skip("long double is double on this platform")
    with pytest.raises(TypeError, match="no Open Inference Protocol datatype"):
        datatype_of(np.zeros(1, dtype=dtype))


@pytest.mark.parametrize("datatype", [d for d in DATATYPES if d != "BYTES"])
def test_numpy_dtype_round_trips_through_datatype_of(datatype: str) -> None:
    dtype = numpy_dtype(datatype)
    assert dtype.byteorder in ("<", "|", "=")
    assert datatype_of(np.zeros(1, dtype=dtype)) == datatype


def test_numpy_dtype_of_an_unknown_datatype_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown datatype 'FLOAT'; expected one of BOOL"):
        numpy_dtype("FLOAT")


def test_tensor_spec_refuses_unknown_datatypes_and_normalises_shape() -> None:
    with pytest.raises(ValueError, match="tensor 'x': unknown datatype 'F32'"):
        TensorSpec("x", "F32", (1,))
    spec = TensorSpec("x", "FP32", [np.int64(-1), 3])  # type: ignore[arg-type]
    assert spec.shape == (-1, 3)
    assert all(type(d) is int for d in spec.shape)
    assert spec.to_json() == {"name": "x", "datatype": "FP32", "shape": [-1, 3]}
    assert spec.dtype == np.float32


def test_element_count() -> None:
    assert element_count([2, 3, 4]) == 24
    assert element_count([]) == 1
    assert element_count([5, 0]) == 0


# -- check_inputs ----------------------------------------------------------------------

SIGNATURE = Signature(
    (TensorSpec("image", "FP32", (-1, 3, 4)), TensorSpec("label", "BYTES", (-1,))),
    (TensorSpec("score", "FP32", (-1,)),),
)


def _inputs(**overrides: np.ndarray) -> dict[str, np.ndarray]:
    inputs = {"image": np.zeros((2, 3, 4), dtype=np.float32), "label": np.array([b"a", b"b"], dtype=object)}
    inputs.update(overrides)
    return inputs


def test_check_inputs_accepts_matching_inputs() -> None:
    check_inputs(SIGNATURE, _inputs())


@pytest.mark.parametrize("rows", [0, 1, 17])
def test_minus_one_accepts_any_size(rows: int) -> None:
    check_inputs(SIGNATURE, _inputs(image=np.zeros((rows, 3, 4), dtype=np.float32)))


def test_all_minus_one_dims_accept_anything_of_that_rank() -> None:
    signature = Signature((TensorSpec("x", "INT8", (-1, -1)),), ())
    for shape in [(0, 0), (1, 99), (50, 2)]:
        check_inputs(signature, {"x": np.zeros(shape, dtype=np.int8)})


def test_missing_inputs_are_all_named() -> None:
    with pytest.raises(InvalidInput, match="missing input\\(s\\): image, label"):
        check_inputs(SIGNATURE, {})


def test_unknown_input_names_what_the_model_expects() -> None:
    with pytest.raises(InvalidInput, match="unknown input 'extra'; the model expects: image, label"):
        check_inputs(SIGNATURE, _inputs(extra=np.zeros(1, dtype=np.float32)))


def test_wrong_datatype() -> None:
    with pytest.raises(InvalidInput, match="input 'image' has datatype FP64, the model expects FP32"):
        check_inputs(SIGNATURE, _inputs(image=np.zeros((2, 3, 4), dtype=np.float64)))


def test_text_is_bytes() -> None:
    check_inputs(SIGNATURE, _inputs(label=np.array(["a", "b"])))


def test_wrong_rank() -> None:
    with pytest.raises(InvalidInput, match=r"shape \[2, 12\] \(rank 2\), the model expects rank 3: \[-1, 3, 4\]"):
        check_inputs(SIGNATURE, _inputs(image=np.zeros((2, 12), dtype=np.float32)))


def test_scalar_for_a_vector_input_is_wrong_rank() -> None:
    with pytest.raises(InvalidInput, match="rank 0"):
        check_inputs(SIGNATURE, _inputs(label=np.array(b"a", dtype=object)))


@pytest.mark.parametrize("shape", [(2, 4, 3), (2, 3, 5), (1, 1, 4)])
def test_wrong_fixed_dimension(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match=r"the model expects \[-1, 3, 4\] \(-1 means any size\)"):
        check_inputs(SIGNATURE, _inputs(image=np.zeros(shape, dtype=np.float32)))


# -- Signature -------------------------------------------------------------------------


def test_signature_lookup_and_output_names() -> None:
    assert SIGNATURE.input("label") == TensorSpec("label", "BYTES", (-1,))
    assert SIGNATURE.input("score") is None
    assert SIGNATURE.output_names == ("score",)


def test_batch_axis_when_every_tensor_starts_with_minus_one() -> None:
    assert SIGNATURE.batch_axis is True


@pytest.mark.parametrize(
    ("inputs", "outputs"),
    [
        ((TensorSpec("x", "FP32", (1, 3)),), (TensorSpec("y", "FP32", (-1,)),)),
        ((TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("y", "FP32", (3,)),)),
        ((TensorSpec("x", "FP32", (-1, 3)),), (TensorSpec("y", "FP32", ()),)),
        ((TensorSpec("x", "FP32", ()),), (TensorSpec("y", "FP32", (-1,)),)),
        ((TensorSpec("x", "FP32", (3, -1)),), (TensorSpec("y", "FP32", (-1,)),)),
        ((), ()),
    ],
)
def test_no_batch_axis(inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> None:
    assert Signature(inputs, outputs).batch_axis is False


def test_signature_equality_ignores_the_lookup_table() -> None:
    a = Signature((TensorSpec("x", "FP32", (-1,)),), ())
    b = Signature((TensorSpec("x", "FP32", (-1,)),), ())
    assert a == b
    assert a != Signature((TensorSpec("x", "FP64", (-1,)),), ())
