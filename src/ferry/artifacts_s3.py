"""S3ArtifactStore: the artifact store in an S3-compatible bucket (AWS S3, MinIO, Ceph,
R2, ...), so that nodes without a shared disk serve the same artifacts.

Objects are laid out as ``<prefix>/sha256/<first 2 hex>/<other 62 hex>``, as on disk.
The endpoint, the region and the credentials are found the way every AWS tool finds them
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, a pod's role):
Ferry's settings only name the bucket, never a secret.

- ``put`` hashes the bytes into a temp file of the staging directory (memory stays
  bounded), then uploads it with boto3's managed transfer (multipart for big files) as a
  conditional write (``If-None-Match: *``): two nodes storing the same bytes never
  overwrite each other, and the loser's 412 means the object is already there.
- ``fetch`` downloads to a temp file beside the destination, checks its sha256 and only
  then renames it into place: bytes that do not match their digest are never served.
- A killed upload leaves a staging temp file or an unfinished multipart upload;
  ``cleanup_temp`` removes both."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from s3transfer.exceptions import RetriesExceededError

from ferry.artifacts import (
    TEMP_PREFIX,
    Artifact,
    CorruptArtifact,
    StoreUnavailable,
    check_digest,
    copy_hashed,
    fetch_temp,
    file_digest,
)
from ferry.errors import ConfigError, NotFound

log = logging.getLogger("ferry.artifacts")

# What boto3 and s3transfer raise when the store cannot be reached or refuses a request.
_STORE_ERRORS = (BotoCoreError, ClientError, Boto3Error, RetriesExceededError)
_KEY = re.compile(r"([0-9a-f]{2})/([0-9a-f]{62})")
# S3's limit for a server-side copy in one request (refreshing an object's date, below).
_MAX_COPY_BYTES = 5 * 1024**3
_CONFLICT_RETRIES = 3


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without its slashes); ConfigError otherwise."""
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if parts.scheme != "s3" or not bucket or parts.query or parts.fragment:
        raise ConfigError(f"artifacts_url must look like s3://BUCKET or s3://BUCKET/PREFIX, not {url!r}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise ConfigError(f"artifacts_url {url!r}: {bucket!r} is not an S3 bucket name")
    if "//" in prefix:
        raise ConfigError(f"artifacts_url {url!r}: the prefix has an empty path segment")
    return bucket, prefix


def default_client() -> Any:
    """An S3 client as boto3 resolves it (endpoint, region, credentials, retries: the
    standard AWS environment variables and configuration files). Connecting gets a bound:
    an unreachable endpoint should fail a start or an upload in seconds, not minutes."""
    return boto3.session.Session().client("s3", config=Config(connect_timeout=5, read_timeout=60))


def _if_none_match(params: dict[str, Any], **_: Any) -> None:
    # boto3's managed transfer does not pass IfNoneMatch through (s3transfer allows a fixed
    # list of arguments), so it is added to the two requests that create an object: a
    # small file's PutObject, a big one's CompleteMultipartUpload.
    params["IfNoneMatch"] = "*"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _already_stored(exc: ClientError) -> bool:
    return _code(exc) in ("PreconditionFailed", "412") or _status(exc) == 412


def _missing(exc: ClientError) -> bool:
    """A missing object (HEAD answers a bare 404); a missing bucket is not this."""
    return _code(exc) in ("404", "NoSuchKey", "NotFound")


class S3ArtifactStore:
    """Blobs in ``s3://bucket/prefix``; ``staging_dir`` (on local disk) holds uploads being
    hashed and downloads being checked by ``open``. Implements ``ArtifactStore``."""

    def __init__(
        self,
        url: str,
        staging_dir: Path,
        client: Any | None = None,
        transfer: TransferConfig | None = None,
    ) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.staging_dir = Path(staging_dir)
        self._root = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        if client is None:
            try:
                client = default_client()
            except (BotoCoreError, ValueError) as exc:  # an unknown AWS_PROFILE, a malformed endpoint
                raise ConfigError(f"artifact store {self.url}: cannot make an S3 client: {exc}") from None
        self._client = client
        events = self._client.meta.events
        for operation in ("PutObject", "CompleteMultipartUpload"):
            events.register(
                f"before-parameter-build.s3.{operation}", _if_none_match, unique_id=f"ferry-if-none-match-{operation}"
            )
        # "classic": the CRT transfer client would bypass the hook above.
        self._transfer = transfer or TransferConfig(preferred_transfer_client="classic")

    # -- start-up --------------------------------------------------------------------------

    def check(self) -> None:
        """HeadBucket: ConfigError, saying what to fix, when the bucket is missing, the
        endpoint unreachable or the credentials refused."""
        endpoint = self._client.meta.endpoint_url
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ConfigError(
                f"artifact store {self.url}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or give the node a role"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            raise ConfigError(
                f"artifact store {self.url}: cannot reach the S3 endpoint {endpoint} ({exc}): "
                "is the store up, and is AWS_ENDPOINT_URL right?"
            ) from None
        except ClientError as exc:
            status = _status(exc)
            if status == 404 or _code(exc) == "NoSuchBucket":
                reason = f"the bucket {self.bucket!r} does not exist at {endpoint} (create it first)"
            elif status == 403:
                reason = (
                    f"access to the bucket {self.bucket!r} is denied: check the AWS credentials "
                    "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the node's role) and the bucket policy"
                )
            elif status == 301:
                reason = f"the bucket {self.bucket!r} is in another region: set AWS_REGION to it"
            else:
                reason = f"HeadBucket failed at {endpoint}: {exc}"
            raise ConfigError(f"artifact store {self.url}: {reason}") from None
        except _STORE_ERRORS as exc:
            raise ConfigError(f"artifact store {self.url}: cannot use it ({exc})") from None

    # -- ArtifactStore ---------------------------------------------------------------------

    def put(self, source: BinaryIO | Path) -> Artifact:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            digest = file_digest(path)
            self._store(path, digest)
            return Artifact(digest, path.stat().st_size)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=self.staging_dir)
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = copy_hashed(source, out)
            self._store(temp, digest)
            return Artifact(digest, size)
        finally:
            temp.unlink(missing_ok=True)

    def open(self, digest: str) -> BinaryIO:
        """A checked copy in an anonymous temp file of the staging directory (gone once
        closed): a stream straight from S3 would hand out bytes before they are checked."""
        key = self._key(digest)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        copy = tempfile.TemporaryFile(dir=self.staging_dir)  # noqa: SIM115 (the caller closes it)
        try:
            self._download(digest, key, copy)
            copy.seek(0)
            self._verify(digest, f"sha256:{hashlib.file_digest(copy, 'sha256').hexdigest()}")
            copy.seek(0)
        except BaseException:
            copy.close()
            raise
        return copy

    def fetch(self, digest: str, destination: Path) -> None:
        key = self._key(digest)
        temp = fetch_temp(destination)
        try:
            with temp.open("wb") as out:
                self._download(digest, key, out)
            self._verify(digest, file_digest(temp))
            os.replace(temp, destination)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def exists(self, digest: str) -> bool:
        key = self._key(digest)
        with self._unavailable("cannot look up an artifact"):
            return self._head(key) is not None

    def delete(self, digest: str) -> bool:
        key = self._key(digest)
        with self._unavailable(f"cannot delete {digest}"):
            if self._head(key) is None:
                return False
            self._client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def digests(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._root)
        with self._unavailable("cannot list the artifacts"):
            for page in pages:
                for item in page.get("Contents", []):
                    match = _KEY.fullmatch(item["Key"][len(self._root) :])
                    if match is not None:
                        yield f"sha256:{match[1]}{match[2]}"

    def modified_at(self, digest: str) -> float:
        """The object's Last-Modified: an upload of bytes already stored refreshes it."""
        key = self._key(digest)
        with self._unavailable("cannot look up an artifact"):
            head = self._head(key)
        if head is None:
            raise NotFound(f"artifact {digest} not found")
        return float(head["LastModified"].timestamp())

    def cleanup_temp(self, older_than_s: float = 0.0) -> int:
        """Staging temp files and unfinished multipart uploads under the prefix that were
        started at least ``older_than_s`` ago (0: all of them, right when this is the only
        process; with several nodes, a grace period spares their uploads in progress)."""
        cutoff, removed = time.time() - older_than_s, 0
        if self.staging_dir.is_dir():
            for temp in self.staging_dir.glob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(FileNotFoundError):
                    if older_than_s <= 0 or temp.stat().st_mtime <= cutoff:
                        temp.unlink()
                        removed += 1
        pages = self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self._root)
        with self._unavailable("cannot list unfinished uploads"):
            for page in pages:
                for upload in page.get("Uploads", []):
                    if older_than_s > 0 and upload["Initiated"].timestamp() > cutoff:
                        continue
                    with contextlib.suppress(ClientError):  # finished or aborted meanwhile
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
        return removed

    # -- internals -------------------------------------------------------------------------

    def _key(self, digest: str) -> str:
        hex_digest = check_digest(digest).removeprefix("sha256:")
        return f"{self._root}{hex_digest[:2]}/{hex_digest[2:]}"

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return head

    def _store(self, path: Path, digest: str) -> None:
        key = self._key(digest)
        with self._unavailable(f"cannot store {digest}"):
            for attempt in range(_CONFLICT_RETRIES):
                if self._refresh(key):
                    return
                try:
                    with create_transfer_manager(self._client, self._transfer) as transfers:
                        transfers.upload(str(path), self.bucket, key).result()
                    return
                except ClientError as exc:
                    if _already_stored(exc):  # another node stored the same bytes first
                        return
                    # AWS answers 409 while another conditional write of the key is in
                    # flight, and asks for a retry.
                    if _code(exc) != "ConditionalRequestConflict" or attempt == _CONFLICT_RETRIES - 1:
                        raise
                    time.sleep(0.2 * (attempt + 1))

    def _refresh(self, key: str) -> bool:
        """True if the object is there, after bringing its Last-Modified to now (a copy
        onto itself): like the local store's utime, so that another node's cleanup grace
        period protects an orphan that is about to be referenced again."""
        head = self._head(key)
        if head is None:
            return False
        if head.get("ContentLength", 0) > _MAX_COPY_BYTES:
            return True  # one CopyObject cannot; such uploads take longer than the grace period anyway
        try:
            self._client.copy_object(
                Bucket=self.bucket,
                Key=key,
                CopySource={"Bucket": self.bucket, "Key": key},
                MetadataDirective="REPLACE",
                Metadata={"stored-at": str(int(time.time()))},
            )
        except ClientError as exc:
            if _missing(exc):  # deleted meanwhile: store it again
                return False
            raise
        return True

    def _download(self, digest: str, key: str, out: BinaryIO) -> None:
        with self._unavailable(f"cannot read {digest}"):
            try:
                with create_transfer_manager(self._client, self._transfer) as transfers:
                    transfers.download(self.bucket, key, out).result()
            except ClientError as exc:
                if _missing(exc):
                    raise NotFound(f"artifact {digest} not found in {self.url}") from None
                raise

    def _verify(self, digest: str, actual: str) -> None:
        if actual != digest:
            log.error("artifact %s in %s is corrupt: its bytes hash to %s", digest, self.url, actual)
            raise CorruptArtifact(
                f"artifact {digest} in {self.url} is corrupt: its bytes hash to {actual}; they are not served"
            )

    @contextlib.contextmanager
    def _unavailable(self, doing: str) -> Iterator[None]:
        """The store's own failures as 503s that say what went wrong (no credentials ever
        appear in boto3's messages)."""
        try:
            yield
        except _STORE_ERRORS as exc:
            raise StoreUnavailable(f"artifact store {self.url} {doing}: {exc}", retry_after_s=5) from exc
