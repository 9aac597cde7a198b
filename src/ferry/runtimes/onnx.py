"""ONNX models through onnxruntime: the default and fastest path."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, InvalidInput, PayloadTooLarge, Unavailable, first_line
from ferry.runtimes.base import override_specs
from ferry.signature import Signature, TensorSpec

# onnxruntime's element type names -> OIP datatypes.
_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


# The bytes of the process-wide arena every ONNX session allocates from (limit_memory);
# None: each session keeps onnxruntime's own unbounded arena.
_arena_bytes: int | None = None
_arena_lock = threading.Lock()
# onnxruntime's message when the capped arena cannot hold a tensor.
_ARENA_FULL = re.compile(r"Available memory of (\d+) is smaller than requested bytes of (\d+)")


def limit_memory(max_bytes: int) -> None:
    """Make every ONNX session loaded after this allocate its tensors (inputs, every
    intermediate, outputs) from one arena of ``max_bytes``: a graph whose sizes follow
    its inputs' values can then ask for more only to be refused, not to exhaust the
    machine. Once per process (onnxruntime keeps one environment); later calls change
    nothing."""
    global _arena_bytes
    with _arena_lock:
        if _arena_bytes is not None:
            return
        try:
            import onnxruntime as ort
        except ImportError:  # the onnx extra is not installed: nothing to limit
            return
        # kSameAsRequested (1): grow by what a tensor needs, not by doubling past the cap.
        arena = ort.OrtArenaCfg(max_bytes, 1, -1, -1)
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(memory, arena)
        _arena_bytes = max_bytes


class OnnxRuntime:
    def __init__(self, session: Any, signature: Signature) -> None:
        self._session = session
        self.signature = signature
        self.batchable = signature.batch_axis
        self._output_names = list(signature.output_names)
        self._string_inputs = {s.name for s in signature.inputs if s.datatype == "BYTES"}
        self._invalid_argument: type[Exception] = _invalid_argument_error()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {
            # onnxruntime wants str elements for string tensors, not bytes.
            name: _to_str(name, array) if name in self._string_inputs else array
            for name, array in inputs.items()
        }
        try:
            results = self._session.run(self._output_names, feed)
        except self._invalid_argument as exc:
            raise InvalidInput(f"the model refused the input: {first_line(exc)}") from None
        except Exception as exc:
            full = _ARENA_FULL.search(str(exc))
            if full is None:
                raise
            raise _memory_refusal(int(full.group(2))) from None
        return dict(zip(self._output_names, results, strict=True))

    def close(self) -> None:
        self._session = None


def _memory_refusal(requested: int) -> Exception:
    limit = _arena_bytes or 0
    if requested > limit:  # could never fit: the request is too big for this server
        return PayloadTooLarge(
            f"this input makes the model ask for a tensor of {requested // 2**20} MB, more than the "
            f"{limit // 2**20} MB the server gives ONNX models (--onnx-memory-mb)"
        )
    # Fits alone, not beside what other requests hold now.
    return Unavailable("ONNX models are using all the memory the server gives them; try again")


def load(path: Path, config: ModelConfig) -> OnnxRuntime:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if _arena_bytes is not None:
        options.add_session_config_entry("session.use_env_allocators", "1")
    # onnxruntime's pool threads spin while waiting for work; in a server they would burn
    # the cores that parse and answer requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if config.threads:
        options.intra_op_num_threads = config.threads
    try:
        session = ort.InferenceSession(str(path), options, providers=_providers(ort, config))
    except Exception as exc:
        raise ConfigError(f"onnxruntime cannot load {path.name}: {first_line(exc)}") from None
    inputs = tuple(_spec(arg) for arg in session.get_inputs())
    # Outputs that are not tensors (such as sequences of maps) have no OIP form.
    outputs = tuple(_spec(arg) for arg in session.get_outputs() if arg.type in _DATATYPES)
    unsupported = [arg.name for arg in session.get_inputs() if arg.type not in _DATATYPES]
    if unsupported:
        raise ConfigError(f"inputs {', '.join(unsupported)} are not tensors; Ferry cannot feed them")
    signature = Signature(
        override_specs(inputs, config.inputs),
        override_specs(outputs, config.outputs),
    )
    return OnnxRuntime(session, signature)


def _providers(ort: Any, config: ModelConfig) -> list[str]:
    available = ort.get_available_providers()
    if config.device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError("device: cuda was asked for but onnxruntime has no CUDA provider")
    if config.device != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _spec(arg: Any) -> TensorSpec:
    datatype = _DATATYPES.get(arg.type)
    if datatype is None:
        raise ConfigError(f"tensor {arg.name!r} has type {arg.type}, which Ferry cannot serve")
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or []))
    return TensorSpec(arg.name, datatype, shape)


def _to_str(name: str, array: np.ndarray) -> np.ndarray:
    # onnxruntime's Python binding carries string tensors as text only: bytes that are
    # not UTF-8 cannot reach the model unchanged, so refuse them rather than alter them.
    try:
        flat = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.reshape(-1)]
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r}: this ONNX model takes text, and an element is not UTF-8") from None
    return np.array(flat, dtype=object).reshape(array.shape)


def _invalid_argument_error() -> type[Exception]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    error: type[Exception] = state.InvalidArgument
    return error
