"""KServe V1 / TensorFlow Serving style bodies for curl users:
``{"instances": [...]}`` or ``{"inputs": ...}`` in, ``{"predictions": [...]}`` out."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from ferry.codecs.tensors import array_from_json, as_bytes
from ferry.codecs.v2 import load_json
from ferry.errors import InvalidInput, PayloadTooLarge
from ferry.inference import InferRequest, InferResponse
from ferry.signature import Signature, TensorSpec, element_count


def decode_request(body: bytes, signature: Signature, max_elements: int) -> dict[str, np.ndarray]:
    """Row-oriented ``instances`` (a list of rows, or of ``{input: value}`` objects for
    several inputs) or column-oriented ``inputs`` (one value, or ``{input: value}``).
    Values are cast to each input's datatype; BYTES accept ``{"b64": "..."}``."""
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object")
    specs = signature.inputs
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('"instances" must be a non-empty list')
        if len(specs) == 1 and not _all_objects(instances):
            return {specs[0].name: _convert(specs[0], instances, max_elements)}
        if not _all_objects(instances):
            names = ", ".join(s.name for s in specs)
            raise InvalidInput(f"this model has several inputs ({names}): each instance must be an object")
        columns: dict[str, list[Any]] = {}
        for row in instances:
            for key in row:
                columns.setdefault(key, []).append(row[key])
        for key, values in columns.items():
            if len(values) != len(instances):
                raise InvalidInput(f"input {key!r} is missing from some instances")
        return {k: _convert(signature.require_input(k), v, max_elements) for k, v in columns.items()}
    if "inputs" in doc:
        value = doc["inputs"]
        if isinstance(value, dict) and set(value) != {"b64"}:
            return {k: _convert(signature.require_input(k), v, max_elements) for k, v in value.items()}
        if len(specs) != 1:
            raise InvalidInput('this model has several inputs: "inputs" must be an object')
        return {specs[0].name: _convert(specs[0], value, max_elements)}
    raise InvalidInput('the request needs "instances" or "inputs"')


def _all_objects(rows: list[Any]) -> bool:
    return all(isinstance(r, dict) and "b64" not in r for r in rows)


def _convert(spec: TensorSpec, value: Any, max_elements: int) -> np.ndarray:
    array = array_from_json(spec.name, spec.datatype, value, allow_b64=True)
    if spec.datatype != "BYTES" and array.dtype != spec.dtype:
        array = array.astype(spec.dtype)
    if element_count(array.shape) > max_elements:
        raise PayloadTooLarge(f"input {spec.name!r} has {array.size} elements; the limit is {max_elements}")
    return array


def encode_response(outputs: dict[str, np.ndarray]) -> bytes:
    """One prediction per row: the row itself for a single output, otherwise an object
    with one entry per output (TensorFlow Serving's row format)."""
    columns = {name: _to_json(array) for name, array in outputs.items()}
    if len(columns) == 1:
        (predictions,) = columns.values()
    else:
        lengths = {len(v) if isinstance(v, (list, np.ndarray)) else -1 for v in columns.values()}
        if len(lengths) == 1 and -1 not in lengths:
            (rows,) = lengths
            predictions = [{k: v[i] for k, v in columns.items()} for i in range(rows)]
        else:
            predictions = columns
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def _to_json(array: np.ndarray) -> Any:
    """Numbers stay a C-contiguous array, which orjson writes without making a Python
    object per element (``tolist`` took 12 times the array's memory); text becomes lists."""
    if array.dtype == object:
        flat = [_text(item) for item in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    if array.ndim == 0:
        return array.item()
    return np.ascontiguousarray(array)


def _text(item: Any) -> Any:
    data = as_bytes(item)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


class V1Codec:
    """The V1 ``:predict`` codec as the DataPlane sees it: the body is converted with
    the model's signature, since V1 requests name no datatypes."""

    protocol = "v1"

    def __init__(self, max_elements: int) -> None:
        self._max_elements = max_elements

    def decode(self, payload: bytes, signature: Signature) -> InferRequest:
        return InferRequest(inputs=decode_request(payload, signature, self._max_elements))

    def parse_size(self, payload: bytes) -> int:
        return len(payload)

    def encode(self, response: InferResponse, request: InferRequest) -> bytes:
        return encode_response(response.outputs)
