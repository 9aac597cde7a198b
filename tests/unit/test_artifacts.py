"""ferry.artifacts: the content-addressed store on a local directory."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from ferry.artifacts import TEMP_PREFIX, Artifact, ArtifactStore, LocalArtifactStore
from ferry.errors import InvalidInput, NotFound

DATA = b"model bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _temp_files(store: LocalArtifactStore) -> list[Path]:
    return list((store.root / "sha256").glob(f"{TEMP_PREFIX}*"))


def test_put_stream_stores_by_sha256(store: LocalArtifactStore) -> None:
    artifact = store.put(io.BytesIO(DATA))
    assert artifact == Artifact(DIGEST, len(DATA))
    hex_digest = DIGEST.removeprefix("sha256:")
    assert store.path(DIGEST) == store.root / "sha256" / hex_digest[:2] / hex_digest[2:]
    with store.open(DIGEST) as stream:
        assert stream.read() == DATA
    assert store.exists(DIGEST)
    assert list(store.digests()) == [DIGEST]
    assert _temp_files(store) == []


def test_put_path(store: LocalArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(DATA)
    assert store.put(source) == Artifact(DIGEST, len(DATA))


def test_put_is_idempotent(store: LocalArtifactStore) -> None:
    first = store.put(io.BytesIO(DATA))
    second = store.put(io.BytesIO(DATA))
    assert first == second
    assert list(store.digests()) == [DIGEST]
    assert _temp_files(store) == []


def test_empty_artifact(store: LocalArtifactStore) -> None:
    artifact = store.put(io.BytesIO(b""))
    assert artifact == Artifact("sha256:" + hashlib.sha256(b"").hexdigest(), 0)
    assert store.path(artifact.digest).read_bytes() == b""


def test_delete(store: LocalArtifactStore) -> None:
    store.put(io.BytesIO(DATA))
    assert store.delete(DIGEST) is True
    assert not store.exists(DIGEST)
    assert store.delete(DIGEST) is False
    assert list(store.digests()) == []


def test_missing_artifact_is_not_found(store: LocalArtifactStore) -> None:
    with pytest.raises(NotFound):
        store.open(DIGEST)
    with pytest.raises(NotFound):
        store.path(DIGEST)
    assert not store.exists(DIGEST)


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "A" * 64,  # uppercase
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "md5:" + "a" * 32,
        "a" * 64,
        "sha256:../../../../etc/passwd",
        "sha256:" + "../" * 21 + "a",
        "sha256:" + "a" * 62 + "/a",
        "",
    ],
)
def test_bad_digests_are_refused(store: LocalArtifactStore, digest: str) -> None:
    for call in (store.exists, store.open, store.path, store.delete):
        with pytest.raises(InvalidInput):
            call(digest)


class _Broken:
    """A client that disconnects after the first chunk."""

    def __init__(self) -> None:
        self.sent = False

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            raise OSError("connection reset")
        self.sent = True
        return b"half"


def test_failed_put_leaves_nothing(store: LocalArtifactStore) -> None:
    with pytest.raises(OSError, match="connection reset"):
        store.put(_Broken())  # type: ignore[arg-type]
    assert _temp_files(store) == []
    assert list(store.digests()) == []


class _Stalls(_Broken):
    """One chunk, then hangs: an upload in progress when the process is killed."""

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            time.sleep(60)
        return super().read(size)


def _upload_forever(root: str) -> None:
    LocalArtifactStore(Path(root)).put(_Stalls())  # type: ignore[arg-type]


def test_killed_upload_leaves_only_a_temp_file(store: LocalArtifactStore) -> None:
    process = multiprocessing.get_context("spawn").Process(target=_upload_forever, args=(str(store.root),))
    process.start()
    try:
        deadline = time.monotonic() + 30
        while not _temp_files(store):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.05)
    finally:
        process.kill()
        process.join()
    assert list(store.digests()) == []
    assert len(_temp_files(store)) == 1
    assert store.cleanup_temp() == 1
    assert _temp_files(store) == []


def test_cleanup_temp_spares_recent_files(store: LocalArtifactStore) -> None:
    store.put(io.BytesIO(DATA))
    fresh = store.root / "sha256" / f"{TEMP_PREFIX}fresh"
    stale = store.root / "sha256" / f"{TEMP_PREFIX}stale"
    fresh.write_bytes(b"x")
    stale.write_bytes(b"x")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    assert store.cleanup_temp(older_than_s=600) == 1
    assert fresh.exists() and not stale.exists()
    assert list(store.digests()) == [DIGEST]  # blobs are never touched


def test_local_store_implements_the_protocol(store: LocalArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)
