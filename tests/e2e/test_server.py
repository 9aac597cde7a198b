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
