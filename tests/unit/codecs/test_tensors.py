"""ferry.codecs.tensors: one tensor between numpy, raw little-endian bytes and JSON data."""

from __future__ import annotations

import base64
import struct
import tracemalloc
from typing import Any

import numpy as np
import pytest

from ferry.codecs.tensors import array_from_json, array_from_raw, array_to_json, array_to_raw, as_bytes
from ferry.errors import InvalidInput

FIXED_SIZE = {
    "UINT8": [0, 1, 255],
    "UINT16": [0, 1, 65535],
    "UINT32": [0, 1, 2**32 - 1],
    "UINT64": [0, 1, 2**64 - 1],
    "INT8": [-128, 0, 127],
    "INT16": [-32768, 0, 32767],
    "INT32": [-(2**31), 0, 2**31 - 1],
    "INT64": [-(2**63), 0, 2**63 - 1],
    "FP16": [-1.5, 0.0, 65504.0],
    "FP32": [-1.5, 0.25, 2.0**127],
    "FP64": [-1.5, 0.25, 1.0e308],
}
ITEMSIZE = {
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "FP32": 4,
    "FP64": 8,
}


def _raw(datatype: str, values: list[Any]) -> bytes:
    """The wire bytes written by hand, independent of the code under test."""
    codes = {"UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b", "INT16": "h"}
    codes |= {"INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d"}
    return struct.pack(f"<{len(values)}{codes[datatype]}", *values)


def _length_prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


# -- raw bytes -------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", list(FIXED_SIZE))
def test_raw_fixed_size_types_decode_from_little_endian_bytes(datatype: str) -> None:
    values = FIXED_SIZE[datatype] * 2
    raw = _raw(datatype, values)
    assert len(raw) == 6 * ITEMSIZE[datatype]

    array = array_from_raw("x", datatype, [2, 3], memoryview(raw))

    assert array.shape == (2, 3)
    assert array.dtype.itemsize == ITEMSIZE[datatype]
    assert array.reshape(-1).tolist() == values
    assert array_to_raw(array, datatype) == raw


@pytest.mark.parametrize("datatype", list(FIXED_SIZE))
def test_raw_round_trip_preserves_values_and_dtype(datatype: str) -> None:
    original = np.array(FIXED_SIZE[datatype], dtype=array_from_raw("x", datatype, [0], memoryview(b"")).dtype)

    back = array_from_raw("x", datatype, [3], memoryview(array_to_raw(original, datatype)))

    assert back.dtype == original.dtype
    np.testing.assert_array_equal(back, original)


def test_raw_fixed_size_is_a_view_of_the_body_not_a_copy() -> None:
    body = bytearray(_raw("FP32", [1.0, 2.0]))
    array = array_from_raw("x", "FP32", [2], memoryview(body))
    body[0:4] = struct.pack("<f", 9.0)
    assert array[0] == 9.0


def test_raw_fp16_is_decoded_as_half_precision() -> None:
    raw = struct.pack("<2e", 0.5, -2.0)
    array = array_from_raw("h", "FP16", [2], memoryview(raw))
    assert array.dtype == np.float16
    assert array.tolist() == [0.5, -2.0]


def test_raw_bool_is_one_byte_per_element_and_nonzero_is_true() -> None:
    array = array_from_raw("b", "BOOL", [2, 2], memoryview(bytes([0, 1, 2, 0])))
    assert array.dtype == np.bool_
    assert array.tolist() == [[False, True], [True, False]]


def test_raw_bool_encodes_as_zero_and_one_bytes() -> None:
    assert array_to_raw(np.array([True, False, True]), "BOOL") == bytes([1, 0, 1])


def test_raw_encodes_non_contiguous_arrays_in_row_major_order() -> None:
    array = np.arange(6, dtype=np.int32).reshape(2, 3).T  # a transposed view
    assert array_to_raw(array, "INT32") == _raw("INT32", [0, 3, 1, 4, 2, 5])


def test_raw_encodes_in_the_wire_datatype_whatever_the_array_holds() -> None:
    assert array_to_raw(np.array([1, 2], dtype=np.int64), "INT16") == _raw("INT16", [1, 2])


def test_raw_scalar_shape_holds_one_element() -> None:
    array = array_from_raw("s", "INT32", [], memoryview(_raw("INT32", [7])))
    assert array.shape == ()
    assert int(array) == 7


