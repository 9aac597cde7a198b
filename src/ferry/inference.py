"""The protocol-neutral request and response that codecs produce and consume and the
DataPlane works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RequestedOutput:
    name: str
    # None: follow the request-wide ``binary_data_output`` parameter.
    binary: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    # None means "every output", as the protocol says.
    outputs: list[RequestedOutput] | None = None
    # The tensors came as raw bytes (gRPC's raw_input_contents): answer in that form too.
    raw: bool = False

    @property
    def binary_output_default(self) -> bool:
        return self.parameters.get("binary_data_output") is True

    @property
    def timeout_s(self) -> float | None:
        """The reserved ``timeout`` parameter is in microseconds."""
        value = self.parameters.get("timeout")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value) / 1e6
        return None


@dataclass
class InferResponse:
    model_name: str
    model_version: str
    outputs: dict[str, np.ndarray]
    id: str | None = None
