"""The request ``ferry bench`` sends, built once before any load: input tensors from the
model's metadata (random values) or from an --input-data file, then encoded for one
protocol. Every request of a run is the same bytes, so encoding never shows in the numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ferry.bench.options import UsageError
from ferry.codecs.tensors import array_to_json, array_to_raw
from ferry.errors import InvalidInput
from ferry.signature import NUMPY_DTYPES, TensorSpec, datatype_of

# Integers stay small: a model may use them as indices (embeddings, one-hot), and every
# integer type, INT8 included, holds 0-99.
INT_HIGH = 100
BYTES_LENGTH = 8
SEED = 0
# An --input-data file is read by Ferry's own decoder; it is the user's file, so no limit
# beyond what numpy can hold.
MAX_FILE_ELEMENTS = 2**40


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    array: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class InferInputs:
    """What one request carries: its input tensors, any outputs an --input-data file asked
    for, and how many rows (batch entries) it holds, for rows/s."""

    tensors: tuple[Tensor, ...]
    rows: int
    outputs: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpBody:
    body: bytes
    headers: dict[str, str]


def has_batch_dim(specs: tuple[TensorSpec, ...]) -> bool:
    """The OIP convention (Triton's max_batch_size > 0, Ferry's ONNX graphs): a variable
    first dimension on every input is the batch. Without metadata (no inputs listed) the
    first dimension is taken for the batch, as most models have one."""
    return all(len(s.shape) >= 1 and s.shape[0] == -1 for s in specs)


def input_shape(spec: TensorSpec, batch: int) -> list[int]:
    """The batch dimension becomes ``batch``; any other variable dimension becomes 1."""
    return [batch if i == 0 and d == -1 else 1 if d == -1 else d for i, d in enumerate(spec.shape)]


def random_array(datatype: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if datatype == "BYTES":
        count = int(np.prod(shape))
        letters = rng.integers(ord("a"), ord("z") + 1, size=(count, BYTES_LENGTH), dtype=np.uint8)
        array = np.empty(count, dtype=object)
        array[:] = [row.tobytes() for row in letters]
        return array.reshape(shape)
    if datatype == "BOOL":
        return rng.random(shape) < 0.5
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind == "f":
        return rng.random(shape, dtype=np.float64).astype(dtype)
    return rng.integers(0, INT_HIGH, size=shape, dtype=dtype)


def random_inputs(specs: tuple[TensorSpec, ...], batch: int, seed: int = SEED) -> InferInputs:
    """One request of random values in the shapes and datatypes of ``specs``."""
    if not specs:
        raise UsageError("the server's metadata lists no inputs for this model: give them with --input-data FILE")
    batched = has_batch_dim(specs)
    if batch > 1 and not batched:
        shapes = ", ".join(f"{s.name} {list(s.shape)}" for s in specs)
        raise UsageError(f"--batch {batch}: the model has no batch dimension (a -1 first on every input): {shapes}")
    rng = np.random.default_rng(seed)
    tensors = tuple(Tensor(s.name, s.datatype, random_array(s.datatype, input_shape(s, batch), rng)) for s in specs)
    return InferInputs(tensors, batch if batched else 1)


def load_input_data(path: Path, specs: tuple[TensorSpec, ...]) -> InferInputs:
    """A V2 inference request body, ``{"inputs": [...]}``, read by Ferry's own decoder (so
    nested ``data`` lists and every datatype work as they do on the server)."""
    from ferry.codecs.v2 import decode_request

    try:
        body = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--input-data {path}: {exc.strerror or exc}") from None
    try:
        request = decode_request(body, None, MAX_FILE_ELEMENTS)
    except InvalidInput as exc:
        raise UsageError(f"--input-data {path}: {exc.message}") from None
    tensors = tuple(Tensor(name, datatype_of(array), array) for name, array in request.inputs.items())
    first = tensors[0].array
    rows = first.shape[0] if has_batch_dim(specs) and first.ndim >= 1 else 1
    return InferInputs(tensors, rows, tuple(o.name for o in request.outputs or ()))


def json_body(inputs: InferInputs) -> HttpBody:
    """The V2 JSON request: every tensor's values in ``data``."""
    tensors = [
        {"name": t.name, "shape": list(t.array.shape), "datatype": t.datatype, "data": _json_data(t)}
        for t in inputs.tensors
    ]
    doc: dict[str, Any] = {"inputs": tensors}
    if inputs.outputs:
        doc["outputs"] = [{"name": name} for name in inputs.outputs]
    return HttpBody(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), {"Content-Type": "application/json"})


def _json_data(tensor: Tensor) -> Any:
    try:
        return array_to_json(tensor.name, tensor.array, tensor.datatype)
    except InvalidInput:
        raise UsageError(
            f"input {tensor.name!r} holds bytes that are not UTF-8 text, which JSON cannot carry: "
            "use --protocol rest-binary or grpc"
        ) from None


def binary_body(inputs: InferInputs) -> HttpBody:
    """The binary tensor extension: a JSON header naming each tensor's byte size, then the
    raw little-endian bytes in the same order. Outputs are asked for as binary too, as
    tritonclient and perf_analyzer do, so the server skips writing numbers as text."""
    raws = [array_to_raw(t.array, t.datatype) for t in inputs.tensors]
    tensors = [
        {
            "name": t.name,
            "shape": list(t.array.shape),
            "datatype": t.datatype,
            "parameters": {"binary_data_size": len(raw)},
        }
        for t, raw in zip(inputs.tensors, raws, strict=True)
    ]
    doc: dict[str, Any] = {"inputs": tensors}
    if inputs.outputs:
        doc["outputs"] = [{"name": name, "parameters": {"binary_data": True}} for name in inputs.outputs]
    else:
        doc["parameters"] = {"binary_data_output": True}
    header = orjson.dumps(doc)
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return HttpBody(header + b"".join(raws), headers)


def grpc_message(inputs: InferInputs, model: str) -> bytes:
    """A serialised ModelInferRequest with every tensor in ``raw_input_contents``."""
    from ferry.grpc.protos import grpc_service_pb2 as pb

    message = pb.ModelInferRequest(
        model_name=model,
        inputs=[
            pb.ModelInferRequest.InferInputTensor(name=t.name, datatype=t.datatype, shape=list(t.array.shape))
            for t in inputs.tensors
        ],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in inputs.outputs],
        raw_input_contents=[array_to_raw(t.array, t.datatype) for t in inputs.tensors],
    )
    return message.SerializeToString()
