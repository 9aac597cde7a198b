"""A model's config.yaml, seen through the server: strict validation (a typo makes the
model UNAVAILABLE with a reason, never a silent default) and settings that show up in
metadata, Triton config and behaviour."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.builders import identity_onnx, scale_onnx
from tests.integration.serving import error_of, index_of, json_input, outputs_of, serve

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)

CONFIGS = {
    "typo": "max_batch_sise: 8\n",
    "nested_typo": "inputs:\n  - name: x\n    datatype: FP32\n    shape: [-1, 4]\n    dims: [4]\n",
    "bad_value": "max_batch_size: -3\n",
    "bad_datatype": "inputs:\n  - {name: x, datatype: FLOAT, shape: [-1, 4]}\n",
    "not_yaml": "max_batch_size: [8\n",
    "not_a_mapping": "- max_batch_size\n- 8\n",
    "wrong_tensor_name": "inputs:\n  - {name: nope, datatype: FP32, shape: [-1, 4]}\n",
    "empty": "",
    "unbatched": "max_batch_size: 0\n",
    "tuned": "max_batch_size: 8\nmax_delay_ms: 5\ninstances: 2\ndescription: two copies\nwarmup: false\n",
    "narrowed": "inputs:\n  - {name: x, datatype: FP32, shape: [-1, 4]}\n",
    "limited": "max_body_bytes: 2048\nmax_tensor_elements: 8\n",
    # The labels "file" is a folder: the OS error names its absolute path.
    "labels_folder": "postprocess:\n  - {output: y, labels: labels}\n",
}


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("configs")
    for name, text in CONFIGS.items():
        if name == "narrowed":
            identity_onnx(root / name / "1" / "model.onnx", "FP32")
            (root / name / "config.yaml").write_text(text.replace("name: x", "name: INPUT0"))
            continue
        scale_onnx(root / name / "1" / "model.onnx", 2.0)
        (root / name / "config.yaml").write_text(text)
    (root / "labels_folder" / "labels").mkdir()
    with serve([root]) as running:
        yield running


@pytest.mark.parametrize(
    ("name", "mentions"),
    [
        ("typo", "'max_batch_sise'"),
        ("nested_typo", "dims"),
        ("bad_value", "max_batch_size"),
        ("bad_datatype", "FLOAT"),
        ("not_yaml", "config.yaml"),
        ("not_a_mapping", "mapping"),
    ],
)
def test_a_bad_config_makes_the_model_unavailable(configured: TestClient, name: str, mentions: str) -> None:
    entry = index_of(configured)[name]
    assert entry["state"] == "UNAVAILABLE"
    assert mentions in entry["reason"], entry
    response = configured.post(f"/v2/models/{name}/infer", json={"inputs": [json_input("x", "FP32", X)]})
    assert mentions in error_of(response, 503)
    assert "retry-after" in response.headers
    assert configured.get(f"/v2/models/{name}/ready").status_code == 503
    # The others still load and serve, but a failed model keeps the server unready.
    assert name in error_of(configured.get("/v2/health/ready"), 503)


def test_a_config_error_naming_a_server_path_shows_none(
    configured: TestClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = str(tmp_path_factory.getbasetemp())
    reason = index_of(configured)["labels_folder"]["reason"]
    assert "labels file 'labels': cannot read it" in reason and "labels_folder/labels" in reason, reason
    assert base not in reason
    assert base not in error_of(configured.get("/v2/health/ready"), 503)
    message = error_of(configured.post("/v2/repository/models/labels_folder/load"), 400)
    assert "labels_folder/labels" in message and base not in message


def test_unknown_key_lists_the_allowed_keys(configured: TestClient) -> None:
    reason = index_of(configured)["typo"]["reason"]
    assert "unknown key" in reason
    assert "max_batch_size" in reason  # the hint names the key that was meant


def test_tensor_names_must_be_the_model_own(configured: TestClient) -> None:
    entry = index_of(configured)["wrong_tensor_name/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "nope" in entry["reason"]


def test_empty_config_means_defaults(configured: TestClient) -> None:
    assert index_of(configured)["empty/1"]["state"] == "READY"
    _, outputs = outputs_of(configured.post("/v2/models/empty/infer", json={"inputs": [json_input("x", "FP32", X)]}))
    np.testing.assert_array_equal(outputs["y"], X * 2)
    assert configured.get("/v2/models/empty/config").json()["max_batch_size"] == 32


def test_batching_off_shows_in_the_triton_config(configured: TestClient) -> None:
    config = configured.get("/v2/models/unbatched/config").json()
    assert config["max_batch_size"] == 0
    assert config["input"][0]["dims"] == [-1, 4]  # the batch dimension stays when batching is off
    assert "dynamic_batching" not in config


def test_tuned_settings_show_in_the_triton_config(configured: TestClient) -> None:
    config = configured.get("/v2/models/tuned/config").json()
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 5000}
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    _, outputs = outputs_of(configured.post("/v2/models/tuned/infer", json={"inputs": [json_input("x", "FP32", X)]}))
    np.testing.assert_array_equal(outputs["y"], X * 2)


def test_config_can_narrow_the_graph_signature(configured: TestClient) -> None:
    metadata = configured.get("/v2/models/narrowed").json()
    assert metadata["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}]
    ok = {"inputs": [json_input("INPUT0", "FP32", X)]}
    _, outputs = outputs_of(configured.post("/v2/models/narrowed/infer", json=ok))
    np.testing.assert_array_equal(outputs["OUTPUT0"], X)
    wide = {"inputs": [json_input("INPUT0", "FP32", np.zeros((1, 5), dtype=np.float32))]}
    error_of(configured.post("/v2/models/narrowed/infer", json=wide), 400)


def test_fixing_the_config_and_loading_makes_it_ready(tmp_path: Path) -> None:
    scale_onnx(tmp_path / "fixable" / "1" / "model.onnx", 2.0)
    config = tmp_path / "fixable" / "config.yaml"
    config.write_text("max_batch_sise: 4\n")
    with serve([tmp_path]) as client:
        message = error_of(client.post("/v2/repository/models/fixable/load"), 400)
        assert "max_batch_sise" in message
        config.write_text("max_batch_size: 4\n")
        assert client.post("/v2/repository/models/fixable/load").status_code == 200
        assert index_of(client)["fixable/1"]["state"] == "READY"
        assert client.get("/v2/models/fixable/config").json()["max_batch_size"] == 4


def test_per_model_request_limits(configured: TestClient) -> None:
    """config.yaml's max_body_bytes and max_tensor_elements narrow the server's limits for
    that model alone."""
    rows = np.ones((3, 4), dtype=np.float32)  # 12 elements
    body = {"inputs": [json_input("x", "FP32", rows)]}
    assert configured.post("/v2/models/empty/infer", json=body).status_code == 200
    message = error_of(configured.post("/v2/models/limited/infer", json=body), 413)
    assert "12 elements" in message and "at most 8" in message
    small = {"inputs": [json_input("x", "FP32", rows[:2])]}
    assert configured.post("/v2/models/limited/infer", json=small).status_code == 200
    padded = {**small, "parameters": {"pad": "x" * 4096}}
    assert "limit is 2048" in error_of(configured.post("/v2/models/limited/infer", json=padded), 413)
    assert configured.post("/v2/models/empty/infer", json=padded).status_code == 200
