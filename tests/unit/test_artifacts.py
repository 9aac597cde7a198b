"""ferry.artifacts: the content-addressed store. One contract, run against every store:
a local directory and an S3 bucket (moto's server, tests/s3.py); what only one store
does is tested below (local) and in tests/integration/test_artifacts_s3.py (S3)."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from ferry.artifacts import FETCH_SUFFIX, TEMP_PREFIX, Artifact, ArtifactStore, LocalArtifactStore
from ferry.errors import InvalidInput, NotFound
from tests.s3 import S3Server

DATA = b"model bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()
OTHER = b"other model bytes"
OTHER_DIGEST = "sha256:" + hashlib.sha256(OTHER).hexdigest()


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    from ferry.artifacts_s3 import S3ArtifactStore

    s3: S3Server = request.getfixturevalue("s3_server")
    return S3ArtifactStore(f"s3://{s3.new_bucket()}/models", tmp_path / "staging", client=s3.client())


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def _temp_files(store: LocalArtifactStore) -> list[Path]:
    return list((store.root / "sha256").glob(f"{TEMP_PREFIX}*"))


def _leftovers(store: ArtifactStore) -> list[Path]:
    """What an upload may leave on local disk until it is done."""
    if isinstance(store, LocalArtifactStore):
        return _temp_files(store)
    staging: Path = getattr(store, "staging_dir")  # noqa: B009 (not in the protocol)
    return list(staging.glob(f"{TEMP_PREFIX}*"))


# -- the contract ------------------------------------------------------------------------


def test_put_stream_stores_by_sha256(any_store: ArtifactStore, tmp_path: Path) -> None:
    artifact = any_store.put(io.BytesIO(DATA))
    assert artifact == Artifact(DIGEST, len(DATA))
    with any_store.open(DIGEST) as stream:
        assert stream.read() == DATA
    assert any_store.exists(DIGEST)
    assert list(any_store.digests()) == [DIGEST]
    assert _leftovers(any_store) == []
    destination = tmp_path / "serving" / "model.onnx"
    destination.parent.mkdir()
    any_store.fetch(DIGEST, destination)
    assert destination.read_bytes() == DATA
    assert os.listdir(destination.parent) == ["model.onnx"]  # no temp file beside it


def test_put_path(any_store: ArtifactStore, tmp_path: Path) -> None:
    source = tmp_path / "model.onnx"
    source.write_bytes(DATA)
    assert any_store.put(source) == Artifact(DIGEST, len(DATA))
    assert source.read_bytes() == DATA  # the caller's file is left alone
    with any_store.open(DIGEST) as stream:
        assert stream.read() == DATA


def test_put_is_idempotent(any_store: ArtifactStore) -> None:
    first = any_store.put(io.BytesIO(DATA))
    second = any_store.put(io.BytesIO(DATA))
    assert first == second
    assert list(any_store.digests()) == [DIGEST]
    assert _leftovers(any_store) == []


def test_digests_lists_every_artifact(any_store: ArtifactStore) -> None:
    assert list(any_store.digests()) == []
    any_store.put(io.BytesIO(DATA))
    any_store.put(io.BytesIO(OTHER))
    assert sorted(any_store.digests()) == sorted([DIGEST, OTHER_DIGEST])


def test_empty_artifact(any_store: ArtifactStore, tmp_path: Path) -> None:
    artifact = any_store.put(io.BytesIO(b""))
    assert artifact == Artifact("sha256:" + hashlib.sha256(b"").hexdigest(), 0)
    any_store.fetch(artifact.digest, tmp_path / "empty")
    assert (tmp_path / "empty").read_bytes() == b""


def test_fetch_replaces_a_stale_destination(any_store: ArtifactStore, tmp_path: Path) -> None:
    any_store.put(io.BytesIO(DATA))
    destination = tmp_path / "model.onnx"
    destination.write_bytes(b"half a file from before")
    any_store.fetch(DIGEST, destination)
    assert destination.read_bytes() == DATA


def test_delete(any_store: ArtifactStore) -> None:
    any_store.put(io.BytesIO(DATA))
    assert any_store.delete(DIGEST) is True
    assert not any_store.exists(DIGEST)
    assert any_store.delete(DIGEST) is False
    assert list(any_store.digests()) == []


def test_missing_artifact_is_not_found(any_store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        any_store.open(DIGEST)
    with pytest.raises(NotFound):
        any_store.fetch(DIGEST, tmp_path / "model.onnx")
    with pytest.raises(NotFound):
        any_store.modified_at(DIGEST)
    assert not any_store.exists(DIGEST)
    assert list(tmp_path.glob(f".*{FETCH_SUFFIX}")) == []  # no half-fetched file left


def test_modified_at_is_refreshed_by_a_new_put(any_store: ArtifactStore) -> None:
    before = time.time()
    any_store.put(io.BytesIO(DATA))
    first = any_store.modified_at(DIGEST)
    assert before - 2 <= first <= time.time() + 2  # S3 keeps whole seconds
    time.sleep(1.1)
    any_store.put(io.BytesIO(DATA))  # the same bytes again, about to be referenced again
    assert any_store.modified_at(DIGEST) > first


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
def test_bad_digests_are_refused(any_store: ArtifactStore, digest: str, tmp_path: Path) -> None:
    for call in (any_store.exists, any_store.open, any_store.delete, any_store.modified_at):
        with pytest.raises(InvalidInput):
            call(digest)
    with pytest.raises(InvalidInput):
        any_store.fetch(digest, tmp_path / "model.onnx")


class _Broken:
    """A client that disconnects after the first chunk."""

    def __init__(self) -> None:
        self.sent = False

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            raise OSError("connection reset")
        self.sent = True
        return b"half"


def test_failed_put_leaves_nothing(any_store: ArtifactStore) -> None:
    with pytest.raises(OSError, match="connection reset"):
        any_store.put(_Broken())  # type: ignore[arg-type]
    assert _leftovers(any_store) == []
    assert list(any_store.digests()) == []


def test_stores_implement_the_protocol(any_store: ArtifactStore) -> None:
    assert isinstance(any_store, ArtifactStore)


# -- the local store ---------------------------------------------------------------------


def test_local_layout(store: LocalArtifactStore) -> None:
    store.put(io.BytesIO(DATA))
    hex_digest = DIGEST.removeprefix("sha256:")
    assert (store.root / "sha256" / hex_digest[:2] / hex_digest[2:]).read_bytes() == DATA


def test_local_fetch_is_a_hard_link(store: LocalArtifactStore, tmp_path: Path) -> None:
    store.put(io.BytesIO(DATA))
    hex_digest = DIGEST.removeprefix("sha256:")
    destination = tmp_path / "model.onnx"
    store.fetch(DIGEST, destination)
    assert destination.samefile(store.root / "sha256" / hex_digest[:2] / hex_digest[2:])


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
