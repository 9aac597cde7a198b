"""Properties of the request decoders, whatever the client sends.

Any body, well formed or not, is either decoded or refused with a FerryError that
answers 400 or 413: never another exception, which the transport would turn into a
500. And every tensor survives a trip through the wire formats unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ferry.codecs import v1, v2
from ferry.errors import FerryError
from ferry.inference import InferRequest, InferResponse
from ferry.signature import DATATYPES, NUMPY_DTYPES, Signature, TensorSpec

MAX_ELEMENTS = 64
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decoded_or_client_error(decode: Callable[[], Any]) -> Any:
    """The decoder's result, or None when it refused the body as the client's fault."""
    try:
        result = decode()
    except FerryError as exc:
        assert exc.status in (400, 413), f"{type(exc).__name__} answers {exc.status}: {exc}"
        event(f"refused: {exc.message.split(':')[0][:40]}")
        return None
    event("decoded")
    return result


# -- strategies: bodies a client might send --------------------------------------------

# Integers past 64 bits and NaN are fair game: the body is written with the standard
# library, which emits both, and the decoders must refuse them politely.
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=300),
    st.floats(width=64),
    st.text(max_size=4),
)
keys = st.sampled_from(["", "a", "b", "x", "name", "data", "shape", "b64", "binary_data_size"])
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
dims = st.one_of(st.integers(min_value=-2, max_value=6), st.sampled_from([0, 2**31, 2**40, 2**63, 2**64 - 1]))
# Beside random ones, shapes at the edges: empty but huge, and deeper than numpy goes.
edge_shapes = st.sampled_from([[0, 2**63], [2**40, 0, 2**40], [0, 2**31, 2**31, 2**31], [1] * 33, [1] * 70, []])
shapes = st.one_of(st.lists(dims, max_size=4), edge_shapes, json_values)
numbers = st.one_of(
    st.integers(min_value=-(2**65), max_value=2**65), st.floats(width=32), st.booleans(), st.text(max_size=2)
)
data_values = st.one_of(
    st.lists(numbers, max_size=12),
    st.lists(st.lists(numbers, min_size=2, max_size=2), max_size=4),
    st.lists(st.text(max_size=3), max_size=6),
    st.lists(st.fixed_dictionaries({"b64": st.text(max_size=8)}), max_size=3),
    json_values,
)
datatypes = st.one_of(st.sampled_from(DATATYPES), st.sampled_from(["FP8", "", "fp32", "STRING"]), json_values)


def sometimes(draw: st.DrawFn, rare: st.SearchStrategy[Any], usual: st.SearchStrategy[Any]) -> Any:
    """Mostly ``usual``, one time in eight ``rare``: bodies that are nearly right reach
    deeper into the decoder than random ones."""
    # A middle value is the rare pick, as hypothesis favours the ends of a range.
    return draw(rare if draw(st.integers(0, 7)) == 4 else usual)


@st.composite
def v2_tensors(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": sometimes(draw, json_values, st.sampled_from(["a", "b", "c"])),
        "datatype": sometimes(draw, datatypes, st.sampled_from(DATATYPES)),
        "shape": sometimes(draw, json_values, st.lists(dims, max_size=4) | edge_shapes),
    }
    for key in [k for k in tensor if draw(st.integers(0, 15)) == 8]:
        del tensor[key]
    count = _element_count(tensor.get("shape"))
    kind = draw(st.sampled_from(["fits", "fits", "fits", "data", "binary", "both", "neither"]))
    if kind == "fits" and count is not None:
        # Data that agrees with the shape, so that decoding gets past the counts and
        # on to building the array.
        if draw(st.booleans()):
            tensor["data"] = draw(st.lists(numbers, min_size=count, max_size=count))
        else:
            itemsize = NUMPY_DTYPES.get(str(tensor.get("datatype")), np.dtype(np.uint8)).itemsize
            tensor["parameters"] = {"binary_data_size": count * itemsize}
        return tensor
    if kind in ("data", "both"):
        tensor["data"] = draw(data_values)
    if kind in ("binary", "both"):
        size = draw(st.integers(min_value=-2, max_value=48) | json_values)
        tensor["parameters"] = {"binary_data_size": size}
    elif draw(st.booleans()):
        tensor["parameters"] = draw(json_values)
    return tensor


def _element_count(shape: Any) -> int | None:
    """How many elements a plausible shape holds, when it is small enough to fill."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        return None
    count = int(np.prod(shape, dtype=object)) if shape else 1
    return count if count <= 8 else None


