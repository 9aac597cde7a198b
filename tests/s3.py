"""A real S3-compatible server for the tests: moto's, on 127.0.0.1 and a free port, once
per test session (it starts in well under a second). Each test gets a bucket of its own.
Without moto (the dev extra) the S3 tests are skipped, and fail with CI=true."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"
# moto takes any credentials; these are the AWS environment the tests run Ferry with.
ACCESS_KEY, SECRET_KEY = "ferry-test-key", "ferry-test-secret"


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT

    def client(self) -> Any:
        """A boto3 client of the test itself (to look at or tamper with the bucket)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self) -> str:
        name = f"ferry-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """The standard AWS variables pointing at this server, and nothing else of the
        machine's own AWS set-up (profiles, files, the instance metadata service)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def use(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point boto3's own resolution (and child processes) at this server."""
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_REGION"):
            monkeypatch.delenv(name, raising=False)
        for name, value in self.env().items():
            monkeypatch.setenv(name, value)


def moto_server() -> Iterator[S3Server]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        reason = f"moto[server] is not installed ({exc}): pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the S3 tests are mandatory)")
        pytest.skip(reason)
    # One line per request otherwise, in every failing test's output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
