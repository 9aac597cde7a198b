"""V2 REST over HTTP/1.1 keep-alive connections on plain asyncio streams.

Why not httpx: its per-request work (building a Request, header models, the connection
pool's bookkeeping) costs several times what the server under test spends on a small
model, so the client becomes the bottleneck (bench/client_overhead.py measures both). Here
a request is one ``write`` of bytes made once, and an answer is one ``readuntil`` of the
head plus one ``readexactly`` of the body."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import quote

from ferry import __version__
from ferry.bench.driver import Connection, Failure
from ferry.bench.options import Target
from ferry.bench.requests import HttpBody

# After a connection cannot be opened, wait before the next try: a server that is down
# must not turn the benchmark into a busy loop of refused connections.
RECONNECT_DELAY_S = 0.05
_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"chunked"
_TRANSFER_ENCODING = b"\r\ntransfer-encoding:"
_CONNECTION_CLOSE = b"\r\nconnection: close"
# An error answer is kept (for the report) only this long.
MESSAGE_BYTES = 300


def request_bytes(target: Target, model: str, body: HttpBody, api_key: str | None) -> bytes:
    """The whole HTTP/1.1 request, head and body, as it goes on the wire."""
    headers = {
        "Host": target.host_header,
        "User-Agent": f"ferry-bench/{__version__}",
        "Accept": "*/*",
        **body.headers,
        "Content-Length": str(len(body.body)),
    }
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    path = f"{target.path_prefix}/v2/models/{quote(model, safe='')}/infer"
    head = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body.body


class HttpConnection:
    def __init__(self, target: Target, request: bytes, tls: ssl.SSLContext | None) -> None:
        self._target = target
        self._request = request
        self._tls = tls
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self._target.host, self._target.port, ssl=self._tls, limit=2**20
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def send(self) -> Failure | None:
        if self._writer is None:
            try:
                await self.open()
            except OSError as exc:
                await asyncio.sleep(RECONNECT_DELAY_S)
                return Failure("connection error", f"cannot connect to {self._target.address}: {exc}")
        reader, writer = self._reader, self._writer
        assert reader is not None and writer is not None
        try:
            writer.write(self._request)
            head = await reader.readuntil(_HEAD_END)
            status = int(head[9:12])
            fields = head.lower()
            body, reusable = await _read_body(reader, status, fields)
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            self.close()
            reason = "the server closed the connection" if isinstance(exc, asyncio.IncompleteReadError) else exc
            return Failure("connection error", str(reason) or type(exc).__name__)
        if not reusable or _CONNECTION_CLOSE in fields:
            self.close()
        if status != 200:
            return Failure(f"HTTP {status}", body[:MESSAGE_BYTES].decode("utf-8", "replace"))
        return None


async def _read_body(reader: asyncio.StreamReader, status: int, fields: bytes) -> tuple[bytes, bool]:
    """The answer's body, framed as its lower-cased head says, and whether the connection
    can carry another request (not when the body ran to the end of the connection)."""
    start = fields.find(_CONTENT_LENGTH)
    if start >= 0:
        end = fields.index(b"\r\n", start + 2)
        return await reader.readexactly(int(fields[start + len(_CONTENT_LENGTH) : end])), True
    if status in (204, 304):
        return b"", True
    start = fields.find(_TRANSFER_ENCODING)
    if start >= 0 and _CHUNKED in fields[start : fields.index(b"\r\n", start + 2)]:
        return await _read_chunked(reader), True
    return await reader.read(), False


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (some servers stream large answers)."""
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected: the blank line
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class RestDriver:
    def __init__(self, target: Target, model: str, body: HttpBody, api_key: str | None) -> None:
        self._target = target
        self._request = request_bytes(target, model, body, api_key)
        self._tls = ssl.create_default_context() if target.tls else None
        self._open: list[HttpConnection] = []

    async def connect(self, count: int) -> list[Connection]:
        connections = [HttpConnection(self._target, self._request, self._tls) for _ in range(count)]
        # A connection that cannot be opened now is retried by its first send, which
        # reports why.
        await asyncio.gather(*(c.open() for c in connections), return_exceptions=True)
        self._open = connections
        return list(connections)

    async def close(self) -> None:
        for connection in self._open:
            with contextlib.suppress(Exception):
                connection.close()
        self._open = []
