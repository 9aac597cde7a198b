"""The values ``ferry bench`` takes on its command line, parsed into numbers and a target.
Each parser raises ``argparse.ArgumentTypeError`` so that argparse reports a bad value as a
usage error (exit 2)."""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

Protocol = Literal["rest-json", "rest-binary", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("rest-json", "rest-binary", "grpc")

# Beyond this a single client process runs out of file descriptors or CPU long before the
# server is the bottleneck; more load needs more machines.
MAX_CONCURRENCY = 4096
GRPC_DEFAULT_PORT = 8001
DEFAULT_CONCURRENCY = "1,4,16,64"

_UNITS_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def duration(text: str) -> float:
    """``10s``, ``500ms``, ``2m`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"a duration is a number with an optional unit (ms, s, m, h), not {text!r}")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


def positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be above 0, not {text!r}")
    return value


def concurrency_levels(text: str) -> list[int]:
    """``1,4,16,64``: each level is run in turn, in the order given."""
    levels = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= MAX_CONCURRENCY:
            raise argparse.ArgumentTypeError(
                f"concurrency is a comma-separated list of whole numbers from 1 to {MAX_CONCURRENCY}, not {text!r}"
            )
        levels.append(int(part))
    return levels


def batch_size(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"the batch size is a whole number from 1, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class Target:
    """Where requests go. REST: ``base_url`` (scheme, host, port and any path prefix, e.g.
    an ingress route); gRPC: ``address`` as ``host:port``."""

    protocol: Protocol
    base_url: str
    host: str
    port: int
    tls: bool
    path_prefix: str

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        return self.address if self.port != default else (f"[{self.host}]" if ":" in self.host else self.host)


def target(url: str, protocol: Protocol) -> Target:
    """Read URL for ``protocol``; ``ValueError`` with a readable message when it is not one.

    REST takes ``http://`` and ``https://`` URLs. gRPC also takes ``grpc://``, ``grpcs://``
    and a bare ``host:port`` (the form tritonclient.grpc and perf_analyzer take); its
    default port is 8001."""
    text = url.strip()
    if protocol == "grpc" and "://" not in text:
        text = f"grpc://{text}"
    parts = urlsplit(text)
    schemes = ("http", "https", "grpc", "grpcs") if protocol == "grpc" else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        if protocol == "grpc":
            raise ValueError(f"not host:port or an http://, https://, grpc:// or grpcs:// URL: {url!r}")
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    tls = parts.scheme in ("https", "grpcs")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if port is None:
        port = GRPC_DEFAULT_PORT if parts.scheme.startswith("grpc") else 443 if tls else 80
    prefix = parts.path.rstrip("/")
    if protocol == "grpc" and prefix:
        raise ValueError(f"a gRPC address has no path: {url!r}")
    scheme = "https" if tls else "http"
    netloc = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Target(protocol, f"{scheme}://{netloc}:{port}{prefix}", parts.hostname, port, tls, prefix)


class UsageError(Exception):
    """Something the user must fix before a run can start (a bad URL, an unknown model, an
    unreadable --input-data file): printed as ``ferry: <message>``, exit code 2."""
