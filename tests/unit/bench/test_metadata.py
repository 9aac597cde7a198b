"""ferry.bench.metadata.parse: V2 model metadata as Ferry, Triton, KServe and MLServer
write it."""

from __future__ import annotations

import pytest

from ferry.bench.metadata import parse
from ferry.bench.options import UsageError
from ferry.signature import TensorSpec


def test_triton_style_metadata() -> None:
    doc = {
        "name": "densenet",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "data_0", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": "prob", "datatype": "FP32", "shape": [-1, 1000]}],
    }
    meta = parse(doc, "densenet")
    assert meta.name == "densenet" and meta.platform == "onnxruntime_onnx"
    assert meta.inputs == (TensorSpec("data_0", "FP32", (-1, 3, 224, 224)),)


def test_mlserver_may_list_no_inputs() -> None:
    assert parse({"name": "m", "platform": ""}, "m").inputs == ()


@pytest.mark.parametrize(
    "doc",
    [
        ["not", "an", "object"],
        {"inputs": "x"},
        {"inputs": [{"name": "x", "datatype": "BF16", "shape": [1]}]},
        {"inputs": [{"name": "x", "shape": [1]}]},
    ],
)
def test_metadata_that_cannot_be_used_is_a_usage_error(doc: object) -> None:
    with pytest.raises(UsageError, match="model 'm'"):
        parse(doc, "m")
