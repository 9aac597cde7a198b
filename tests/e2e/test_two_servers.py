"""Two `ferry server` processes on one PostgreSQL registry (and one shared artifact
directory, as a shared volume or an object store would be): a promotion made through
one is served by the other within a few seconds."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from tests.builders import scale_onnx
from tests.e2e.server import Server, start_command
from tests.postgres import postgres_schema

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 1.0, 1.0, 1.0]}]}


def _served_version(server: Server) -> str | None:
    response = requests.post(f"{server.url}/v2/models/scale/infer", json=BODY, timeout=30)
    return response.json()["model_version"] if response.status_code == 200 else None


def _wait_for_version(server: Server, version: str, timeout_s: float = 15.0) -> float:
    started = time.monotonic()
    while _served_version(server) != version:
        assert time.monotonic() - started < timeout_s, f"version {version} never served\n{server.log()}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_promotion_through_one_server_reaches_the_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    schemas = postgres_schema()
    url = next(schemas)
    try:
        monkeypatch.setenv("FERRY_DATABASE_URL", url)
        data = ["server", "--data-dir", str(tmp_path / "shared")]
        first = start_command(data, tmp_path / "first.log")
        second = start_command(data, tmp_path / "second.log")
        try:
            for number, factor in ((1, 1.0), (2, 2.0)):
                with scale_onnx(tmp_path / f"v{number}.onnx", factor).open("rb") as f:
                    upload = requests.post(
                        f"{first.url}/api/v1/models/scale/versions", files={"file": ("model.onnx", f)}, timeout=120
                    )
                assert upload.status_code == 201 and upload.json()["state"] == "ready", upload.text
            promote = requests.put(
                f"{first.url}/api/v1/models/scale/stages/production", json={"version": 1}, timeout=60
            )
            assert promote.status_code == 200, promote.text
            assert _served_version(first) == "1"
            _wait_for_version(second, "1")

            promote = requests.put(
                f"{first.url}/api/v1/models/scale/stages/production", json={"version": 2}, timeout=60
            )
            assert promote.status_code == 200, promote.text
            assert _served_version(first) == "2"
            delay = _wait_for_version(second, "2")
            print(f"\n[e2e] the second server served the promotion {delay:.2f} s after the first answered")
            assert first.alive() and second.alive()
        finally:
            first.terminate()
            second.terminate()
    finally:
        schemas.close()
