"""Limits on what one connection may cost, against real ``ferry serve`` processes over
raw sockets (docs/security.md, "Connections and request size"): request heads too large
or with too many fields (431), heads and bodies sent a byte at a time (408 and close),
connections that never send anything, idle keep-alive connections, the connection cap
(503, probes still answered), gRPC metadata under the same limit, big JSON bodies
decoded in a worker process, and bodies nested too deeply to decode (400)."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import requests

from ferry.grpc.protos import grpc_service_pb2 as pb
from tests.builders import identity_onnx, scale_onnx
from tests.e2e.grpc_clients import stub
from tests.e2e.server import HOST, Server, running

# Short enough for quick tests, long enough for a loaded CI machine to meet easily.
HEAD_TIMEOUT_S = 1
BODY_TIMEOUT_S = 1
IDLE_TIMEOUT_S = 1
# How long a test keeps a misbehaving client going: far longer than the timeouts above,
# so a server without them is told apart from a slow one.
PATIENCE_S = 20.0
TRICKLE_S = 0.2  # between two bytes of a slow client
SOCKET_TIMEOUT_S = 30.0
READY = b"GET /v2/health/ready HTTP/1.1\r\nHost: ferry\r\n\r\n"
# JSON bodies this large are decoded in a worker process (tests/unit/test_decoder.py
# shows the event loop serving others meanwhile).
OFFLOAD_BYTES = 4096


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    return [scale_onnx(root / "scale.onnx", 3.0), identity_onnx(root / "echo.onnx", "BYTES")]


@pytest.fixture(scope="module")
def server(models: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Default header limits; short timeouts so the slow-client tests are quick."""
    log = tmp_path_factory.mktemp("logs") / "connections.log"
    flags = ["--header-timeout", str(HEAD_TIMEOUT_S), "--body-timeout", str(BODY_TIMEOUT_S)]
    flags += ["--body-min-rate", "1000", "--idle-timeout", str(IDLE_TIMEOUT_S)]
    flags += ["--json-offload-bytes", str(OFFLOAD_BYTES)]
    with running(models, log, *flags) as srv:
        yield srv


