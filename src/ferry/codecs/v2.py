"""Open Inference Protocol V2 REST bodies: JSON, and JSON followed by raw tensor bytes
(the binary tensor extension, announced by ``Inference-Header-Content-Length``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ferry.codecs.tensors import array_from_json, array_from_raw, array_to_json, array_to_raw, check_tensor_header
from ferry.errors import InvalidInput
from ferry.inference import InferRequest, InferResponse, RequestedOutput
from ferry.signature import datatype_of, element_count

HEADER_LENGTH = "inference-header-content-length"
JSON_CONTENT_TYPE = "application/json"
BINARY_CONTENT_TYPE = "application/octet-stream"


@dataclass
class EncodedBody:
    body: bytes
    content_type: str
    # Set when binary outputs follow the JSON header.
    header_length: int | None = None


def load_json(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from None


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    view = memoryview(body)
    if header_length is None:
        return view, view[:0]
    # Plain ASCII digits only: int() would also take "1_0", spaces and other scripts' digits.
    if not (header_length.isascii() and header_length.isdigit()):
        raise InvalidInput("Inference-Header-Content-Length must be a non-negative integer")
    if len(header_length) > len(str(len(body))):
        # Longer than any body (and int() refuses 4,300 digits and more).
        raise InvalidInput(f"Inference-Header-Content-Length is longer than the body's {len(body)} bytes")
    length = int(header_length)
    if length < 0 or length > len(body):
        raise InvalidInput(f"Inference-Header-Content-Length is {length}, but the body has {len(body)} bytes")
    return view[:length], view[length:]


def decode_request(body: bytes, header_length: str | None, max_elements: int) -> InferRequest:
    json_part, binary = split_body(body, header_length)
    doc = load_json(json_part)
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput('the request needs a non-empty "inputs" list')
    inputs = {}
    offset = 0
    for index, item in enumerate(raw_inputs):
        name, datatype, shape, params = _tensor_header(item, index, max_elements)
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears more than once")
        size = params.get("binary_data_size")
        if size is not None:
            if "data" in item:
                raise InvalidInput(f"input {name!r} has both data and binary_data_size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidInput(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes left)"
                )
            inputs[name] = array_from_raw(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in item:
            array = array_from_json(name, datatype, item["data"])
            if array.size != element_count(shape):
                raise InvalidInput(
                    f"input {name!r} has {array.size} values, but shape {shape} needs {element_count(shape)}"
                )
            inputs[name] = array.reshape(shape)
        else:
            raise InvalidInput(f"input {name!r} has neither data nor binary_data_size")
    if offset != len(binary):
        raise InvalidInput(f"the binary part of the body has {len(binary)} bytes but the inputs use {offset}")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidInput('"parameters" must be an object')
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string')
    return InferRequest(
        inputs=inputs,
        id=request_id,
        parameters=parameters,
        outputs=_requested_outputs(doc.get("outputs")),
    )


def _tensor_header(item: Any, index: int, max_elements: int) -> tuple[str, str, list[int], dict[str, Any]]:
    if not isinstance(item, dict):
        raise InvalidInput(f"inputs[{index}] must be an object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f'inputs[{index}] needs a "name" string')
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f'input {name!r} needs a "datatype" string')
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput(f'input {name!r}: "shape" must be a list of non-negative integers')
    check_tensor_header(name, datatype, shape, max_elements)
    params = item.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f'input {name!r}: "parameters" must be an object')
    return name, datatype, shape, params


def _requested_outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise InvalidInput('"outputs" must be a list')
    result = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidInput(f'outputs[{index}] needs a "name" string')
        params = item.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f'output {item["name"]!r}: "parameters" must be an object')
        binary = params.get("binary_data")
        result.append(
            RequestedOutput(
                name=item["name"],
                binary=binary is True if binary is not None else None,
                parameters=params,
            )
        )
    return result


def encode_response(response: InferResponse, request: InferRequest) -> EncodedBody:
    binary_flags = {o.name: o.binary for o in request.outputs or ()}
    default_binary = request.binary_output_default
    outputs = []
    chunks: list[bytes] = []
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        binary = binary_flags.get(name)
        if binary if binary is not None else default_binary:
            raw = array_to_raw(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array_to_json(name, array, datatype)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        doc["id"] = response.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return EncodedBody(header, JSON_CONTENT_TYPE)
    return EncodedBody(header + b"".join(chunks), BINARY_CONTENT_TYPE, len(header))


@dataclass
class V2Payload:
    body: bytes
    header_length: str | None
    # A multipart form upload, already parsed (in a thread) by the transport.
    form: InferRequest | None = None


class V2Codec:
    """The V2 REST codec as the DataPlane sees it."""

    protocol = "v2"

    def __init__(self, max_elements: int) -> None:
        self._max_elements = max_elements

    def decode(self, payload: V2Payload, signature: object) -> InferRequest:
        if payload.form is not None:
            return payload.form
        return decode_request(payload.body, payload.header_length, self._max_elements)

    def parse_size(self, payload: V2Payload) -> int:
        """Bytes of JSON to parse: binary tensors are views, a form is parsed already."""
        if payload.form is not None:
            return 0
        return len(split_body(payload.body, payload.header_length)[0])

    def encode(self, response: InferResponse, request: InferRequest) -> EncodedBody:
        return encode_response(response, request)
