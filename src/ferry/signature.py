"""Tensor specifications and the mapping between Open Inference Protocol datatypes
and numpy dtypes; validation of decoded inputs against a model's signature."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferry.errors import InvalidInput, PayloadTooLarge

# OIP datatype -> numpy dtype. BYTES tensors are numpy object arrays of ``bytes``.
# Explicit little-endian, because the binary extension is little-endian on the wire.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}
DATATYPES = tuple(NUMPY_DTYPES)

_BY_KIND_SIZE: dict[tuple[str, int], str] = {
    (dt.kind, dt.itemsize): name for name, dt in NUMPY_DTYPES.items() if name != "BYTES"
}


def datatype_of(array: np.ndarray) -> str:
    """The OIP datatype name of a numpy array (strings and objects are BYTES)."""
    kind = array.dtype.kind
    if kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return _BY_KIND_SIZE[(kind, array.dtype.itemsize)]
    except KeyError:
        raise TypeError(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype") from None


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise InvalidInput(f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}") from None


@dataclass(frozen=True)
class TensorSpec:
    """Name, OIP datatype and shape of one tensor; -1 in ``shape`` is any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in NUMPY_DTYPES:
            raise ValueError(f"tensor {self.name!r}: unknown datatype {self.datatype!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @property
    def dtype(self) -> np.dtype[Any]:
        return NUMPY_DTYPES[self.datatype]


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    _inputs_by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)
    _outputs_by_name: dict[str, TensorSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "_inputs_by_name", {s.name: s for s in self.inputs})
        object.__setattr__(self, "_outputs_by_name", {s.name: s for s in self.outputs})

    def input(self, name: str) -> TensorSpec | None:
        return self._inputs_by_name.get(name)

    def output(self, name: str) -> TensorSpec | None:
        return self._outputs_by_name.get(name)

    def require_input(self, name: str) -> TensorSpec:
        spec = self._inputs_by_name.get(name)
        if spec is None:
            expected = ", ".join(s.name for s in self.inputs)
            raise InvalidInput(f"unknown input {name!r}; the model expects: {expected}")
        return spec

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.outputs)

    @property
    def batch_axis(self) -> bool:
        """True when every tensor's first dimension is variable, so requests can be
        stacked along it into one batch."""
        tensors = self.inputs + self.outputs
        return bool(tensors) and all(len(s.shape) >= 1 and s.shape[0] == -1 for s in tensors)


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def check_inputs(signature: Signature, inputs: dict[str, np.ndarray], max_elements: int | None = None) -> None:
    """Refuse inputs whose names, datatypes or shapes the model does not accept (400), or
    that hold more than ``max_elements`` elements (the model's own limit, 413)."""
    missing = [s.name for s in signature.inputs if s.name not in inputs]
    if missing:
        raise InvalidInput(f"missing input(s): {', '.join(missing)}")
    for name, array in inputs.items():
        spec = signature.require_input(name)
        got = datatype_of(array)
        if got != spec.datatype:
            raise InvalidInput(f"input {name!r} has datatype {got}, the model expects {spec.datatype}")
        check_shape(spec, array.shape)
        if max_elements is not None and array.size > max_elements:
            raise PayloadTooLarge(f"input {name!r} has {array.size} elements; this model takes at most {max_elements}")


def check_shape(spec: TensorSpec, shape: Sequence[int]) -> None:
    if len(shape) != len(spec.shape):
        raise InvalidInput(
            f"input {spec.name!r} has shape {list(shape)} (rank {len(shape)}), "
            f"the model expects rank {len(spec.shape)}: {list(spec.shape)}"
        )
    for got, want in zip(shape, spec.shape, strict=True):
        if want != -1 and got != want:
            raise InvalidInput(
                f"input {spec.name!r} has shape {list(shape)}, the model expects {list(spec.shape)} (-1 means any size)"
            )
