"""The model repository over HTTP: what is discovered on disk (and what is ignored),
and the repository extension's index, load and unload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.builders import identity_onnx, scale_onnx
from tests.integration.serving import error_of, index_of, json_input, outputs_of, serve

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    scale_onnx(root / "reloadable" / "1" / "model.onnx", 1.0)
    scale_onnx(root / "unloadable" / "1" / "model.onnx", 3.0)
    scale_onnx(root / "survivor" / "1" / "model.onnx", 5.0)
    # A model file directly in the repository is a model named after the file.
    scale_onnx(root / "lonely.onnx", 4.0)
    # Things that are not models, which discovery must skip without failing.
    (root / "README.md").write_text("# models\n")
    (root / "notes.txt").write_text("not a model\n")
    (root / ".git" / "1").mkdir(parents=True)
    (root / ".git" / "1" / "model.onnx").write_bytes(b"hidden")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<html></html>")
    (root / "empty_versions" / "1").mkdir(parents=True)
    (root / "empty_versions" / "1" / "notes.txt").write_text("no model here")
    (root / "bad name" / "1").mkdir(parents=True)
    scale_onnx(root / "bad name" / "1" / "model.onnx", 1.0)
    extras = root / "reloadable"
    (extras / "latest").mkdir()
    (extras / "\u00b2").mkdir()  # isdigit() is true, int() refuses it
    (extras / "0").mkdir()
    (extras / "1" / "README.md").write_text("the model file sits beside me")
    return root


@pytest.fixture(scope="module")
def repo_client(repo: Path) -> Iterator[TestClient]:
    with serve([repo]) as running:
        yield running


def _infer(client: TestClient, name: str, version: str | None = None) -> np.ndarray:
    path = f"/v2/models/{name}/versions/{version}/infer" if version else f"/v2/models/{name}/infer"
    _, outputs = outputs_of(client.post(path, json={"inputs": [json_input("x", "FP32", X)]}))
    return outputs["y"]


def test_only_models_are_discovered(repo_client: TestClient) -> None:
    index = index_of(repo_client)
    names = {entry["name"] for entry in index.values()}
    assert names >= {"reloadable", "unloadable", "survivor", "lonely"}
    assert not names & {"README", "notes", ".git", "docs", "empty_versions", "bad name"}
    assert all(entry["state"] == "READY" for entry in index.values()), index
    assert [e["version"] for e in index.values() if e["name"] == "reloadable"] == ["1"]


def test_a_single_file_is_a_model(repo_client: TestClient) -> None:
    np.testing.assert_array_equal(_infer(repo_client, "lonely"), X * 4)
    assert repo_client.get("/v2/models/lonely").json()["versions"] == ["1"]


def test_load_picks_up_a_new_version(repo: Path, repo_client: TestClient) -> None:
    np.testing.assert_array_equal(_infer(repo_client, "reloadable"), X)
    scale_onnx(repo / "reloadable" / "2" / "model.onnx", 10.0)
    assert repo_client.post("/v2/repository/models/reloadable/load").status_code == 200
    index = index_of(repo_client)
    assert index["reloadable/2"]["state"] == "READY"
    assert repo_client.get("/v2/models/reloadable").json()["versions"] == ["1", "2"]
    np.testing.assert_array_equal(_infer(repo_client, "reloadable"), X * 10)  # the latest
    np.testing.assert_array_equal(_infer(repo_client, "reloadable", "1"), X)


def test_load_picks_up_a_new_model(repo: Path, repo_client: TestClient) -> None:
    error_of(repo_client.get("/v2/models/newcomer"), 404)
    identity_onnx(repo / "newcomer" / "1" / "model.onnx", "INT32")
    response = repo_client.post("/v2/repository/models/newcomer/load", json={})
    assert response.status_code == 200, response.text
    assert index_of(repo_client)["newcomer/1"]["state"] == "READY"
    assert repo_client.get("/v2/models/newcomer/ready").status_code == 200


def test_unload_then_load(repo_client: TestClient) -> None:
    np.testing.assert_array_equal(_infer(repo_client, "unloadable"), X * 3)
    assert repo_client.post("/v2/repository/models/unloadable/unload", content=b"").status_code == 200

    entry = index_of(repo_client)["unloadable/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert entry["reason"] == "unloaded"
    ready = repo_client.post("/v2/repository/index", json={"ready": True}).json()
    assert "unloadable" not in {e["name"] for e in ready}
    response = repo_client.post("/v2/models/unloadable/infer", json={"inputs": [json_input("x", "FP32", X)]})
    # Unloaded is not coming back by itself: 404, not a 503 that invites retries.
    assert "unloaded" in error_of(response, 404)
    assert repo_client.get("/v2/models/unloadable/ready").status_code != 200
    assert repo_client.get("/v1/models/unloadable").json() == {"name": "unloadable", "ready": False}
    # The other models do not notice.
    np.testing.assert_array_equal(_infer(repo_client, "survivor"), X * 5)

    assert repo_client.post("/v2/repository/models/unloadable/load").status_code == 200
    assert index_of(repo_client)["unloadable/1"]["state"] == "READY"
    np.testing.assert_array_equal(_infer(repo_client, "unloadable"), X * 3)


def test_failed_reload_keeps_serving_the_old_version(repo: Path, repo_client: TestClient) -> None:
    model_file = repo / "survivor" / "1" / "model.onnx"
    good = model_file.read_bytes()
    model_file.write_bytes(b"this is not an ONNX file")
    try:
        message = error_of(repo_client.post("/v2/repository/models/survivor/load"), 400)
        assert "survivor" in message
        entry = index_of(repo_client)["survivor/1"]
        assert entry["state"] == "READY"
        assert "reload failed" in entry["reason"]
        np.testing.assert_array_equal(_infer(repo_client, "survivor"), X * 5)
    finally:
        model_file.write_bytes(good)
    assert repo_client.post("/v2/repository/models/survivor/load").status_code == 200
    assert index_of(repo_client)["survivor/1"] == {"name": "survivor", "version": "1", "state": "READY", "reason": ""}


def test_load_of_a_broken_new_model_is_400_and_listed(repo: Path, repo_client: TestClient) -> None:
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"garbage")
    message = error_of(repo_client.post("/v2/repository/models/broken/load"), 400)
    assert "broken" in message
    entry = index_of(repo_client)["broken/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "onnxruntime" in entry["reason"]
    response = repo_client.post("/v2/models/broken/infer", json={"inputs": [json_input("x", "FP32", X)]})
    assert "onnxruntime" in error_of(response, 503)
    assert "retry-after" in response.headers


def test_removed_version_disappears_on_load(repo: Path, repo_client: TestClient) -> None:
    scale_onnx(repo / "shrinking" / "1" / "model.onnx", 1.0)
    scale_onnx(repo / "shrinking" / "2" / "model.onnx", 2.0)
    assert repo_client.post("/v2/repository/models/shrinking/load").status_code == 200
    np.testing.assert_array_equal(_infer(repo_client, "shrinking"), X * 2)
    (repo / "shrinking" / "2" / "model.onnx").unlink()
    (repo / "shrinking" / "2").rmdir()
    assert repo_client.post("/v2/repository/models/shrinking/load").status_code == 200
    assert "shrinking/2" not in index_of(repo_client)
    error_of(repo_client.get("/v2/models/shrinking/versions/2"), 404)
    np.testing.assert_array_equal(_infer(repo_client, "shrinking"), X)