def test_raw_zero_elements() -> None:
    array = array_from_raw("e", "FP32", [0, 4], memoryview(b""))
    assert array.shape == (0, 4)


@pytest.mark.parametrize(("datatype", "size"), [("FP32", 7), ("FP32", 9), ("INT64", 0), ("BOOL", 3), ("FP16", 3)])
def test_raw_wrong_byte_count_is_invalid_input(datatype: str, size: int) -> None:
    shape = [2] if datatype != "BOOL" else [4]
    with pytest.raises(InvalidInput, match=r"input 'x': binary data has \d+ bytes"):
        array_from_raw("x", datatype, shape, memoryview(b"\0" * size))


def test_raw_unknown_datatype_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="unknown datatype 'FP8'"):
        array_from_raw("x", "FP8", [1], memoryview(b"\0"))


# -- raw BYTES -------------------------------------------------------------------------


def test_raw_bytes_elements_carry_four_byte_little_endian_lengths() -> None:
    body = _length_prefixed(b"hello", b"", b"\xff\x00binary")
    array = array_from_raw("s", "BYTES", [3], memoryview(body))
    assert array.dtype == object
    assert array.tolist() == [b"hello", b"", b"\xff\x00binary"]


def test_raw_bytes_round_trip_keeps_shape() -> None:
    array = np.array([[b"a", b"bc"], [b"", "d\u00e9"]], dtype=object)
    raw = array_to_raw(array, "BYTES")
    assert raw == _length_prefixed(b"a", b"bc", b"", "d\u00e9".encode())

    back = array_from_raw("s", "BYTES", [2, 2], memoryview(raw))
    assert back.shape == (2, 2)
    assert back.tolist() == [[b"a", b"bc"], [b"", "d\u00e9".encode()]]


def test_raw_bytes_elements_are_copied_out_of_the_body() -> None:
    body = bytearray(_length_prefixed(b"abc"))
    array = array_from_raw("s", "BYTES", [1], memoryview(body))
    body[4] = ord("z")
    assert array[0] == b"abc"


def test_raw_bytes_encodes_numpy_string_arrays() -> None:
    assert array_to_raw(np.array(["ab", "c"]), "BYTES") == _length_prefixed(b"ab", b"c")
    assert array_to_raw(np.array([b"ab", b"c"]), "BYTES") == _length_prefixed(b"ab", b"c")


def test_raw_bytes_truncated_length_prefix() -> None:
    body = _length_prefixed(b"ab") + b"\x01\x00"
    with pytest.raises(InvalidInput, match="ends after 1 of 2 elements"):
        array_from_raw("s", "BYTES", [2], memoryview(body))


def test_raw_bytes_element_longer_than_the_rest_of_the_body() -> None:
    body = struct.pack("<I", 100) + b"short"
    with pytest.raises(InvalidInput, match="claims 100 bytes but only 5 remain"):
        array_from_raw("s", "BYTES", [1], memoryview(body))


def test_raw_bytes_leftover_data_after_the_last_element() -> None:
    body = _length_prefixed(b"ab") + b"extra"
    with pytest.raises(InvalidInput, match="5 bytes left over after 1 elements"):
        array_from_raw("s", "BYTES", [1], memoryview(body))


def test_as_bytes_accepts_text_bytes_and_other_values() -> None:
    assert as_bytes(b"x") == b"x"
    assert as_bytes("\u00e9") == "\u00e9".encode()
    assert as_bytes(bytearray(b"y")) == b"y"
    assert as_bytes(np.bytes_(b"z")) == b"z"
    assert as_bytes(12) == b"12"


# -- JSON data -------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", [d for d in FIXED_SIZE if not d.startswith("FP")])
def test_json_integers_at_the_limits_of_each_type(datatype: str) -> None:
    values = FIXED_SIZE[datatype]
    array = array_from_json("x", datatype, values)
    assert array.dtype.itemsize == ITEMSIZE[datatype]
    assert array.dtype.kind in "iu"
    assert array.tolist() == values


@pytest.mark.parametrize(("datatype", "value"), [("UINT8", 256), ("UINT8", -1), ("INT8", 128), ("INT16", -32769)])
def test_json_out_of_range_integers_are_refused(datatype: str, value: int) -> None:
    with pytest.raises(InvalidInput, match=f"out of range for {datatype}"):
        array_from_json("x", datatype, [0, value])


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_json_int64_refuses_values_past_its_range(value: int) -> None:
    with pytest.raises(InvalidInput):
        array_from_json("x", "INT64", [value])