def connect(server: Server) -> socket.socket:
    return socket.create_connection((HOST, server.port), timeout=SOCKET_TIMEOUT_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    assert answer.startswith(b"HTTP/1.1 "), f"not an HTTP answer: {answer[:200]!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def trickle(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` a byte every TRICKLE_S, as a slowloris client does, for at most
    PATIENCE_S; what the server answered, once it has closed the connection. Fails if it
    kept the connection open all along."""
    deadline = time.monotonic() + PATIENCE_S
    for byte in data:
        if time.monotonic() > deadline:
            break
        readable, _, _ = select.select([sock], [], [], TRICKLE_S)
        if readable:
            return read_until_closed(sock)
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return read_until_closed(sock)
    raise AssertionError(f"the server kept a slow client's connection open for {PATIENCE_S} s")


def ready(server: Server) -> bool:
    return requests.get(f"{server.url}/v2/health/ready", timeout=SOCKET_TIMEOUT_S).status_code == 200


# -- request heads ----------------------------------------------------------------------


def test_a_huge_header_gets_431_before_it_is_read_and_the_server_keeps_serving(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: ferry\r\nX-Huge: ")
        try:
            for _ in range(64):  # 64 MiB, the header never ends
                sock.sendall(b"a" * 1024 * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: what matters is its answer
        status, body = status_and_body(read_until_closed(sock))
    assert status == 431
    assert json.loads(body) == {"error": "the request head is over the 65536-byte limit"}
    assert ready(server)


def test_too_many_header_fields_get_431(server: Server) -> None:
    fields = b"".join(b"X-Field-%d: 1\r\n" % i for i in range(101))
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: ferry\r\n" + fields + b"\r\n")
        status, body = status_and_body(read_until_closed(sock))
    assert status == 431
    assert json.loads(body) == {"error": "the request has over 100 header fields"}
    assert ready(server)


def test_a_head_under_the_limits_is_served(server: Server) -> None:
    fields = b"".join(b"X-Field-%d: %s\r\n" % (i, b"a" * 500) for i in range(90))
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n" + fields + b"\r\n")
        status, _ = status_and_body(read_until_closed(sock))
    assert status == 200


# -- slow and idle clients --------------------------------------------------------------


def test_a_head_sent_a_byte_at_a_time_gets_408_and_is_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\n")
        answer = trickle(sock, b"X-Slow: " + b"a" * 1000)
    status, body = status_and_body(answer)
    assert status == 408
    assert json.loads(body) == {"error": f"the request head did not arrive within {HEAD_TIMEOUT_S} s"}
    assert ready(server)


def test_a_body_sent_a_byte_at_a_time_gets_408_and_is_closed(server: Server) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1] * 4}]})
    head = b"POST /v2/models/scale/infer HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\n"
    padded = body.encode().ljust(2000)
    with connect(server) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(padded))
        answer = trickle(sock, padded)
    status, error = status_and_body(answer)
    assert status == 408
    assert json.loads(error) == {
        "error": f"the request body arrived slower than 1000 bytes/s after the first {BODY_TIMEOUT_S} s"
    }
    assert ready(server)


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with connect(server) as sock:
        readable, _, _ = select.select([sock], [], [], PATIENCE_S)
        assert readable, f"the server kept a silent connection open for {PATIENCE_S} s"
        assert read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed_after_its_answer(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(READY)
        readable, _, _ = select.select([sock], [], [], PATIENCE_S)
        assert readable
        answer = read_until_closed(sock)  # the answer, then the close of the idle connection
    status, body = status_and_body(answer)
    assert status == 200
    assert json.loads(body) == {"ready": True}


def test_pipelined_requests_are_still_answered_in_order(server: Server) -> None:
    last = b"GET /v2/health/live HTTP/1.1\r\nHost: ferry\r\nConnection: close\r\n\r\n"
    with connect(server) as sock:
        sock.sendall(READY + READY + last)
        answer = read_until_closed(sock)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.endswith(b'{"live":true}')


# -- the connection cap -----------------------------------------------------------------


def test_over_the_connection_cap_requests_get_503_but_probes_are_answered(models: list[Path], tmp_path: Path) -> None:
    with running(models, tmp_path / "cap.log", "--max-connections", "3", "--header-timeout", "60") as server:
        held = [connect(server) for _ in range(3)]
        try:
            # Opened, not yet used: each counts until it sends a request or times out.
            with connect(server) as sock:
                sock.sendall(b"GET /v2/models/scale HTTP/1.1\r\nHost: ferry\r\n\r\n")
                status, body = status_and_body(read_until_closed(sock))
            assert status == 503
            assert json.loads(body) == {"error": "the server is at its connection limit; retry shortly"}
            assert ready(server)
            assert requests.get(f"{server.url}/metrics", timeout=SOCKET_TIMEOUT_S).status_code == 200
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + PATIENCE_S
        while requests.get(f"{server.url}/v2/models/scale", timeout=SOCKET_TIMEOUT_S).status_code != 200:
            assert time.monotonic() < deadline, "requests were still refused after the connections closed"
            time.sleep(0.05)


# -- gRPC metadata ----------------------------------------------------------------------


def test_grpc_metadata_follows_the_header_limit(server: Server) -> None:
    service = stub(server.grpc_address)
    request = pb.ModelReadyRequest(name="scale")
    # gRPC's own default would refuse 32 KiB (16 KiB at most); Ferry's limit is 64 KiB.
    assert service.ModelReady(request, metadata=[("x-large", "a" * 32 * 1024)], timeout=SOCKET_TIMEOUT_S).ready
    with pytest.raises(grpc.RpcError) as refused:
        service.ModelReady(request, metadata=[("x-huge", "a" * 128 * 1024)], timeout=SOCKET_TIMEOUT_S)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert service.ModelReady(request, timeout=SOCKET_TIMEOUT_S).ready


# -- bodies nested too deeply -----------------------------------------------------------


def nested_form(depth: int) -> bytes:
    """A form whose one field is a multipart body, whose one part is another, ``depth`` deep."""
    body, content_type = b"value", b""
    for level in range(depth, 0, -1):
        boundary = b"L%dL" % level
        headers = b'Content-Disposition: form-data; name="INPUT0"\r\n' + content_type
        body = b"--%s\r\n%s\r\n%s\r\n--%s--\r\n" % (boundary, headers, body, boundary)
        content_type = b"Content-Type: multipart/mixed; boundary=%s\r\n" % boundary
    return body


@pytest.mark.parametrize("depth", [2, 2000])
def test_a_nested_multipart_form_gets_400(server: Server, depth: int) -> None:
    answer = requests.post(
        f"{server.url}/v2/models/echo/infer",
        data=nested_form(depth),
        headers={"Content-Type": "multipart/form-data; boundary=L1L"},
        timeout=SOCKET_TIMEOUT_S,
    )
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"error": "form field 'INPUT0' is itself a multipart body; nested forms are not accepted"}
    assert ready(server)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_deeply_nested_json_data_gets_400(server: Server, depth: int) -> None:
    data = b"[" * depth + b"1" + b"]" * depth
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": %s}]}' % data
    answer = requests.post(f"{server.url}/v2/models/scale/infer", data=body, timeout=SOCKET_TIMEOUT_S)
    assert answer.status_code == 400, answer.text
    assert ready(server)


# -- big JSON bodies --------------------------------------------------------------------


def test_big_json_bodies_are_decoded_in_a_worker_and_answered(server: Server) -> None:
    rows = 2000
    x = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
    v2 = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4], "data": x.ravel().tolist()}]})
    v1 = json.dumps({"instances": x.tolist()})
    assert len(v2) > OFFLOAD_BYTES and len(v1) > OFFLOAD_BYTES
    answer = requests.post(f"{server.url}/v2/models/scale/infer", data=v2, timeout=SOCKET_TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    np.testing.assert_allclose(np.array(output["data"]).reshape(output["shape"]), x * 3)
    answer = requests.post(f"{server.url}/v1/models/scale:predict", data=v1, timeout=SOCKET_TIMEOUT_S)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.array(answer.json()["predictions"]), x * 3)


def test_a_big_malformed_json_body_is_400_from_the_worker(server: Server) -> None:
    body = b'{"inputs": [' + b" " * OFFLOAD_BYTES + b"oops"
    answer = requests.post(f"{server.url}/v2/models/scale/infer", data=body, timeout=SOCKET_TIMEOUT_S)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("malformed JSON")
    assert ready(server)
