"""ONNX models through the server: the signature comes from the graph (names,
datatypes, -1 for symbolic or unknown dimensions), and inference runs on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from starlette.testclient import TestClient

from tests.builders import external_data_onnx
from tests.integration.serving import error_of, index_of, json_input, outputs_of, serve


def _mixed_graph(path: Path) -> None:
    """Two inputs of different datatypes and kinds of dimension: symbolic, unknown, fixed."""
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["features", "features"], ["doubled"]),
            helper.make_node("Neg", ["offsets"], ["negated"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("features", TensorProto.DOUBLE, ["batch", None, 3]),
            helper.make_tensor_value_info("offsets", TensorProto.INT8, [2, 2]),
        ],
        [
            helper.make_tensor_value_info("doubled", TensorProto.DOUBLE, ["batch", None, 3]),
            helper.make_tensor_value_info("negated", TensorProto.INT8, [2, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def onnx_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("onnx")
    _mixed_graph(root / "mixed" / "1" / "model.onnx")
    (root / "corrupt" / "1").mkdir(parents=True)
    (root / "corrupt" / "1" / "model.onnx").write_bytes(b"\x08\x01garbage")
    # Its weights "outside" the repository: onnxruntime's refusal names the resolved path.
    external_data_onnx(root / "escaping" / "1" / "model.onnx", "../../../secret.bin")
    return root


@pytest.fixture(scope="module")
def onnx_client(onnx_repo: Path) -> Iterator[TestClient]:
    with serve([onnx_repo]) as running:
        yield running


def test_signature_is_read_from_the_graph(onnx_client: TestClient) -> None:
    metadata = onnx_client.get("/v2/models/mixed").json()
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [
        {"name": "features", "datatype": "FP64", "shape": [-1, -1, 3]},
        {"name": "offsets", "datatype": "INT8", "shape": [2, 2]},
    ]
    assert metadata["outputs"] == [
        {"name": "doubled", "datatype": "FP64", "shape": [-1, -1, 3]},
        {"name": "negated", "datatype": "INT8", "shape": [2, 2]},
    ]


def test_a_fixed_first_dimension_turns_batching_off(onnx_client: TestClient) -> None:
    config = onnx_client.get("/v2/models/mixed/config").json()
    assert config["max_batch_size"] == 0
    assert config["input"][1] == {"name": "offsets", "data_type": "TYPE_INT8", "dims": [2, 2]}


def test_inference_on_the_graph(onnx_client: TestClient) -> None:
    features = np.arange(2 * 5 * 3, dtype=np.float64).reshape(2, 5, 3) / 7
    offsets = np.array([[1, -2], [127, -127]], dtype=np.int8)
    request = {"inputs": [json_input("features", "FP64", features), json_input("offsets", "INT8", offsets)]}
    doc, outputs = outputs_of(onnx_client.post("/v2/models/mixed/infer", json=request))
    assert [(o["name"], o["datatype"], o["shape"]) for o in doc["outputs"]] == [
        ("doubled", "FP64", [2, 5, 3]),
        ("negated", "INT8", [2, 2]),
    ]
    np.testing.assert_array_equal(outputs["doubled"], features * 2)
    np.testing.assert_array_equal(outputs["negated"], -offsets)


def test_the_graph_shapes_are_enforced(onnx_client: TestClient) -> None:
    features = np.zeros((1, 2, 4), dtype=np.float64)  # last dimension is fixed at 3
    offsets = np.zeros((2, 2), dtype=np.int8)
    request = {"inputs": [json_input("features", "FP64", features), json_input("offsets", "INT8", offsets)]}
    assert "features" in error_of(onnx_client.post("/v2/models/mixed/infer", json=request), 400)
    request["inputs"][0] = json_input("features", "FP64", np.zeros((1, 2, 3)))
    request["inputs"][1] = json_input("offsets", "INT8", np.zeros((1, 2), dtype=np.int8))
    assert "offsets" in error_of(onnx_client.post("/v2/models/mixed/infer", json=request), 400)


def test_a_corrupt_file_is_unavailable_with_a_reason(onnx_repo: Path, onnx_client: TestClient) -> None:
    entry = index_of(onnx_client)["corrupt/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "onnxruntime cannot load model.onnx" in entry["reason"]
    assert str(onnx_repo) not in entry["reason"]  # the server's paths stay in its log
    response = onnx_client.post("/v2/models/corrupt/infer", json={"inputs": [{"name": "x"}]})
    assert str(onnx_repo) not in error_of(response, 503)


def test_a_load_error_naming_a_path_outside_the_repository_shows_no_server_path(
    onnx_repo: Path, onnx_client: TestClient
) -> None:
    outside = str(onnx_repo.parent.resolve())
    entry = index_of(onnx_client)["escaping/1"]
    assert entry["state"] == "UNAVAILABLE" and "escapes model directory" in entry["reason"], entry
    assert outside not in entry["reason"]
    assert "<tmp>/" in entry["reason"]  # the repository is under the temporary directory
    ready = onnx_client.get("/v2/health/ready")  # read without a key on a keyed server
    assert "escapes model directory" in ready.text and outside not in ready.text
    response = onnx_client.post("/v2/models/escaping/infer", json={"inputs": [{"name": "x"}]})
    assert outside not in error_of(response, 503)
