"""ferry.artifacts_s3 against a real S3-compatible server (moto's, tests/s3.py): what only
the S3 store does. The contract every store keeps is tests/unit/test_artifacts.py."""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from ferry.artifacts import TEMP_PREFIX, Artifact, CorruptArtifact
from ferry.artifacts_s3 import S3ArtifactStore, parse_s3_url
from ferry.errors import ConfigError, Unavailable
from tests.s3 import REGION, S3Server

MiB = 1024 * 1024


def _blob(size: int, seed: str = "ferry") -> bytes:
    """Bytes that do not repeat (a misplaced or missing part changes the digest)."""
    return random.Random(seed).randbytes(size)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _key(prefix: str, digest: str) -> str:
    hex_digest = digest.removeprefix("sha256:")
    return f"{prefix}sha256/{hex_digest[:2]}/{hex_digest[2:]}"


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def store(s3_server: S3Server, bucket: str, tmp_path: Path) -> S3ArtifactStore:
    return S3ArtifactStore(f"s3://{bucket}/team/models/", tmp_path / "staging", client=s3_server.client())


def _uploads(s3: S3Server, bucket: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


def test_urls() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket-1/a/b/") == ("my.bucket-1", "a/b")
    for bad in ("s3:/bucket", "http://bucket/x", "s3://", "s3://B/x", "s3://b", "s3://bucket/a//b", "s3://bucket?x=1"):
        with pytest.raises(ConfigError):
            parse_s3_url(bad)


def test_objects_are_laid_out_by_digest_under_the_prefix(
    store: S3ArtifactStore, s3_server: S3Server, bucket: str
) -> None:
    artifact = store.put(io.BytesIO(b"weights"))
    assert store.url == f"s3://{bucket}/team/models"
    body = s3_server.client().get_object(Bucket=bucket, Key=_key("team/models/", artifact.digest))["Body"]
    assert body.read() == b"weights"
    # Objects beside the layout are not artifacts.
    s3_server.client().put_object(Bucket=bucket, Key="team/models/sha256/readme.txt", Body=b"x")
    s3_server.client().put_object(Bucket=bucket, Key="team/other/sha256/00/" + "0" * 62, Body=b"x")
    assert list(store.digests()) == [artifact.digest]


def test_a_bucket_without_prefix(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    store = S3ArtifactStore(f"s3://{bucket}", tmp_path / "staging", client=s3_server.client())
    artifact = store.put(io.BytesIO(b"weights"))
    assert s3_server.client().head_object(Bucket=bucket, Key=_key("", artifact.digest))["ContentLength"] == 7
    assert list(store.digests()) == [artifact.digest]


class _Chunks(io.RawIOBase):
    """A stream of ``size`` bytes made as it is read; remembers the largest read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position, self.largest_read = data, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = len(self.data)
        self.largest_read = max(self.largest_read, size)
        chunk = self.data[self.position : self.position + size]
        self.position += len(chunk)
        return chunk


def test_a_big_upload_is_streamed_and_multipart(store: S3ArtifactStore, s3_server: S3Server, bucket: str) -> None:
    data = _blob(20 * MiB)
    stream = _Chunks(data)
    artifact = store.put(stream)  # type: ignore[arg-type]
    assert artifact == Artifact(_digest(data), len(data))
    assert stream.largest_read <= MiB  # never read whole
    head = s3_server.client().head_object(Bucket=bucket, Key=_key("team/models/", artifact.digest))
    assert head["ETag"].strip('"').endswith("-3")  # three 8 MiB parts: a multipart upload
    assert head["ContentLength"] == len(data)
    assert _uploads(s3_server, bucket) == []
    assert list(store.staging_dir.glob(f"{TEMP_PREFIX}*")) == []


def test_two_threads_storing_the_same_bytes(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    """Two nodes uploading one artifact at once: both succeed, one object, intact."""
    data = _blob(10 * MiB, "race")  # multipart
    url = f"s3://{bucket}/race"
    stores = [S3ArtifactStore(url, tmp_path / f"staging{i}", client=s3_server.client()) for i in range(2)]
    start = threading.Barrier(2)
    results: list[Artifact | BaseException] = []

    def upload(store: S3ArtifactStore) -> None:
        start.wait()
        try:
            results.append(store.put(io.BytesIO(data)))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=upload, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [Artifact(_digest(data), len(data))] * 2
    assert list(stores[0].digests()) == [_digest(data)]
    with stores[1].open(_digest(data)) as stream:
        assert stream.read() == data
    assert _uploads(s3_server, bucket) == []


class _Blind(S3ArtifactStore):
    """Never sees that the object is there already, as when another node's upload
    finishes between the look and the write: only the conditional write stops it."""

    def _refresh(self, key: str) -> bool:
        return False


@pytest.mark.parametrize("size", [1000, 10 * MiB], ids=["put-object", "multipart"])
def test_a_conditional_write_never_replaces_an_object(
    s3_server: S3Server, bucket: str, tmp_path: Path, size: int
) -> None:
    data = _blob(size, "conditional")
    key = _key("blind/", _digest(data))
    s3_server.client().put_object(Bucket=bucket, Key=key, Body=data, Metadata={"first": "yes"})
    store = _Blind(f"s3://{bucket}/blind", tmp_path / "staging", client=s3_server.client())
    assert store.put(io.BytesIO(data)) == Artifact(_digest(data), size)  # the 412 is a success
    head = s3_server.client().head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {"first": "yes"}  # the first object, not overwritten
    assert _uploads(s3_server, bucket) == []  # the refused multipart upload was aborted


def test_corrupt_bytes_are_never_served(
    store: S3ArtifactStore, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    artifact = store.put(io.BytesIO(b"the real weights"))
    s3_server.client().put_object(Bucket=bucket, Key=_key("team/models/", artifact.digest), Body=b"bit rot")
    destination = tmp_path / "serving" / "model.onnx"
    destination.parent.mkdir()
    with pytest.raises(CorruptArtifact, match=artifact.digest) as raised:
        store.fetch(artifact.digest, destination)
    assert _digest(b"bit rot") in str(raised.value)
    assert os.listdir(destination.parent) == []  # neither the file nor a temp file
    with pytest.raises(CorruptArtifact, match=artifact.digest):
        store.open(artifact.digest)
    assert os.listdir(store.staging_dir) == []


def test_cleanup_temp_removes_staging_files_and_unfinished_uploads(
    store: S3ArtifactStore, s3_server: S3Server, bucket: str
) -> None:
    store.put(io.BytesIO(b"kept"))
    store.staging_dir.mkdir(exist_ok=True)
    stale, fresh = store.staging_dir / f"{TEMP_PREFIX}stale", store.staging_dir / f"{TEMP_PREFIX}fresh"
    stale.write_bytes(b"half an upl")
    fresh.write_bytes(b"an upload in progr")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.cleanup_temp(older_than_s=600) == 1
    assert not stale.exists() and fresh.exists()
    # A multipart upload a killed node left unfinished, and one outside the prefix. (moto
    # dates every upload 2010, so the grace period of uploads is not tested here.)
    client = s3_server.client()
    client.create_multipart_upload(Bucket=bucket, Key=_key("team/models/", _digest(b"killed")))
    client.create_multipart_upload(Bucket=bucket, Key="elsewhere/object")
    assert store.cleanup_temp() == 2
    assert not fresh.exists()
    assert [u["Key"] for u in _uploads(s3_server, bucket)] == ["elsewhere/object"]
    assert len(list(store.digests())) == 1  # objects are never touched


def test_the_client_comes_from_the_standard_aws_environment(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.use(monkeypatch)  # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
    store = S3ArtifactStore(f"s3://{bucket}/env", tmp_path / "staging")
    store.check()
    assert store.exists(store.put(io.BytesIO(b"weights")).digest)


def test_check_says_what_is_wrong(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_server.use(monkeypatch)
    with pytest.raises(ConfigError, match="the bucket 'missing-bucket' does not exist"):
        S3ArtifactStore("s3://missing-bucket/x", tmp_path).check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ConfigError, match="cannot reach the S3 endpoint"):
        S3ArtifactStore(f"s3://{bucket}", tmp_path).check()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="no usable AWS credentials"):
        S3ArtifactStore(f"s3://{bucket}", tmp_path).check()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_store_is_unavailable(bucket: str, tmp_path: Path) -> None:
    import boto3

    dead = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    store = S3ArtifactStore(f"s3://{bucket}/x", tmp_path / "staging", client=dead)
    digest = _digest(b"weights")
    for call in (
        lambda: store.put(io.BytesIO(b"weights")),
        lambda: store.exists(digest),
        lambda: store.fetch(digest, tmp_path / "model.onnx"),
        lambda: list(store.digests()),
        lambda: store.delete(digest),
        lambda: store.cleanup_temp(),
    ):
        with pytest.raises(Unavailable, match=f"artifact store s3://{bucket}/x"):
            call()
    assert os.listdir(tmp_path / "staging") == []
    assert not (tmp_path / "model.onnx").exists()