def test_json_nested_data_keeps_its_shape() -> None:
    array = array_from_json("x", "FP32", [[1, 2, 3], [4, 5, 6]])
    assert array.shape == (2, 3)
    assert array.dtype == np.float32


def test_json_integers_are_accepted_as_floats() -> None:
    array = array_from_json("x", "FP64", [1, 2])
    assert array.dtype == np.float64
    assert array.tolist() == [1.0, 2.0]


def test_json_fp16() -> None:
    array = array_from_json("x", "FP16", [0.5, 1000])
    assert array.dtype == np.float16
    assert array.tolist() == [0.5, 1000.0]


@pytest.mark.parametrize("datatype", ["FP32", "INT32", "UINT8"])
def test_json_strings_are_not_numbers(datatype: str) -> None:
    with pytest.raises(InvalidInput, match=f"input 'x': {datatype} data must be"):
        array_from_json("x", datatype, ["1", "2"])


def test_json_a_string_among_numbers_is_refused() -> None:
    with pytest.raises(InvalidInput, match="FP32 data must be numbers"):
        array_from_json("x", "FP32", [1.0, "2"])


@pytest.mark.parametrize("datatype", ["INT32", "INT64", "UINT8", "FP32"])
def test_json_booleans_are_not_numbers(datatype: str) -> None:
    with pytest.raises(InvalidInput, match=f"{datatype} data must be"):
        array_from_json("x", datatype, [True, False])


@pytest.mark.parametrize(
    ("datatype", "data"),
    [
        ("INT32", [True, 0, 3]),
        ("INT64", [0, False]),
        ("UINT8", [[1, 2], [True, 4]]),
        ("UINT64", [True, 2**64 - 1]),
        ("FP32", [1.5, True]),
        ("FP64", [[[0.5], [False]]]),
        ("FP16", [1, True]),
    ],
)
def test_json_booleans_among_numbers_are_not_numbers(datatype: str, data: Any) -> None:
    """numpy reads [true, 0, 3] as [1, 0, 3]: the booleans must be seen before it does."""
    with pytest.raises(InvalidInput, match=f"input 'x': {datatype} data must be .*, not true/false"):
        array_from_json("x", datatype, data)


@pytest.mark.parametrize("datatype", ["INT32", "UINT64", "INT8"])
def test_json_floats_are_not_integers(datatype: str) -> None:
    with pytest.raises(InvalidInput, match=f"{datatype} data must be integers"):
        array_from_json("x", datatype, [1, 2.5])


def test_json_whole_floats_are_still_not_integers() -> None:
    with pytest.raises(InvalidInput, match="integers"):
        array_from_json("x", "INT32", [1.0])


@pytest.mark.parametrize(("datatype", "value"), [("FP32", 1e39), ("FP32", -1e39), ("FP16", 70000), ("FP16", 1e10)])
def test_json_float_overflow_is_refused(datatype: str, value: float) -> None:
    with pytest.raises(InvalidInput, match=f"out of range for {datatype}"):
        array_from_json("x", datatype, [1.0, value])


def test_json_fp32_max_is_not_overflow() -> None:
    array = array_from_json("x", "FP32", [3.4028234663852886e38])
    assert np.isfinite(array).all()


@pytest.mark.parametrize("data", [[[1, 2], [3]], [[1], 2], [[1, 2], [3, [4]]]])
def test_json_ragged_data_is_refused(data: Any) -> None:
    with pytest.raises(InvalidInput, match="ragged"):
        array_from_json("x", "FP32", data)


@pytest.mark.parametrize("data", [[None], [{"a": 1}], {"a": 1}, [[1], None]])
def test_json_non_numbers_are_refused(data: Any) -> None:
    with pytest.raises(InvalidInput, match="input 'x'"):
        array_from_json("x", "INT32", data)


def test_json_bool() -> None:
    array = array_from_json("b", "BOOL", [[True, False]])
    assert array.dtype == np.bool_
    assert array.tolist() == [[True, False]]


@pytest.mark.parametrize("data", [[1, 0], [True, 1], ["true"]])
def test_json_bool_refuses_anything_but_true_and_false(data: Any) -> None:
    with pytest.raises(InvalidInput, match="BOOL data must be true/false"):
        array_from_json("b", "BOOL", data)


