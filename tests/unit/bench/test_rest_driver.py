"""ferry.bench.rest_driver against a scripted HTTP/1.1 server on loopback: the request on
the wire, keep-alive, the ways an answer's body can be framed, and failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ferry.bench.driver import Failure
from ferry.bench.options import target
from ferry.bench.requests import HttpBody
from ferry.bench.rest_driver import RestDriver, request_bytes

BODY = HttpBody(b'{"inputs": []}', {"Content-Type": "application/json"})


def test_the_request_on_the_wire() -> None:
    wire = request_bytes(target("http://127.0.0.1:8000/prefix", "rest-json"), "my model", BODY, "fy_key")
    head, _, body = wire.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /prefix/v2/models/my%20model/infer HTTP/1.1"
    assert "Host: 127.0.0.1:8000" in lines
    assert "Content-Type: application/json" in lines
    assert f"Content-Length: {len(BODY.body)}" in lines
    assert "Authorization: Bearer fy_key" in lines
    assert body == BODY.body
    assert b"Authorization" not in request_bytes(target("http://h", "rest-json"), "m", BODY, None)


Answer = Callable[[int], bytes]  # request number -> the bytes to answer with


@asynccontextmanager
async def scripted_server(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """Yields (URL, requests seen per connection)."""
    per_connection: list[int] = []
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        per_connection.append(0)
        index = len(per_connection) - 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                per_connection[index] += 1
                served += 1
                reply = answer(served)
                writer.write(reply)
                await writer.drain()
                framed = b"content-length" in reply.lower() or b"chunked" in reply
                if b"connection: close" in reply.lower() or not framed:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", per_connection


def ok(body: bytes = b'{"outputs": []}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%s" % (len(body), body)


async def send_all(answer: Answer, count: int) -> tuple[list[Failure | None], list[int]]:
    async with scripted_server(answer) as (url, per_connection):
        driver = RestDriver(target(url, "rest-json"), "m", BODY, None)
        (connection,) = await driver.connect(1)
        results = [await connection.send() for _ in range(count)]
        await driver.close()
        return results, per_connection


def test_keep_alive_sends_every_request_on_one_connection() -> None:
    results, per_connection = asyncio.run(send_all(lambda n: ok(), 5))
    assert results == [None] * 5
    assert per_connection == [5]


def test_a_chunked_answer_is_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"
    results, per_connection = asyncio.run(send_all(lambda n: chunked, 3))
    assert results == [None] * 3
    assert per_connection == [3]


def test_connection_close_and_a_body_to_the_end_of_the_connection_open_a_new_one() -> None:
    closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    to_the_end = b"HTTP/1.1 200 OK\r\n\r\n{}"
    results, per_connection = asyncio.run(send_all(lambda n: closing if n % 2 else to_the_end, 4))
    assert results == [None] * 4
    assert per_connection == [1, 1, 1, 1]


def test_an_error_status_is_a_failure_with_the_server_s_message() -> None:
    error = b'{"error": "model is overloaded"}'
    overloaded = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (len(error), error)
    results, _ = asyncio.run(send_all(lambda n: overloaded if n == 2 else ok(), 3))
    assert results == [None, Failure("HTTP 503", '{"error": "model is overloaded"}'), None]


def test_a_connection_the_server_drops_is_a_failure_and_the_next_request_reconnects() -> None:
    results, per_connection = asyncio.run(send_all(lambda n: b"HTTP/1.1 200 OK\r\nContent-Le" if n == 2 else ok(), 3))
    assert results[0] is None and results[2] is None
    assert results[1] is not None and results[1].status == "connection error"
    assert per_connection == [2, 1]


def test_a_server_that_is_down_is_a_connection_error() -> None:
    async def run() -> Failure | None:
        driver = RestDriver(target("http://127.0.0.1:1", "rest-json"), "m", BODY, None)
        (connection,) = await driver.connect(1)
        return await connection.send()

    failure = asyncio.run(run())
    assert failure is not None and failure.status == "connection error"
    assert "cannot connect to 127.0.0.1:1" in failure.message
