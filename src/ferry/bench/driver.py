"""What the runner needs from a protocol: connections that each send the prepared request
and say whether it succeeded. One connection per concurrent worker."""

from __future__ import annotations

from typing import NamedTuple, Protocol


class Failure(NamedTuple):
    """A request that did not succeed. ``status`` groups failures in the report: ``HTTP 503``,
    a gRPC code such as ``UNAVAILABLE``, or ``connection error``; ``message`` is what the
    server (or the socket) said, shown once per status."""

    status: str
    message: str


class Connection(Protocol):
    async def send(self) -> Failure | None:
        """Send the request once and wait for the whole answer; None when it was a success."""
        ...


class Driver(Protocol):
    async def connect(self, count: int) -> list[Connection]:
        """``count`` connections, opened before the level starts (so the warm-up, not the
        measured window, pays for the handshakes)."""
        ...

    async def close(self) -> None: ...
