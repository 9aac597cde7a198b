"""Settings the server refuses to start with, and the URL it prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from ferry.errors import ConfigError
from ferry.server import base_url, check_security, is_loopback
from ferry.settings import Settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback(host: str) -> None:
    assert is_loopback(host)
    check_security(Settings(host=host, auth=False))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com", ""])
def test_no_auth_is_refused_off_loopback(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="refusing to run without API keys"):
        check_security(Settings(host=host, auth=False))
    check_security(Settings(host=host))  # with keys: fine


def test_tls_needs_both_files(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="both"):
        check_security(Settings(ssl_certfile=cert))
    with pytest.raises(ConfigError, match="no such file"):
        check_security(Settings(ssl_certfile=cert, ssl_keyfile=tmp_path / "missing.pem"))


def test_base_url() -> None:
    assert base_url(Settings(port=9000)) == "http://127.0.0.1:9000"
    assert base_url(Settings(host="0.0.0.0", port=1)) == "http://127.0.0.1:1"
    assert base_url(Settings(host="::1", port=1, ssl_certfile=Path("c"), ssl_keyfile=Path("k"))) == "https://[::1]:1"