def _binary_sizes(inputs: Any) -> int:
    params = [t.get("parameters") for t in inputs if isinstance(t, dict)]
    sizes = [p.get("binary_data_size") for p in params if isinstance(p, dict)]
    return sum(s for s in sizes if type(s) is int and s > 0)


@st.composite
def v2_bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 15)) != 8:
        doc["inputs"] = sometimes(draw, json_values, st.lists(v2_tensors(), min_size=1, max_size=2))
    for key in ("id", "parameters", "outputs"):
        if draw(st.integers(0, 3)) == 2:
            outputs = st.lists(st.fixed_dictionaries({"name": keys, "parameters": json_values}), max_size=3)
            doc[key] = draw(json_values | outputs)
    header = json.dumps(doc).encode()
    inputs = doc.get("inputs")
    exact = b"\0" * (_binary_sizes(inputs) if isinstance(inputs, list) else 0)
    tail = sometimes(draw, st.binary(max_size=64), st.just(exact))
    right = str(len(header)) if tail or draw(st.booleans()) else None
    wrong = st.one_of(
        st.none(),
        st.integers(min_value=-3, max_value=len(header) + len(tail) + 3).map(str),
        st.text(max_size=4),
    )
    return header + tail, sometimes(draw, wrong, st.just(right))


# -- V2 --------------------------------------------------------------------------------


@PROPERTY
@given(body=st.binary(max_size=256), header=st.none() | st.text(max_size=6) | st.integers(-10, 300).map(str))
def test_v2_arbitrary_bytes_are_decoded_or_refused_as_client_errors(body: bytes, header: str | None) -> None:
    decoded_or_client_error(lambda: v2.decode_request(body, header, MAX_ELEMENTS))


@PROPERTY
@given(body=v2_bodies())
def test_v2_request_like_bodies_are_decoded_or_refused_as_client_errors(body: tuple[bytes, str | None]) -> None:
    payload, header = body
    request = decoded_or_client_error(lambda: v2.decode_request(payload, header, MAX_ELEMENTS))
    if request is None:
        return
    # What is accepted matches its own declaration.
    doc = orjson.loads(payload[: int(header)] if header is not None else payload)
    declared = {t["name"]: t for t in doc["inputs"]}
    assert set(request.inputs) == set(declared)
    for name, array in request.inputs.items():
        assert list(array.shape) == declared[name]["shape"]
        assert array.size <= MAX_ELEMENTS
        if declared[name]["datatype"] != "BYTES":
            assert array.dtype.itemsize == NUMPY_DTYPES[declared[name]["datatype"]].itemsize


# -- V1 --------------------------------------------------------------------------------

V1_SIGNATURES = [
    Signature((TensorSpec("x", "FP32", (-1, 2)),), ()),
    Signature((TensorSpec("x", "INT8", (-1,)),), ()),
    Signature((TensorSpec("x", "UINT64", (-1,)),), ()),
    Signature((TensorSpec("x", "BYTES", (-1,)),), ()),
    Signature((TensorSpec("x", "FP16", (-1,)),), ()),
    Signature((TensorSpec("a", "INT64", (-1, 2)), TensorSpec("b", "BOOL", (-1,))), ()),
]
v1_rows = st.one_of(
    data_values,
    st.lists(st.fixed_dictionaries({}, optional={"a": data_values, "b": data_values, "x": numbers}), max_size=4),
)


@st.composite
def v1_bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["instances", "inputs", "inputs-by-name", "other"]))
    if shape == "instances":
        doc: Any = {"instances": draw(v1_rows | json_values)}
    elif shape == "inputs":
        doc = {"inputs": draw(data_values)}
    elif shape == "inputs-by-name":
        doc = {"inputs": draw(st.dictionaries(st.sampled_from(["a", "b", "x", "b64"]), data_values, max_size=3))}
    else:
        doc = draw(json_values)
    return json.dumps(doc).encode()


