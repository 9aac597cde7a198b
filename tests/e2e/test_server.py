"""The real `ferry server` process over a fresh data directory: upload a version over
HTTP multipart, promote it, and infer with tritonclient; a restart keeps serving it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import requests
import tritonclient.http as httpclient

from tests.builders import scale_onnx
from tests.e2e.server import Server, start_command


def _start(data_dir: Path, log: Path) -> Server:
    return start_command(["server", "--data-dir", str(data_dir)], log)


def _infer(server: Server, version: str = "") -> tuple[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.address)
    try:
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer("scale", [tensor], model_version=version)
        return result.get_response()["model_version"], result.as_numpy("y") / np.maximum(x, 1e-9)
    finally:
        client.close()


def _upload(server: Server, path: Path, **form: str) -> dict:
    with path.open("rb") as f:
        response = requests.post(
            f"{server.url}/api/v1/models/scale/versions", files={"file": (path.name, f)}, data=form, timeout=60
        )
    assert response.status_code == 201, response.text
    return response.json()


def test_upload_promote_infer_and_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = _start(data_dir, tmp_path / "server.log")
    try:
        first = _upload(server, scale_onnx(tmp_path / "v1.onnx", 2.0), stage="production")
        assert first["state"] == "ready", first
        version, factor = _infer(server)
        assert version == "1" and np.allclose(factor[:, 1:], 2.0)

        second = _upload(server, scale_onnx(tmp_path / "v2.onnx", 5.0))
        assert second["state"] == "ready"
        promoted = requests.put(f"{server.url}/api/v1/models/scale/stages/production", json={"version": 2}, timeout=60)
        assert promoted.status_code == 200, promoted.text
        # The answer to the promotion means it is live.
        version, factor = _infer(server)
        assert version == "2" and np.allclose(factor[:, 1:], 5.0)
        assert server.terminate() == 0
        assert (data_dir / "registry.db").is_file()
        assert any((data_dir / "artifacts").rglob("*"))

        server = _start(data_dir, tmp_path / "restart.log")
        version, _ = _infer(server)
        assert version == "2"
    finally:
        server.terminate()


def _eventually_served(server: Server, timeout_s: float = 10.0) -> tuple[str, np.ndarray]:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return _infer(server)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_control_and_inference_nodes_split_the_work(tmp_path: Path) -> None:
    """One registry (the same data directory here; PostgreSQL and shared artifacts in a
    cluster), a control node that manages it and an inference node that serves it."""
    data_dir = tmp_path / "data"
    control = start_command(["server", "--data-dir", str(data_dir), "--role", "control"], tmp_path / "control.log")
    try:
        inference = start_command(
            ["server", "--data-dir", str(data_dir), "--role", "inference"], tmp_path / "inference.log"
        )
        try:
            uploaded = _upload(control, scale_onnx(tmp_path / "v1.onnx", 2.0), stage="production")
            assert uploaded["state"] == "ready", uploaded
            # The inference node follows the registry and serves the version ...
            version, factor = _eventually_served(inference)
            assert version == "1" and np.allclose(factor[:, 1:], 2.0)
            # ... and answers nothing but the data plane.
            for path in ("/api/v1/models", "/api/v1/keys", "/", "/login", "/docs", "/api/v1/catalog"):
                assert requests.get(f"{inference.url}{path}", timeout=10).status_code == 404, path
            assert requests.get(f"{inference.url}/v2/models/scale", timeout=10).status_code == 200
            assert requests.get(f"{inference.url}/metrics", timeout=10).status_code == 200
            # The control node loads no model: it is ready, and has none to answer with.
            assert requests.get(f"{control.url}/v2/health/ready", timeout=10).status_code == 200
            x = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
            assert requests.post(f"{control.url}/v2/models/scale/infer", json=x, timeout=10).status_code == 404
            assert requests.get(f"{control.url}/api/v1/models/scale", timeout=10).status_code == 200
            assert "no gRPC endpoint" in control.log()
            assert "loaded scale version 1" not in control.log()
        finally:
            assert inference.terminate() == 0
    finally:
        assert control.terminate() == 0
