"""Reading request bodies within limits, and noticing clients that leave."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

from ferry.errors import InvalidInput, PayloadTooLarge

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready."""


async def read_body(receive: Receive, content_length: str | None, content_encoding: str | None, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it exceeds ``limit``; gzip and
    deflate bodies are inflated under the same limit (no decompression bombs)."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"the request body is {content_length} bytes; the limit is {limit}")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = (content_encoding or "identity").lower()
    if encoding in ("identity", ""):
        return body
    if encoding == "gzip":
        return _inflate(body, zlib.MAX_WBITS | 16, limit)
    if encoding == "deflate":
        return _inflate(body, zlib.MAX_WBITS, limit)
    raise InvalidInput(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")


async def read_request_body(request: Request, limit: int) -> bytes:
    """read_body for a Starlette route."""
    headers = request.headers
    return await read_body(request.receive, headers.get("content-length"), headers.get("content-encoding"), limit)


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"the compressed body is corrupt: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed request body is over the {limit}-byte limit")
    if not inflater.eof:
        raise InvalidInput("the compressed body is truncated")
    return out


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``, cancelling it if the client disconnects meanwhile, so its
    request leaves the model's queue instead of being computed for nobody."""
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:
            task.uncancel()
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()
