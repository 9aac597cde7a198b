"""PyTorch models through the server: TorchScript .pt (signature from config.yaml, which
it needs) and torch.export .pt2 (signature read from the program, dynamic dims -> -1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.integration.serving import binary_request, error_of, index_of, json_input, outputs_of, serve

pytest.importorskip("torch")
# Imported after the skip, so the suite still runs without the torch extra.
import torch

pytestmark = [
    pytest.mark.torch,
    # TorchScript is deprecated upstream, but .pt files are what many users have.
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
]

SCRIPT_CONFIG = """
inputs:
  - {name: a, datatype: FP32, shape: [-1, 3]}
  - {name: b, datatype: FP32, shape: [-1, 3]}
outputs:
  - {name: sum, datatype: FP32, shape: [-1, 3]}
  - {name: product, datatype: FP32, shape: [-1, 3]}
"""


class SumProduct(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return a + b, a * b


class AffineAndTotal(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 3 + 1, x.sum(dim=1)


class Doubler(torch.nn.Module):
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens * 2


def _script(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(SumProduct()).save(str(path))


def _export(path: Path, module: torch.nn.Module, example: torch.Tensor, dynamic: bool) -> None:
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    program = torch.export.export(module, (example,), dynamic_shapes=shapes)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))


@pytest.fixture(scope="module")
def torch_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("torch")
    _script(root / "scripted" / "1" / "model.pt")
    (root / "scripted" / "config.yaml").write_text(SCRIPT_CONFIG)
    _script(root / "scripted_bare" / "1" / "model.pt")
    _export(root / "exported" / "1" / "model.pt2", AffineAndTotal(), torch.zeros(2, 4), dynamic=True)
    # Several .pt2 files: the server loads them concurrently, which torch.export.load
    # cannot do by itself (it keeps global state).
    _export(root / "fixed" / "1" / "model.pt2", Doubler(), torch.zeros(2, 3, dtype=torch.int64), dynamic=False)
    (root / "garbage" / "1").mkdir(parents=True)
    (root / "garbage" / "1" / "model.pt2").write_bytes(b"not a zip file")
    with serve([root]) as running:
        yield running


def test_torchscript_with_declared_signature(torch_client: TestClient) -> None:
    metadata = torch_client.get("/v2/models/scripted").json()
    assert metadata["platform"] == "pytorch_torchscript"
    assert [i["name"] for i in metadata["inputs"]] == ["a", "b"]
    assert [o["name"] for o in metadata["outputs"]] == ["sum", "product"]
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 1.5, dtype=np.float32)
    request = {"inputs": [json_input("a", "FP32", a), json_input("b", "FP32", b)]}
    _, outputs = outputs_of(torch_client.post("/v2/models/scripted/infer", json=request))
    np.testing.assert_array_equal(outputs["sum"], a + b)
    np.testing.assert_array_equal(outputs["product"], a * b)


def test_torchscript_binary_input(torch_client: TestClient) -> None:
    """Binary inputs are read-only views of the body; torch must still get them."""
    a = np.ones((1, 3), dtype=np.float32)
    b = np.array([[1, 2, 3]], dtype=np.float32)
    body, headers = binary_request([("a", "FP32", a), ("b", "FP32", b)], parameters={"binary_data_output": True})
    _, outputs = outputs_of(torch_client.post("/v2/models/scripted/infer", content=body, headers=headers))
    np.testing.assert_array_equal(outputs["sum"], a + b)


def test_torchscript_without_a_declared_signature_is_unavailable(torch_client: TestClient) -> None:
    entry = index_of(torch_client)["scripted_bare/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "TorchScript" in entry["reason"]
    assert "config.yaml" in entry["reason"]
    assert "inputs and outputs" in entry["reason"]


def test_exported_signature_is_read_from_the_file(torch_client: TestClient) -> None:
    metadata = torch_client.get("/v2/models/exported").json()
    assert metadata["platform"] == "pytorch_export"
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [
        {"name": "output_0", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "output_1", "datatype": "FP32", "shape": [-1]},
    ]
    # A dynamic batch dimension makes the model batchable.
    assert torch_client.get("/v2/models/exported/config").json()["max_batch_size"] > 0


@pytest.mark.parametrize("rows", [1, 5])
def test_exported_inference_with_any_batch_size(torch_client: TestClient, rows: int) -> None:
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    _, outputs = outputs_of(
        torch_client.post("/v2/models/exported/infer", json={"inputs": [json_input("x", "FP32", x)]})
    )
    np.testing.assert_array_equal(outputs["output_0"], x * 3 + 1)
    np.testing.assert_array_equal(outputs["output_1"], x.sum(axis=1))


def test_exported_with_static_shapes(torch_client: TestClient) -> None:
    metadata = torch_client.get("/v2/models/fixed").json()
    assert metadata["inputs"] == [{"name": "tokens", "datatype": "INT64", "shape": [2, 3]}]
    assert metadata["outputs"] == [{"name": "output", "datatype": "INT64", "shape": [2, 3]}]
    assert torch_client.get("/v2/models/fixed/config").json()["max_batch_size"] == 0
    tokens = np.array([[1, 2, 3], [-4, 5, 2**40]], dtype=np.int64)
    _, outputs = outputs_of(
        torch_client.post("/v2/models/fixed/infer", json={"inputs": [json_input("tokens", "INT64", tokens)]})
    )
    np.testing.assert_array_equal(outputs["output"], tokens * 2)
    three = {"inputs": [json_input("tokens", "INT64", np.zeros((3, 3), dtype=np.int64))]}
    error_of(torch_client.post("/v2/models/fixed/infer", json=three), 400)


def test_unreadable_file_is_unavailable(torch_client: TestClient) -> None:
    entry = index_of(torch_client)["garbage/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "torch cannot load model.pt2" in entry["reason"]