@pytest.mark.parametrize("datatype", ["FP32", "INT8", "BOOL", "UINT64"])
def test_json_empty_data_has_the_requested_dtype(datatype: str) -> None:
    array = array_from_json("x", datatype, [])
    assert array.size == 0
    assert array.dtype.itemsize == (1 if datatype == "BOOL" else ITEMSIZE[datatype])


def test_json_scalar_data_is_a_zero_dimensional_array() -> None:
    array = array_from_json("x", "INT32", 5)
    assert array.shape == ()
    assert int(array) == 5


def test_json_unknown_datatype() -> None:
    with pytest.raises(InvalidInput, match="unknown datatype 'STRING'"):
        array_from_json("x", "STRING", ["a"])


# -- JSON BYTES ------------------------------------------------------------------------


def test_json_bytes_are_utf8_encoded_strings() -> None:
    array = array_from_json("s", "BYTES", [["a", "\u00e9"], ["", "z"]])
    assert array.dtype == object
    assert array.shape == (2, 2)
    assert array.tolist() == [[b"a", "\u00e9".encode()], [b"", b"z"]]


@pytest.mark.parametrize("data", [[1, 2], ["a", None], [["a"], "b"], [["a"], ["b", "c"]], [{"b64": "YQ=="}]])
def test_json_bytes_refuses_non_strings_and_ragged_data(data: Any) -> None:
    with pytest.raises(InvalidInput, match="input 's': BYTES data"):
        array_from_json("s", "BYTES", data)


def test_json_bytes_b64_objects_are_decoded_when_allowed() -> None:
    payload = b"\x00\xffbinary"
    data = [{"b64": base64.b64encode(payload).decode()}, "text"]
    array = array_from_json("s", "BYTES", data, allow_b64=True)
    assert array.tolist() == [payload, b"text"]


def test_json_bytes_invalid_base64_is_refused() -> None:
    with pytest.raises(InvalidInput, match="element 1 is not valid base64"):
        array_from_json("s", "BYTES", ["ok", {"b64": "not base64!"}], allow_b64=True)


def test_json_bytes_b64_must_be_a_string() -> None:
    with pytest.raises(InvalidInput, match="BYTES data must be strings"):
        array_from_json("s", "BYTES", [{"b64": 12}], allow_b64=True)


def test_json_bytes_to_json_decodes_utf8() -> None:
    array = np.array([b"a", "\u00e9".encode(), "str"], dtype=object)
    assert array_to_json("out", array, "BYTES") == ["a", "\u00e9", "str"]


def test_json_bytes_output_that_is_not_utf8_is_invalid_input_naming_binary_data() -> None:
    array = np.array([b"ok", b"\xff\xfe"], dtype=object)
    with pytest.raises(InvalidInput, match=r"output 'out' holds bytes that are not UTF-8.*binary_data"):
        array_to_json("out", array, "BYTES")


def test_json_numeric_output_is_flat_and_contiguous() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3).T
    flat = array_to_json("out", array, "FP32")
    assert isinstance(flat, np.ndarray)
    assert flat.ndim == 1
    assert flat.flags.c_contiguous
    assert flat.tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_json_uint64_past_int64_mixed_with_small_values_is_exact() -> None:
    # numpy alone reads [0, 2**64 - 1] as float64, which would lose the value.
    array = array_from_json("x", "UINT64", [[0, 1], [2**63, 2**64 - 1]])
    assert array.dtype == np.uint64
    assert array.shape == (2, 2)
    assert array.tolist() == [[0, 1], [2**63, 2**64 - 1]]


@pytest.mark.parametrize(
    ("datatype", "data"), [("INT64", [-1, 2**63]), ("UINT64", [0, 2**64]), ("UINT8", [1, 2**64 - 1])]
)
def test_json_integers_past_64_bits_are_out_of_range(datatype: str, data: list[int]) -> None:
    with pytest.raises(InvalidInput, match=f"out of range for {datatype}"):
        array_from_json("x", datatype, data)


def test_json_floats_mixed_with_huge_integers_are_not_integers() -> None:
    with pytest.raises(InvalidInput, match="UINT64 data must be integers"):
        array_from_json("x", "UINT64", [0.5, 2**64 - 1])


def test_a_huge_bytes_shape_with_little_data_is_refused_before_allocating() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInput, match="cannot hold 60000000 elements"):
            array_from_raw("t", "BYTES", [60_000_000], memoryview(b"\x00" * 8))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000
