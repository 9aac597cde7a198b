"""ArtifactStore: model files kept by content (sha256), so a version's bytes can never
change under it and identical uploads are stored once.

``LocalArtifactStore`` lays blobs out as ``<root>/sha256/<first 2 hex>/<other 62 hex>``;
``ferry.artifacts_s3.S3ArtifactStore`` keeps the same layout under an S3 prefix. Neither
hands out paths of its own: a process that needs a file asks for a copy of the artifact
where it wants it (``fetch``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from ferry.errors import FerryError, InvalidInput, NotFound, Unavailable

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TEMP_PREFIX = ".tmp-"
# What a fetch killed half-way leaves beside its destination (RegistrySource.prune removes it).
FETCH_SUFFIX = ".fetching"
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Artifact:
    digest: str  # "sha256:<64 lowercase hex>"
    size: int


def check_digest(digest: str) -> str:
    """``digest`` if it is ``sha256:`` + 64 lowercase hex; anything else could name a path
    outside the store, so it is refused."""
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise InvalidInput(f"not an artifact digest (expected sha256:<64 hex>): {str(digest)[:80]!r}")
    return digest


@runtime_checkable
class ArtifactStore(Protocol):
    def put(self, source: BinaryIO | Path) -> Artifact:
        """Store a stream's or a file's bytes; storing the same bytes twice is a no-op."""
        ...

    def open(self, digest: str) -> BinaryIO:
        """The artifact's bytes, for reading; the caller closes it. NotFound if it is not there."""
        ...

    def fetch(self, digest: str, destination: Path) -> None:
        """Make ``destination`` a file with the artifact's bytes. It appears whole or not at
        all (written beside it, then renamed into place); NotFound if the artifact is not
        there, CorruptArtifact when a remote copy's bytes no longer match its digest."""
        ...

    def exists(self, digest: str) -> bool: ...

    def delete(self, digest: str) -> bool:
        """Remove an artifact; False if it was not there."""
        ...

    def digests(self) -> Iterator[str]: ...

    def modified_at(self, digest: str) -> float:
        """When the artifact was last stored (seconds since the epoch)."""
        ...

    def cleanup_temp(self, older_than_s: float = 0.0) -> int:
        """Remove partial uploads left by a killed process; returns how many."""
        ...


class CorruptArtifact(FerryError):
    """An artifact's bytes do not hash to its digest: they are never served."""


class StoreUnavailable(Unavailable):
    """A remote store cannot be reached or refuses a request (503): the store's failure,
    not the artifact's, so an upload it interrupts leaves nothing behind."""


def copy_hashed(source: BinaryIO, out: BinaryIO) -> tuple[str, int]:
    """Copy a stream a chunk at a time (memory stays bounded whatever its size); its digest
    and size."""
    hasher, size = hashlib.sha256(), 0
    while chunk := source.read(_CHUNK):
        hasher.update(chunk)
        out.write(chunk)
        size += len(chunk)
    return f"sha256:{hasher.hexdigest()}", size


def file_digest(path: Path) -> str:
    with open(path, "rb") as stream:
        return f"sha256:{hashlib.file_digest(stream, 'sha256').hexdigest()}"


def fetch_temp(destination: Path) -> Path:
    """A fresh name beside ``destination`` (same directory, so same file system, so the
    final ``os.replace`` is atomic) that two processes fetching at once never share."""
    return destination.with_name(f".{destination.name}.{secrets.token_hex(4)}{FETCH_SUFFIX}")


class LocalArtifactStore:
    """Blobs in a local directory. Writes go to a temp file beside the blobs (same file
    system, so the final ``os.replace`` is atomic): a killed process leaves at most a temp
    file, never a half-written blob under a digest."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._blobs = self.root / "sha256"

    def put(self, source: BinaryIO | Path) -> Artifact:
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as stream:
                return self._put_stream(stream)
        return self._put_stream(source)

    def _put_stream(self, stream: BinaryIO) -> Artifact:
        self._blobs.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self._blobs)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = copy_hashed(stream, out)
                out.flush()
                # The registry records the digest right after this returns: the bytes
                # must be on disk before a database row can point at them.
                os.fsync(out.fileno())
            final = self._path_for(digest)
            if final.exists():
                temp.unlink()
                # Refresh the mtime so a concurrent cleanup's grace period protects a blob
                # that is about to be referenced again.
                os.utime(final)
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(temp, final)
                _fsync_dir(final.parent)
            return Artifact(digest, size)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def open(self, digest: str) -> BinaryIO:
        return open(self._existing(digest), "rb")  # the caller closes it

    def fetch(self, digest: str, destination: Path) -> None:
        """A hard link where the file system allows (no copy, no extra space: blobs are
        never modified in place), else a copy."""
        blob = self._existing(digest)
        temp = fetch_temp(destination)
        try:
            try:
                os.link(blob, temp)
            except OSError:  # another file system, or one without hard links
                with open(blob, "rb") as src, temp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
            os.replace(temp, destination)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _existing(self, digest: str) -> Path:
        path = self._path_for(digest)
        if not path.is_file():
            raise NotFound(f"artifact {digest} not found")
        return path

    def exists(self, digest: str) -> bool:
        return self._path_for(digest).is_file()

    def delete(self, digest: str) -> bool:
        path = self._path_for(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only succeeds when the fan-out directory is empty
        return True

    def digests(self) -> Iterator[str]:
        if not self._blobs.is_dir():
            return
        for fan_out in sorted(self._blobs.iterdir()):
            if not fan_out.is_dir():
                continue
            for blob in sorted(fan_out.iterdir()):
                digest = f"sha256:{fan_out.name}{blob.name}"
                if DIGEST.fullmatch(digest) and blob.is_file():
                    yield digest

    def modified_at(self, digest: str) -> float:
        """The blob's mtime (seconds since the epoch): cleanup spares recent blobs."""
        return self._existing(digest).stat().st_mtime

    def cleanup_temp(self, older_than_s: float = 0.0) -> int:
        """Delete temp files not written to for ``older_than_s`` seconds. At start-up of the
        only process 0 is right; with several processes on one store, a grace period
        keeps another process's upload in progress alive."""
        if not self._blobs.is_dir():
            return 0
        cutoff, removed = time.time() - older_than_s, 0
        for temp in self._blobs.glob(f"{TEMP_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if older_than_s <= 0 or temp.stat().st_mtime <= cutoff:
                    temp.unlink()
                    removed += 1
        return removed

    def _path_for(self, digest: str) -> Path:
        hex_digest = check_digest(digest).removeprefix("sha256:")
        return self._blobs / hex_digest[:2] / hex_digest[2:]


def _fsync_dir(directory: Path) -> None:
    # The rename itself must survive a power cut, not only the file's bytes.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open directories (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
