"""Stateless nodes: `ferry server` processes with data directories of their own, one
PostgreSQL registry and one S3 bucket (moto's server, tests/s3.py, found through
AWS_ENDPOINT_URL as any AWS tool finds its endpoint). A model pushed to one node is
served by the others, one of them started later on an empty disk."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.builders import scale_onnx
from tests.e2e.server import Server, ferry_command, free_port, start_command
from tests.postgres import postgres_schema
from tests.s3 import S3Server

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 1.0, 1.0, 1.0]}]}


def _answer(server: Server) -> dict | None:
    response = requests.post(f"{server.url}/v2/models/scale/infer", json=BODY, timeout=30)
    return response.json() if response.status_code == 200 else None


def _wait_for_version(server: Server, version: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while (answer := _answer(server)) is None or answer["model_version"] != version:
        assert time.monotonic() < deadline, f"version {version} never served\n{server.log()}"
        time.sleep(0.1)
    return answer


def _push(server: Server, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FERRY_URL": server.url}
    env.pop("FERRY_API_KEY", None)
    argv = [*ferry_command(), "push", str(path), "--name", "scale", "--stage", "production"]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_a_push_to_one_node_is_served_by_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    s3_server.use(monkeypatch)
    bucket = s3_server.new_bucket()
    schemas = postgres_schema()
    url = next(schemas)
    nodes: list[Server] = []
    try:
        shared = ["--database-url", url, "--artifacts-url", f"s3://{bucket}/ferry"]

        def node(name: str) -> Server:
            server = start_command(["server", "--data-dir", str(tmp_path / name), *shared], tmp_path / f"{name}.log")
            nodes.append(server)
            return server

        first, second = node("one"), node("two")
        pushed = _push(first, scale_onnx(tmp_path / "v1.onnx", 2.0))
        assert pushed.returncode == 0, pushed
        assert "scale version 1: ready" in pushed.stdout
        assert _wait_for_version(second, "1")["outputs"][0]["data"] == [2.0] * 4
        assert (tmp_path / "two" / "serving" / "scale" / "1" / "v1.onnx").is_file()
        for name in ("one", "two"):  # the bytes live in the bucket only
            assert not (tmp_path / name / "artifacts").exists()
        objects = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="ferry/sha256/")
        assert objects["KeyCount"] == 1

        # A node on an empty disk serves every model as soon as it is ready.
        assert not (tmp_path / "three").exists()
        third = node("three")
        answer = _answer(third)
        assert answer is not None and answer["model_version"] == "1", third.log()

        pushed = _push(second, scale_onnx(tmp_path / "v2.onnx", 3.0))
        assert pushed.returncode == 0, pushed
        for server in (first, third):
            assert _wait_for_version(server, "2")["outputs"][0]["data"] == [3.0] * 4
        assert all(server.alive() for server in nodes)
    finally:
        for server in nodes:
            server.terminate()
        schemas.close()


def _start_failure(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [*ferry_command(), "server", "--data-dir", str(data_dir), "--no-auth", "--port", str(free_port()), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_a_missing_bucket_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> None:
    s3_server.use(monkeypatch)
    done = _start_failure(tmp_path / "data", "--artifacts-url", "s3://missing-bucket")
    assert done.returncode == 2, done
    assert "ferry: artifact store s3://missing-bucket: the bucket 'missing-bucket' does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_endpoint_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    s3_server.use(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    done = _start_failure(tmp_path / "data", "--artifacts-url", "s3://bucket/prefix")
    assert done.returncode == 2, done
    assert "ferry: artifact store s3://bucket/prefix: cannot reach the S3 endpoint" in done.stderr
    assert time.monotonic() - started < 60


def test_a_malformed_artifacts_url_stops_the_start(tmp_path: Path) -> None:
    done = _start_failure(tmp_path / "data", "--artifacts-url", "gs://bucket")
    assert done.returncode == 2, done
    assert "artifacts_url must look like s3://BUCKET" in done.stderr
