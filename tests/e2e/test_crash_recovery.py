"""kill -9 while a version is being uploaded, stored and validated, then restart: the
registry and the artifact store must agree (no version left half-uploaded, no file
without a version, no version without its file) and serving carries on."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import requests
from onnx import TensorProto, helper, numpy_helper

from ferry.artifacts import TEMP_PREFIX, LocalArtifactStore
from ferry.registry import Registry, connect, default_url
from tests.builders import scale_onnx
from tests.e2e.server import Server, start_command

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 1.0, 1.0, 1.0]}]}


def _heavy_onnx(path: Path) -> Path:
    """y = x * 3 with a 32 MB initializer riding along, so storing and validating the
    upload take long enough to be interrupted."""
    ballast = numpy_helper.from_array(np.random.default_rng(0).random((4, 2_000_000), dtype=np.float32), "ballast")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "three"], ["y"])],
        "heavy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[helper.make_tensor("three", TensorProto.FLOAT, [], [3.0]), ballast],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _start(data_dir: Path, log: Path) -> Server:
    return start_command(["server", "--data-dir", str(data_dir)], log)


def _upload_in_background(server: Server, path: Path) -> threading.Thread:
    def upload() -> None:
        try:
            with path.open("rb") as f:
                requests.post(
                    f"{server.url}/api/v1/models/scale/versions", files={"file": ("model.onnx", f)}, timeout=60
                )
        except requests.RequestException:
            pass  # the server is killed under it

    thread = threading.Thread(target=upload)
    thread.start()
    return thread


def _check_consistent(data_dir: Path) -> list[str]:
    engine = connect(default_url(data_dir))
    try:
        registry = Registry.from_engine(engine)
        versions = registry.list_versions("scale")
        store = LocalArtifactStore(data_dir / "artifacts")
        blobs = set(store.digests())
        states = [v.state for v in versions]
        assert all(state in ("ready", "failed") for state in states), states
        assert {v.artifact_digest for v in versions} <= blobs, "a version lost its file"
        assert blobs <= registry.referenced_digests(), "a file no version owns"
        assert not [p for p in (data_dir / "artifacts").rglob(f"{TEMP_PREFIX}*")], "temp files left"
        return states
    finally:
        engine.dispose()


@pytest.mark.parametrize("delay_s", [0.05, 0.3, 0.8])
def test_kill_9_during_an_upload_leaves_a_consistent_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay_s: float
) -> None:
    # Every unfinished upload at start-up is an interrupted one: this is the only server.
    monkeypatch.setenv("FERRY_CLEANUP_GRACE_S", "0")
    data_dir = tmp_path / "data"
    server = _start(data_dir, tmp_path / "first.log")
    try:
        with scale_onnx(tmp_path / "v1.onnx", 1.0).open("rb") as f:
            first = requests.post(
                f"{server.url}/api/v1/models/scale/versions",
                files={"file": ("model.onnx", f)},
                data={"stage": "production"},
                timeout=60,
            )
        assert first.status_code == 201 and first.json()["state"] == "ready", first.text
        uploading = _upload_in_background(server, _heavy_onnx(tmp_path / "heavy.onnx"))
        time.sleep(delay_s)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
        uploading.join(60)
    finally:
        server.terminate()

    server = _start(data_dir, tmp_path / "second.log")
    try:
        states = _check_consistent(data_dir)
        print(f"\n[e2e] killed {delay_s} s into the upload; after restart the versions are {states}")
        assert states[0] == "ready"
        answer = requests.post(f"{server.url}/v2/models/scale/infer", json=BODY, timeout=30)
        assert answer.status_code == 200 and answer.json()["model_version"] == "1", answer.text
        with scale_onnx(tmp_path / "v2.onnx", 2.0).open("rb") as f:
            again = requests.post(
                f"{server.url}/api/v1/models/scale/versions", files={"file": ("model.onnx", f)}, timeout=60
            )
        assert again.status_code == 201 and again.json()["state"] == "ready", again.text
        # Numbers are never reused, even for a version the crash failed.
        assert again.json()["number"] == len(states) + 1
    finally:
        server.terminate()
    _check_consistent(data_dir)
