"""Uploads are validated in a limited child process (ferry.sandbox): a file that asks for
gigabytes fails its version with a reason, and the server keeps serving."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ferry.artifacts import LocalArtifactStore
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.registry import Registry, connect, default_url, migrate
from ferry.registry_source import RegistrySource
from ferry.sandbox import Limits
from ferry.settings import Settings
from tests.builders import memory_bomb_onnx, scale_onnx, skops_zip_bomb
from tests.integration.serving import wait_ready

LIMITS = Limits(memory_bytes=1536 * 2**20, cpu_seconds=120, timeout_s=300)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    data_dir = tmp_path / "data"
    engine = connect(default_url(data_dir))
    try:
        migrate(engine)
        store = LocalArtifactStore(data_dir / "artifacts")
        source = RegistrySource(Registry.from_engine(engine), store, data_dir, limits=LIMITS)
        with TestClient(create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))) as running:
            wait_ready(running)
            yield running
    finally:
        engine.dispose()


def _upload(client: TestClient, model: str, path: Path) -> dict:
    response = client.post(f"/api/v1/models/{model}/versions", files={"file": (path.name, path.read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


@pytest.mark.parametrize("bomb", ["onnx", "skops"])
def test_a_memory_bomb_fails_its_version_and_the_server_keeps_serving(
    client: TestClient, tmp_path: Path, bomb: str
) -> None:
    if bomb == "onnx":  # 194 bytes asking for 4 GiB at warm-up (ready on 0.1)
        path = memory_bomb_onnx(tmp_path / "model.onnx")
    else:  # 1.5 MB decompressing to 800 MB of coefficients
        path = skops_zip_bomb(tmp_path / "model.skops", elements=100_000_000)
    peak_before = _rss_mib()
    failed = _upload(client, "bomb", path)
    assert failed["state"] == "failed", failed
    assert "validation may use" in failed["failure_reason"], failed
    assert str(tmp_path) not in failed["failure_reason"]
    # The allocation happened (and failed) in the child: this process never held it.
    assert _rss_mib() - peak_before < 512

    good = _upload(client, "scale", scale_onnx(tmp_path / "good.onnx", 2.0))
    assert good["state"] == "ready", good
    client.put("/api/v1/models/scale/stages/production", json={"version": 1})
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    answer = client.post("/v2/models/scale/infer", json=body)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"] == [2, 4, 6, 8]
