"""PyTorch models: TorchScript (``.pt``) and ``torch.export`` programs (``.pt2``).
torch is an optional extra; without it these files get a clear error."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from ferry.config import ModelConfig
from ferry.errors import ConfigError, InvalidInput, Unavailable, first_line
from ferry.runtimes.base import declared_signature
from ferry.signature import Signature, TensorSpec

_DATATYPES = {
    "torch.bool": "BOOL",
    "torch.uint8": "UINT8",
    "torch.int8": "INT8",
    "torch.int16": "INT16",
    "torch.int32": "INT32",
    "torch.int64": "INT64",
    "torch.float16": "FP16",
    "torch.float32": "FP32",
    "torch.float64": "FP64",
}

# torch.export.load keeps its deserializer in a module global: two .pt2 files loading
# at once (the manager loads models concurrently) fail with "already set".
_EXPORT_LOAD = threading.Lock()


class TorchRuntime:
    def __init__(self, module: Any, signature: Signature, device: Any) -> None:
        import torch

        self._torch = torch
        self._module = module
        self._device = device
        self.signature = signature
        self.batchable = signature.batch_axis

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        tensors = [_tensor(torch, inputs[s.name]).to(self._device) for s in self.signature.inputs]
        try:
            with torch.inference_mode():
                result = self._module(*tensors)
        except torch.cuda.OutOfMemoryError:
            raise Unavailable("the GPU is out of memory; try again with a smaller request") from None
        except RuntimeError as exc:
            raise InvalidInput(f"the model refused the input: {first_line(exc)}") from None
        return self._name_outputs(result)

    def _name_outputs(self, result: Any) -> dict[str, np.ndarray]:
        names = self.signature.output_names
        if isinstance(result, dict):
            values = [result[name] for name in names]
        elif isinstance(result, (tuple, list)):
            values = list(result)
        else:
            values = [result]
        if len(values) != len(names):
            raise ConfigError(f"the model returned {len(values)} outputs, the signature has {len(names)}")
        return {name: value.detach().cpu().numpy() for name, value in zip(names, values, strict=True)}

    def close(self) -> None:
        self._module = None


def _tensor(torch: Any, array: np.ndarray) -> Any:
    # torch.from_numpy shares memory and warns on read-only buffers (binary request views).
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, copy=True, order="C")
    return torch.from_numpy(array)


def load(path: Path, config: ModelConfig) -> TorchRuntime:
    try:
        import torch
    except ImportError:
        raise ConfigError(
            f"{path.name} is a PyTorch model, but torch is not installed: pip install 'ferry-serve[torch]'"
        ) from None
    device = _device(torch, config)
    if config.threads:
        torch.set_num_threads(config.threads)
    declared = declared_signature(config)
    try:
        if path.suffix == ".pt2":
            with _EXPORT_LOAD:
                program = torch.export.load(str(path))
            signature = declared or _exported_signature(program)
            module = program.module()
            module.to(device)
        else:
            module = torch.jit.load(str(path), map_location=device)
            module.eval()
            if declared is None:
                raise ConfigError(
                    f"{path.name} is TorchScript, whose tensor names and types cannot be read "
                    "from the file: declare inputs and outputs in config.yaml"
                )
            signature = declared
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"torch cannot load {path.name}: {type(exc).__name__}: {exc}") from None
    if any(s.datatype == "BYTES" for s in signature.inputs + signature.outputs):
        raise ConfigError("PyTorch models cannot take or return BYTES tensors")
    return TorchRuntime(module, signature, device)


def _device(torch: Any, config: ModelConfig) -> Any:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device")
    if config.device != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _exported_signature(program: Any) -> Signature:
    """Names, dtypes and shapes from the exported graph; dynamic dimensions become -1."""
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = [_spec(name, placeholders[name].meta.get("val")) for name in program.graph_signature.user_inputs]
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    results = output_node.args[0]
    values = [getattr(arg, "meta", {}).get("val") for arg in results]
    user_count = len(program.graph_signature.user_outputs)
    values = values[len(values) - user_count :]
    names = ["output"] if len(values) == 1 else [f"output_{i}" for i in range(len(values))]
    outputs = [_spec(name, value) for name, value in zip(names, values, strict=True)]
    return Signature(tuple(inputs), tuple(outputs))


def _spec(name: str, fake: Any) -> TensorSpec:
    if fake is None or not hasattr(fake, "dtype"):
        raise ConfigError(f"cannot read tensor {name!r} from the exported program; declare it in config.yaml")
    datatype = _DATATYPES.get(str(fake.dtype))
    if datatype is None:
        raise ConfigError(f"tensor {name!r} has dtype {fake.dtype}, which Ferry cannot serve")
    shape = tuple(d if type(d) is int else -1 for d in fake.shape)
    return TensorSpec(name, datatype, shape)
