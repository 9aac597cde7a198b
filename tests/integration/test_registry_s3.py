"""Two nodes (two RegistrySources, each with a data directory of its own) on one registry
database and one S3 bucket (moto's server, tests/s3.py): what is uploaded through one is
served by the other from an empty disk. On SQLite (a shared file) and on PostgreSQL (a
schema of its own; with CI=true an unreachable PostgreSQL fails the run)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from botocore.config import Config
from starlette.testclient import TestClient

from ferry.artifacts import StoreUnavailable
from ferry.artifacts_s3 import S3ArtifactStore
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.registry import Registry, cleanup, connect, default_url, migrate
from ferry.registry_source import RegistrySource
from ferry.settings import Settings
from tests.builders import scale_onnx
from tests.integration.serving import wait_ready
from tests.postgres import postgres_schema
from tests.s3 import REGION, S3Server

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield default_url(tmp_path / "registry")
    else:
        yield from postgres_schema()


class Cluster:
    """Nodes started on demand, all on one database and one bucket; stopped at the end."""

    def __init__(self, url: str, bucket_url: str, s3: S3Server, root: Path, stack: ExitStack) -> None:
        self.url, self.bucket_url, self.s3, self.root, self.stack = url, bucket_url, s3, root, stack
        self.engine = connect(url)
        migrate(self.engine)
        stack.callback(self.engine.dispose)  # before the PostgreSQL schema is dropped

    def store(self, name: str) -> S3ArtifactStore:
        return S3ArtifactStore(self.bucket_url, self.root / name / "staging", client=self.s3.client())

    def node(self, name: str) -> TestClient:
        data_dir = self.root / name
        source = RegistrySource(Registry.from_engine(self.engine), self.store(name), data_dir, poll_interval_s=0.2)
        app = create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))
        client = self.stack.enter_context(TestClient(app))
        wait_ready(client)
        return client


@pytest.fixture
def cluster(database_url: str, s3_server: S3Server, tmp_path: Path) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(database_url, f"s3://{s3_server.new_bucket()}/ferry", s3_server, tmp_path, stack)


def _upload(node: TestClient, path: Path, stage: str | None = "production") -> dict:
    with path.open("rb") as f:
        response = node.post(
            "/api/v1/models/scale/versions",
            files={"file": ("model.onnx", f)},
            data={"stage": stage} if stage else None,
        )
    assert response.status_code == 201, response.text
    return response.json()


def _wait_served(node: TestClient, version: str, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        response = node.post("/v2/models/scale/infer", json=BODY)
        if response.status_code == 200 and response.json()["model_version"] == version:
            return response.json()
        assert time.monotonic() < deadline, f"version {version} never served: {response.status_code} {response.text}"
        time.sleep(0.1)


def test_an_upload_through_one_node_is_served_by_another_from_an_empty_disk(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.node("first")
    version = _upload(first, scale_onnx(tmp_path / "v1.onnx", 2.0))
    assert version["state"] == "ready"
    assert not (tmp_path / "first" / "artifacts").exists()  # the bytes went to the bucket only
    assert list(cluster.store("first").digests()) == [version["artifact_digest"]]

    assert not (tmp_path / "second").exists()
    second = cluster.node("second")  # cold start: the database and the bucket only
    answer = _wait_served(second, "1")
    assert answer["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]
    assert (tmp_path / "second" / "serving" / "scale" / "1" / "model.onnx").is_file()

    # A later promotion through the first node reaches the running second one.
    _upload(first, scale_onnx(tmp_path / "v2.onnx", 3.0))
    assert _wait_served(second, "2")["outputs"][0]["data"] == [3.0, 6.0, 9.0, 12.0]
    # Version 1 is no longer served: its local copy goes (the bucket keeps it).
    deadline = time.monotonic() + 10
    while (tmp_path / "second" / "serving" / "scale" / "1").exists():
        assert time.monotonic() < deadline, "version 1's files stayed laid out"
        time.sleep(0.1)
    assert len(list(cluster.store("second").digests())) == 2


def test_the_same_bytes_through_two_nodes_are_stored_once(cluster: Cluster, tmp_path: Path) -> None:
    first, second = cluster.node("first"), cluster.node("second")
    model = scale_onnx(tmp_path / "model.onnx", 2.0)
    one = _upload(first, model, stage=None)
    two = _upload(second, model, stage=None)
    assert (one["number"], two["number"]) == (1, 2)
    assert one["artifact_digest"] == two["artifact_digest"]
    assert list(cluster.store("first").digests()) == [one["artifact_digest"]]
    # Start-up cleanup on either node finds nothing to remove: both versions reference it.
    report = cleanup(Registry.from_engine(cluster.engine), cluster.store("third"))
    assert report.orphans_deleted == [] and report.temp_files_deleted == 0


def test_a_corrupt_object_is_never_served(cluster: Cluster, tmp_path: Path) -> None:
    version = _upload(cluster.node("first"), scale_onnx(tmp_path / "v1.onnx", 2.0))
    digest = version["artifact_digest"]
    hex_digest = digest.removeprefix("sha256:")
    bucket = cluster.bucket_url.removeprefix("s3://").split("/")[0]
    cluster.s3.client().put_object(Bucket=bucket, Key=f"ferry/sha256/{hex_digest[:2]}/{hex_digest[2:]}", Body=b"rot")

    second = cluster.node("second")
    response = second.post("/v2/models/scale/infer", json=BODY)
    assert response.status_code in (404, 503), response.text
    index = second.post("/v2/repository/index", json={}).json()
    reasons = [entry.get("reason", "") for entry in index if entry["name"] == "scale"]
    assert any(digest in reason and "corrupt" in reason for reason in reasons), index
    assert not (tmp_path / "second" / "serving" / "scale" / "1" / "model.onnx").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_store_during_an_upload_is_a_503_and_records_nothing(cluster: Cluster, tmp_path: Path) -> None:
    import boto3

    dead = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    data_dir = tmp_path / "cut-off"
    store = S3ArtifactStore(cluster.bucket_url, data_dir / "staging", client=dead)
    source = RegistrySource(Registry.from_engine(cluster.engine), store, data_dir)
    app = create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))
    with TestClient(app) as node:
        wait_ready(node)
        with scale_onnx(tmp_path / "model.onnx", 2.0).open("rb") as f:
            response = node.post("/api/v1/models/scale/versions", files={"file": ("model.onnx", f)})
        assert response.status_code == 503, response.text
        message = response.json()["error"]
        assert "artifact store" in message and cluster.bucket_url in message and "connect" in message.lower()
        assert response.headers.get("retry-after")
        assert node.get("/api/v1/models/scale").status_code == 404  # not even the model
        assert node.get("/api/v1/models").json() == []
    assert list((data_dir / "staging").glob("*")) == []  # the upload's temp file is gone


class _FailsToRead(S3ArtifactStore):
    """Stores, then cannot be read: the store went away between the two."""

    def fetch(self, digest: str, destination: Path) -> None:
        raise StoreUnavailable(f"artifact store {self.url} cannot read {digest}: connection reset")


def test_a_store_failing_during_validation_is_a_503_and_takes_the_version_back(
    cluster: Cluster, tmp_path: Path
) -> None:
    first = cluster.node("first")
    _upload(first, scale_onnx(tmp_path / "v1.onnx", 2.0))
    data_dir = tmp_path / "flaky"
    store = _FailsToRead(cluster.bucket_url, data_dir / "staging", client=cluster.s3.client())
    source = RegistrySource(Registry.from_engine(cluster.engine), store, data_dir)
    with TestClient(create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))) as node:
        with scale_onnx(tmp_path / "v2.onnx", 3.0).open("rb") as f:
            response = node.post("/api/v1/models/scale/versions", files={"file": ("model.onnx", f)})
        assert response.status_code == 503, response.text
        assert "cannot read" in response.json()["error"]
    versions = first.get("/api/v1/models/scale/versions").json()
    assert [(v["number"], v["state"]) for v in versions] == [(1, "ready")]
    assert not (data_dir / "serving" / "scale" / "2").exists()
    # Retried once the store is back: the next number, ready.
    assert _upload(first, scale_onnx(tmp_path / "v2.onnx", 3.0))["number"] == 3
