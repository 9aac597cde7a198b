"""One tensor between numpy and its two wire forms: JSON ``data`` lists and the raw
little-endian bytes of the binary tensor extension."""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Any

import numpy as np

from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.signature import NUMPY_DTYPES, element_count, numpy_dtype

_LENGTH = struct.Struct("<I")
# numpy's limit on dimensions before version 2 (64 since); deeper shapes are refused as 400.
MAX_RANK = 32


def check_tensor_header(name: str, datatype: str, shape: list[int], max_elements: int) -> None:
    """Refuse an input tensor's header before any of its data is read: an unknown
    datatype or a bad shape (400), more elements than ``max_elements`` (413)."""
    numpy_dtype(datatype)
    if any(d < 0 for d in shape):
        raise InvalidInput(f'input {name!r}: "shape" must be a list of non-negative integers')
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"input {name!r}: shape has {len(shape)} dimensions; the limit is {MAX_RANK}")
    if element_count(shape) > max_elements:
        raise PayloadTooLarge(f"input {name!r} has {element_count(shape)} elements; the limit is {max_elements}")
    if element_count([d or 1 for d in shape]) > max_elements:
        # numpy refuses such a shape even when a 0 dimension leaves it empty.
        raise PayloadTooLarge(f"input {name!r}: shape {shape} is over the limit of {max_elements} elements")


def array_from_raw(name: str, datatype: str, shape: list[int], buf: memoryview) -> np.ndarray:
    """A view of ``buf`` (no copy) for fixed-size types; BYTES elements are parsed from
    their 4-byte little-endian length prefixes."""
    count = element_count(shape)
    if datatype == "BYTES":
        return _bytes_from_raw(name, shape, count, buf)
    dtype = numpy_dtype(datatype)
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise InvalidInput(
            f"input {name!r}: binary data has {len(buf)} bytes, but shape {shape} of {datatype} needs {expected}"
        )
    if datatype == "BOOL":
        return np.frombuffer(buf, dtype=np.uint8).reshape(shape) != 0
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _bytes_from_raw(name: str, shape: list[int], count: int, buf: memoryview) -> np.ndarray:
    # Every element needs at least its 4-byte length: refuse before allocating, so a tiny
    # request cannot claim a huge shape and make the server allocate for it.
    if count * 4 > len(buf):
        raise InvalidInput(f"input {name!r}: {len(buf)} bytes of binary BYTES data cannot hold {count} elements")
    out = np.empty(count, dtype=object)
    offset, end = 0, len(buf)
    for i in range(count):
        if offset + 4 > end:
            raise InvalidInput(f"input {name!r}: binary BYTES data ends after {i} of {count} elements")
        (length,) = _LENGTH.unpack_from(buf, offset)
        offset += 4
        if offset + length > end:
            raise InvalidInput(
                f"input {name!r}: BYTES element {i} claims {length} bytes but only {end - offset} remain"
            )
        out[i] = bytes(buf[offset : offset + length])
        offset += length
    if offset != end:
        raise InvalidInput(
            f"input {name!r}: binary BYTES data has {end - offset} bytes left over after {count} elements"
        )
    return out.reshape(shape)


def array_to_raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for item in array.reshape(-1):
            data = as_bytes(item)
            parts.append(_LENGTH.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    if datatype == "BOOL":
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[datatype]).tobytes()


def as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, (bytearray, memoryview, np.bytes_)):
        return bytes(item)
    return str(item).encode("utf-8")


def array_from_json(name: str, datatype: str, data: Any, *, allow_b64: bool = False) -> np.ndarray:
    """Convert JSON ``data`` (flat or nested) to an array of ``datatype``, keeping the
    nesting as its shape. Refuses values of the wrong kind instead of coercing them:
    strings are not numbers, booleans are not integers, floats are not integers."""
    if datatype == "BYTES":
        return _bytes_from_json(name, data, allow_b64)
    dtype = numpy_dtype(datatype)
    try:
        values = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"input {name!r}: data is ragged or not an array of numbers") from None
    if values.size == 0:
        return values.astype(dtype)
    kind = values.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"input {name!r}: BOOL data must be true/false values")
        return values
    if kind in "iuf" and _holds_booleans(data):
        # numpy reads [true, 0] as the integers [1, 0]: its dtype no longer tells.
        wanted = "integers" if dtype.kind in "iu" else "numbers"
        raise InvalidInput(f"input {name!r}: {datatype} data must be {wanted}, not true/false")
    if kind not in "iuf" or (kind == "f" and dtype.kind in "iu"):
        exact = _exact_integers(name, datatype, data) if dtype.kind in "iu" and kind in "fO" else None
        if exact is None:
            wanted = "integers" if dtype.kind in "iu" else "numbers"
            raise InvalidInput(f"input {name!r}: {datatype} data must be {wanted}")
        return exact
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}")
        return values.astype(dtype)
    # Overflow to inf is detected just below; numpy's warning would only be noise.
    with np.errstate(over="ignore"):
        converted = values.astype(dtype)
    if dtype.itemsize < values.dtype.itemsize and np.isinf(converted).any():
        raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}")
    return converted


def _holds_booleans(data: Any) -> bool:
    """Whether JSON ``data`` (numbers, possibly in nested lists, not ragged) holds a
    true or false. The types of each list are collected by ``map`` in C, so a large
    tensor costs one pass at C speed, never a Python loop per element."""
    if not isinstance(data, list):
        return type(data) is bool
    types = set(map(type, data))
    if bool in types:
        return True
    return list in types and any(_holds_booleans(row) for row in data)


def _exact_integers(name: str, datatype: str, data: Any) -> np.ndarray | None:
    """numpy reads a list mixing small integers with integers past INT64 (valid UINT64
    data) as float64 or object. Decide from the Python values themselves; only this
    rare path pays for the per-element check."""
    flat = np.array(data, dtype=object).reshape(-1)
    if not all(type(v) is int for v in flat):
        return None
    info = np.iinfo(NUMPY_DTYPES[datatype])
    if any(v < info.min or v > info.max for v in flat):
        raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}")
    return np.array(data, dtype=NUMPY_DTYPES[datatype])


def _bytes_from_json(name: str, data: Any, allow_b64: bool) -> np.ndarray:
    try:
        values = np.array(data, dtype=object)
    except ValueError:
        raise InvalidInput(f"input {name!r}: BYTES data is ragged") from None
    flat = values.reshape(-1)
    for i, item in enumerate(flat):
        if isinstance(item, str):
            flat[i] = item.encode("utf-8")
        elif allow_b64 and isinstance(item, dict) and isinstance(item.get("b64"), str):
            try:
                flat[i] = base64.b64decode(item["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise InvalidInput(f"input {name!r}: element {i} is not valid base64") from None
        else:
            raise InvalidInput(f"input {name!r}: BYTES data must be strings")
    return flat.reshape(values.shape)


def array_to_json(name: str, array: np.ndarray, datatype: str) -> Any:
    """A flat, C-contiguous array (orjson serialises it natively) or, for BYTES, a list
    of strings."""
    if datatype == "BYTES":
        try:
            return [as_bytes(item).decode("utf-8") for item in array.reshape(-1)]
        except UnicodeDecodeError:
            raise InvalidInput(
                f"output {name!r} holds bytes that are not UTF-8 text; request it with "
                '"parameters": {"binary_data": true}'
            ) from None
    return np.ascontiguousarray(array.reshape(-1))
