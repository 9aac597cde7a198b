"""uvicorn's httptools protocol with limits on what one connection may cost: the size
and field count of a request head (431), how long a head and a body may take to arrive
(408), and how many connections and requests are served at once (503, never to health
probes or /metrics). uvicorn has none of these for httptools: a head is buffered
whole however large, and a client that sends one byte at a time holds its connection
for as long as it likes.

Timers are armed only when a head or a body spans several reads, so a request that
arrives in one piece (the common case) costs no timer at all."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from ferry.settings import Settings

# Paths answered even when the server is over its connection cap: a probe that failed
# then would have Kubernetes restart a server that is merely busy.
PROBE_PATHS = (b"/v2/health/", b"/metrics")
# How long a refused connection's further input is read and dropped before it is closed.
LINGER_S = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    max_header_fields: int
    header_timeout_s: float
    body_timeout_s: float
    body_min_rate: int
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            max_header_fields=settings.max_header_fields,
            header_timeout_s=settings.header_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            body_min_rate=settings.body_min_rate,
            max_connections=settings.max_connections,
        )


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, with these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class _Phase(enum.Enum):
    IDLE = 0  # before a request's first byte
    HEAD = 1  # the request line and headers
    BODY = 2  # from the end of the head to the end of the body


class _TooManyFields(Exception):
    """Raised from the parser's header callback: parsing stops there."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    limits: ConnectionLimits

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # uvicorn's own cap would also refuse the probes: this class applies it instead.
        self.limit_concurrency = None
        self._phase = _Phase.IDLE
        # Bytes received while reading the current head (or waiting for one): an upper
        # bound, counted before the parser sees them.
        self._head_bytes = 0
        self._fields = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_since = 0.0
        self._body_bytes = 0
        # The error the parser was stopped for, answered instead of uvicorn's 400.
        self._refusal: tuple[int, str] | None = None
        # Set once a head is refused: nothing more from the client is parsed.
        self._ignoring = False

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a whole head is closed like a slow head.
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        if self._ignoring or self.transport.is_closing():
            return
        limit = self.limits.max_header_bytes
        while self._phase is not _Phase.BODY and self._head_bytes + len(data) > limit:
            # Give the parser no more than the limit: if the head does not end within it,
            # it is refused without being buffered or parsed any further.
            room = limit - self._head_bytes
            self._head_bytes = limit
            super().data_received(data[:room])
            if self._ignoring or self.transport.is_closing():
                return
            if self._phase is not _Phase.BODY and self._head_bytes >= limit:
                self._refuse_head(431, f"the request head is over the {limit}-byte limit")
                return
            data = data[room:]
        if self._phase is not _Phase.BODY:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._ignoring or self.transport.is_closing():
            return
        # What is still incomplete after this read gets a deadline.
        if self._phase is _Phase.HEAD and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)
        elif self._phase is _Phase.BODY and self._body_timer is None:
            self._body_since = time.monotonic()
            self._body_bytes = 0
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase = _Phase.HEAD
        self._fields = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.limits.max_header_fields:
            self._refusal = (431, f"the request has over {self.limits.max_header_fields} header fields")
            raise _TooManyFields
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._phase = _Phase.BODY
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self._over_capacity():
            super().on_headers_complete()
            return
        # uvicorn starts the request with self.app: this one request gets the 503.
        app = self.app
        self.app = _overloaded
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._phase = _Phase.IDLE
        self._head_bytes = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # -- limits -------------------------------------------------------------------------

    def _over_capacity(self) -> bool:
        cap = self.limits.max_connections
        if len(self.connections) < cap and len(self.tasks) < cap:
            return False
        path = self.url.split(b"?", 1)[0]
        return not path.startswith(PROBE_PATHS)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._phase is _Phase.HEAD:
            self._refuse_head(408, f"the request head did not arrive within {self.limits.header_timeout_s:g} s")
        elif self.cycle is None or self.cycle.response_complete:
            # Connected, but never sent a byte: nothing to answer.
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.flow.read_paused:
            # The server is not reading (the app is busy, or a request is queued behind
            # another on this connection): not the client's delay. Measure afresh later.
            self._body_since, self._body_bytes = time.monotonic(), 0
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
            return
        limits = self.limits
        deadline = self._body_since + limits.body_timeout_s + self._body_bytes / limits.body_min_rate
        remaining = deadline - time.monotonic()
        if remaining > 0:
            self._body_timer = self.loop.call_later(remaining, self._body_timed_out)
            return
        self._cancel_timers()
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            # Answered already (e.g. refused before the body was read): just close.
            self.transport.close()
            return
        # The request's app sees a disconnect, and anything it sends is dropped.
        cycle.disconnected = True
        cycle.message_event.set()
        message = (
            f"the request body arrived slower than {limits.body_min_rate} bytes/s "
            f"after the first {limits.body_timeout_s:g} s"
        )
        self._answer_and_close(408, message)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; ours were stopped on purpose.
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse_head(*refusal)

    def _refuse_head(self, status: int, message: str) -> None:
        """Refuse the head being read: nothing more is read from this connection."""
        self._cancel_timers()
        self._ignoring = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The request before this one is still being answered: close after it.
            cycle.keep_alive = False
            return
        self._answer_and_close(status, message)

    def _answer_and_close(self, status: int, message: str) -> None:
        body = orjson.dumps({"error": message})
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\ncontent-length: ",
            str(len(body)).encode("ascii"),
            b"\r\nconnection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if not self.transport.can_write_eof():  # TLS
            self.transport.close()
            return
        # A close with unread input resets the connection, and the reset can destroy the
        # answer before the client reads it: end our side, read (and drop) a while longer.
        self._ignoring = True
        self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


_OVERLOADED = orjson.dumps({"error": "the server is at its connection limit; retry shortly"})


async def _overloaded(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_OVERLOADED)).encode("ascii")),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _OVERLOADED})