@PROPERTY
@given(body=st.binary(max_size=256) | v1_bodies(), signature=st.sampled_from(V1_SIGNATURES))
def test_v1_bodies_are_decoded_or_refused_as_client_errors(body: bytes, signature: Signature) -> None:
    inputs = decoded_or_client_error(lambda: v1.decode_request(body, signature, MAX_ELEMENTS))
    if inputs is None:
        return
    for name, array in inputs.items():
        spec = signature.input(name)
        assert spec is not None
        assert array.size <= MAX_ELEMENTS
        if spec.datatype != "BYTES":
            assert array.dtype == spec.dtype


# -- round trips -----------------------------------------------------------------------

array_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, *, json_safe: bool) -> np.ndarray:
    """A random tensor of a random datatype; with ``json_safe``, BYTES hold UTF-8 text
    and floats are finite, since JSON carries nothing else."""
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(array_shapes)
    if datatype == "BYTES":
        count = int(np.prod(shape))
        items = st.text(max_size=6).map(str.encode) if json_safe else st.binary(max_size=6)
        array = np.empty(count, dtype=object)
        for i, item in enumerate(draw(st.lists(items, min_size=count, max_size=count))):
            array[i] = item
        return array.reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    elements = None
    if dtype.kind == "f" and json_safe:
        elements = st.floats(width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _as_request(encoded: v2.EncodedBody) -> tuple[bytes, str | None]:
    """Turn a response body into the request body a client would send back."""
    length = encoded.header_length
    header = encoded.body if length is None else encoded.body[:length]
    binary = b"" if length is None else encoded.body[length:]
    request_header = orjson.dumps({"inputs": orjson.loads(header)["outputs"]})
    return request_header + binary, (str(len(request_header)) if binary else None)


def _assert_same(decoded: np.ndarray, original: np.ndarray) -> None:
    assert decoded.shape == original.shape
    if original.dtype == object:
        assert decoded.dtype == object
        assert decoded.reshape(-1).tolist() == original.reshape(-1).tolist()
    else:
        assert decoded.dtype == original.dtype
        np.testing.assert_array_equal(decoded, original)
        if original.dtype.kind == "f":  # -0.0 stays -0.0
            assert (np.signbit(decoded) == np.signbit(original)).all()


def _round_trip_v2(array: np.ndarray, binary: bool) -> np.ndarray:
    response = InferResponse("m", "1", {"t": array})
    encoded = v2.encode_response(response, InferRequest(inputs={}, parameters={"binary_data_output": binary}))
    assert (encoded.header_length is not None) == binary
    body, header = _as_request(encoded)
    return v2.decode_request(body, header, MAX_ELEMENTS).inputs["t"]


@PROPERTY
@given(array=tensors(json_safe=False))
def test_v2_binary_round_trip(array: np.ndarray) -> None:
    _assert_same(_round_trip_v2(array, binary=True), array)


@PROPERTY
@given(array=tensors(json_safe=True))
def test_v2_json_round_trip(array: np.ndarray) -> None:
    _assert_same(_round_trip_v2(array, binary=False), array)


@PROPERTY
# Nested JSON lists cannot say how wide an empty row is, so V1 tensors have no 0 sides.
@given(array=tensors(json_safe=False).filter(lambda a: a.ndim >= 1 and 0 not in a.shape))
def test_v1_round_trip_through_predictions_and_instances(array: np.ndarray) -> None:
    datatype = v2.datatype_of(array)
    if datatype in ("FP16", "FP32", "FP64"):
        array = np.nan_to_num(array, posinf=0.0, neginf=0.0)  # JSON has no NaN or infinity
    signature = Signature((TensorSpec("t", datatype, (-1, *array.shape[1:])),), ())
    predictions = orjson.loads(v1.encode_response({"t": array}))["predictions"]

    decoded = v1.decode_request(orjson.dumps({"instances": predictions}), signature, MAX_ELEMENTS)["t"]

    _assert_same(decoded, array)
