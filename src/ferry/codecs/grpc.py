"""Open Inference Protocol gRPC messages: ``ModelInferRequest`` in, ``ModelInferResponse``
out. Tensors come either as ``raw_input_contents`` (one little-endian buffer per input,
what tritonclient.grpc sends) or in the typed ``contents`` fields (what grpcurl users
write); the answer uses the same form as the request."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry.codecs.tensors import array_from_raw, array_to_raw, as_bytes, check_tensor_header
from ferry.errors import InvalidInput
from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.inference import InferRequest, InferResponse, RequestedOutput
from ferry.signature import NUMPY_DTYPES, datatype_of, element_count

# datatype -> the typed ``InferTensorContents`` field that carries it (FP16 and BF16
# have none: they travel as raw bytes only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_of(entries: Any) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as plain Python values."""
    values = {}
    for key, parameter in entries.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is not None:
            values[key] = getattr(parameter, choice)
    return values


def decode_request(message: pb.ModelInferRequest, max_elements: int) -> InferRequest:
    if not message.inputs:
        raise InvalidInput("the request needs at least one input")
    raw = message.raw_input_contents
    if raw and len(raw) != len(message.inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs: "
            "send every input raw, or every input in contents"
        )
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(message.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if not name:
            raise InvalidInput(f"inputs[{index}] needs a name")
        if name in inputs:
            raise InvalidInput(f"input {name!r} appears more than once")
        check_tensor_header(name, datatype, shape, max_elements)
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(f"input {name!r} has both contents and raw_input_contents")
            inputs[name] = array_from_raw(name, datatype, shape, memoryview(raw[index]))
        else:
            inputs[name] = _from_contents(name, datatype, shape, tensor.contents)
    return InferRequest(
        inputs=inputs,
        id=message.id or None,
        parameters=parameters_of(message.parameters),
        outputs=[RequestedOutput(o.name, parameters=parameters_of(o.parameters)) for o in message.outputs] or None,
        raw=bool(raw),
    )


def _from_contents(name: str, datatype: str, shape: list[int], contents: pb.InferTensorContents) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"input {name!r}: {datatype} data must be sent in raw_input_contents")
    values = getattr(contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise InvalidInput(f"input {name!r} has {len(values)} values in {field}, but shape {shape} needs {count}")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    wide = np.array(values, dtype=np.uint64 if datatype == "UINT64" else np.int64 if dtype.kind in "iu" else None)
    if dtype.kind in "iu" and wide.size:
        info = np.iinfo(dtype)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidInput(f"input {name!r}: a value is out of range for {datatype}")
    return wide.astype(dtype).reshape(shape)


# Elements turned into Python numbers at a time: ``tolist`` of a whole output took 8 times
# its memory in Python objects; chunks keep that bounded (and are no slower).
_CHUNK = 65536


def _extend(field: Any, flat: np.ndarray) -> None:
    for start in range(0, flat.size, _CHUNK):
        field.extend(flat[start : start + _CHUNK].tolist())


def encode_response(response: InferResponse, raw: bool) -> pb.ModelInferResponse:
    """``raw``: every output in raw_output_contents, else in the typed contents (raw all
    the same when one output's datatype has no typed field)."""
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version, id=response.id or ""
    )
    for name, array in response.outputs.items():
        datatype = datatype_of(array)
        tensor = message.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if raw or datatype not in CONTENTS_FIELD:
            message.raw_output_contents.append(array_to_raw(array, datatype))
        elif datatype == "BYTES":
            tensor.contents.bytes_contents.extend(as_bytes(item) for item in array.reshape(-1))
        else:
            _extend(getattr(tensor.contents, CONTENTS_FIELD[datatype]), array.reshape(-1))
    if message.raw_output_contents and len(message.raw_output_contents) != len(message.outputs):
        # The protocol has one form per response: all raw once one output must be.
        del message.raw_output_contents[:]
        for tensor, array in zip(message.outputs, response.outputs.values(), strict=True):
            tensor.ClearField("contents")
            message.raw_output_contents.append(array_to_raw(array, tensor.datatype))
    return message


class GrpcCodec:
    """The gRPC codec as the DataPlane sees it."""

    protocol = "grpc"

    def __init__(self, max_elements: int) -> None:
        self._max_elements = max_elements

    def decode(self, payload: pb.ModelInferRequest, signature: object) -> InferRequest:
        return decode_request(payload, self._max_elements)

    def parse_size(self, payload: pb.ModelInferRequest) -> int:
        # grpc.aio has parsed the message already: what is left is no text parsing.
        return 0

    def encode(self, response: InferResponse, request: InferRequest) -> pb.ModelInferResponse:
        return encode_response(response, request.raw)
