"""API keys end to end: real ``ferry serve`` (and ``ferry server``) processes on 127.0.0.1
with keys on, reached with requests, tritonclient and the ``ferry keys``/``ferry audit``
commands. Covers the first admin key of a data directory and its login URL, scopes, model
allow-lists, rate limits, revocation, the browser session cookie, the audit trail, the
offline rescue key, TLS, the refusal of ``--no-auth`` off loopback, and a server log that
never holds a key or a request's payload (docs/security.md)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from ferry.grpc.protos import grpc_service_pb2 as pb
from ferry.security.keys import split
from tests.builders import identity_onnx, scale_onnx
from tests.e2e.grpc_clients import stub
from tests.e2e.server import HOST, Server, ferry_command, free_port, start, start_command
from tests.redis_server import REDIS_URL, reachable_redis

TIMEOUT = 30
KEY = re.compile(r"fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
# The audit trail is written by a background thread after the answer has gone; a read
# waits for what was queued before it, and this bounds any wait beyond that.
AUDIT_WAIT_S = 5.0
FACTOR = 3.0  # scale.onnx: y = x * FACTOR
SESSION_COOKIE = "ferry_session"  # what POST /api/v1/session sets: the key itself
# A stop on SIGTERM with nothing in flight takes well under a second on plain HTTP.
STOP_BOUND_S = 5.0

T = TypeVar("T")


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Keyed:
    """A running server with keys on, its data directory and its first admin key."""

    server: Server
    data_dir: Path
    admin: str


# -- helpers --------------------------------------------------------------------------


def model_files(root: Path) -> list[Path]:
    """``scale`` (FP32, y = 3x) and ``echo`` (BYTES identity), served as files."""
    return [scale_onnx(root / "scale.onnx", FACTOR), identity_onnx(root / "echo.onnx", "BYTES")]


def banner_key(server: Server) -> str:
    """The one admin key the first start printed."""
    found = set(KEY.findall(server.log()))
    assert len(found) == 1, f"expected one admin key in the log, found {len(found)}\n{server.log()}"
    return found.pop()


def start_keyed(root: Path, name: str, *args: str) -> Keyed:
    """``ferry serve scale.onnx echo.onnx --data-dir ROOT/NAME-data`` with keys on."""
    data_dir = root / f"{name}-data"
    server = start(model_files(root), root / f"{name}.log", "--data-dir", str(data_dir), *args, auth=True)
    return Keyed(server, data_dir, banner_key(server))


def ferry(*argv: str, url: str | None = None, key: str | None = None, **env: str) -> Result:
    """The installed ``ferry`` command, with FERRY_URL/FERRY_API_KEY only as given here
    (never inherited from whoever runs the tests)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FERRY_", "SSL_CERT_"))}
    if url is not None:
        environ["FERRY_URL"] = url
    if key is not None:
        environ["FERRY_API_KEY"] = key
    environ.update(env)
    done = subprocess.run([*ferry_command(), *argv], capture_output=True, text=True, env=environ, timeout=TIMEOUT)
    return Result(done.returncode, done.stdout, done.stderr)


def ok(*argv: str, url: str | None = None, key: str | None = None, **env: str) -> Result:
    result = ferry(*argv, url=url, key=key, **env)
    assert result.code == 0, result
    assert result.err == "", result
    return result


def create_key(keyed: Keyed, name: str, scopes: str, *extra: str) -> tuple[str, str]:
    """(id, key) of a key made with ``ferry keys create`` through the server's API."""
    result = ok("keys", "create", "--name", name, "--scopes", scopes, *extra, url=keyed.server.url, key=keyed.admin)
    return key_of(result.out)


def key_of(out: str) -> tuple[str, str]:
    """(id, key) from the output of ``ferry keys create``, which shows the key once."""
    found = KEY.findall(out)
    assert len(found) == 1, out
    return found[0].split("_")[1], found[0]


def secret_of(key: str) -> str:
    return key.split("_", 2)[2]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scale_request(values: list[float | str]) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, len(values)], "data": values}]}


def echo_request(text: str) -> dict[str, Any]:
    return {"inputs": [{"name": "INPUT0", "datatype": "BYTES", "shape": [1, 1], "data": [text]}]}


def infer(url: str, model: str, body: dict[str, Any], headers: dict[str, str], **kwargs: Any) -> requests.Response:
    return requests.post(f"{url}/v2/models/{model}/infer", json=body, headers=headers, timeout=TIMEOUT, **kwargs)


def list_keys(url: str, headers: dict[str, str], **kwargs: Any) -> requests.Response:
    return requests.get(f"{url}/api/v1/keys", headers=headers, timeout=TIMEOUT, **kwargs)


def table_rows(out: str) -> list[dict[str, str]]:
    """The rows of a table the CLI printed, by column name. Columns are left-aligned, so
    each starts where its header does (a cell such as ``admin (3f9c...)`` holds spaces)."""
    header, *lines = out.rstrip("\n").splitlines()
    columns = [(match[0], match.start()) for match in re.finditer(r"\S+", header)]
    ends = [start for _, start in columns[1:]] + [None]
    return [{name: line[start:end].strip() for (name, start), end in zip(columns, ends, strict=True)} for line in lines]


def eventually(check: Callable[[], T | None], timeout_s: float = AUDIT_WAIT_S) -> T:
    """``check()``'s first truthy answer within ``timeout_s``; a bounded wait, never a sleep
    that merely hopes to be long enough."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer within {timeout_s}s")
        time.sleep(0.1)


def audit_rows(keyed: Keyed, *argv: str) -> list[dict[str, str]]:
    return table_rows(ok("audit", *argv, url=keyed.server.url, key=keyed.admin).out)


# -- a shared server with keys on -------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    server = start_keyed(tmp_path_factory.mktemp("keyed"), "shared")
    try:
        yield server
    finally:
        assert server.server.terminate() == 0


@pytest.fixture(scope="module")
def infer_key(keyed: Keyed) -> str:
    return create_key(keyed, "app", "infer")[1]


@pytest.fixture(scope="module")
def read_key(keyed: Keyed) -> str:
    return create_key(keyed, "dashboard", "read")[1]


# -- 1. the first start of a data directory ---------------------------------------------


def banner_lines(log: str, key: str) -> list[str]:
    return [line.strip() for line in log.splitlines() if key in line]


@pytest.mark.parametrize("command", ["serve", "server"])
def test_first_start_shows_one_admin_key_and_a_restart_none(tmp_path: Path, command: str) -> None:
    data_dir = tmp_path / "data"
    argv = ["serve", *map(str, model_files(tmp_path))] if command == "serve" else ["server"]
    argv += ["--data-dir", str(data_dir)]

    first = start_command(argv, tmp_path / "first.log", auth=True)
    try:
        admin = banner_key(first)
        # The key on its own line, in the web app's login URL and in an export line; and
        # nowhere else.
        assert banner_lines(first.log(), admin) == [
            admin,
            f"Web app:  http://{HOST}:{first.port}/login#key={admin}",
            f"CLI:      export FERRY_API_KEY={admin}",
        ]
        keys = list_keys(first.url, bearer(admin))
        assert keys.status_code == 200, keys.text
        assert [(k["name"], k["scopes"], k["state"]) for k in keys.json()] == [("admin", ["admin"], "active")]
    finally:
        assert first.terminate() == 0

    second = start_command(argv, tmp_path / "second.log", auth=True)
    try:
        assert KEY.search(second.log()) is None, second.log()
        assert "made the first admin key" not in second.log()
        # Instead: where to sign in, and the way back in without any key.
        assert f"Web app:  {second.url}/  (sign in with an API key of this data directory)" in second.log()
        assert "ferry keys --data-dir " in second.log()
        keys = list_keys(second.url, bearer(admin))
        assert keys.status_code == 200, keys.text
        assert len(keys.json()) == 1  # no second admin key was made
        assert list_keys(second.url, {}).status_code == 401
    finally:
        assert second.terminate() == 0


def test_health_is_open_and_everything_else_needs_a_key(keyed: Keyed) -> None:
    url = keyed.server.url
    # Probes of a load balancer or Kubernetes carry no key.
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert requests.get(f"{url}{path}", timeout=TIMEOUT).status_code == 200
    for path in ("/v2", "/v2/models/scale", "/api/v1/keys", "/api/v1/audit", "/metrics"):
        response = requests.get(f"{url}{path}", timeout=TIMEOUT)
        assert response.status_code == 401, path
        assert response.json() == {
            "error": "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>"
        }
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="ferry"'
    # Plain HTTP: no Strict-Transport-Security (it belongs to TLS answers only).
    assert "Strict-Transport-Security" not in requests.get(f"{url}/v2/health/live", timeout=TIMEOUT).headers


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    """``name=value; HttpOnly; Max-Age=60`` as {"ferry_session": value, "httponly": "", "max-age": "60"}."""
    attributes = {}
    for part in set_cookie.split(";"):
        name, _, value = part.strip().partition("=")
        attributes[name if name == SESSION_COOKIE else name.lower()] = value
    return attributes


def sign_in(url: str, key: str, **kwargs: Any) -> dict[str, str]:
    """``POST /api/v1/session`` with ``key``: the attributes of the cookie it sets."""
    answer = requests.post(f"{url}/api/v1/session", headers=bearer(key), timeout=TIMEOUT, **kwargs)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    return cookie_attributes(answer.headers["Set-Cookie"])


def test_the_banners_login_url_signs_in_with_a_session_cookie(keyed: Keyed) -> None:
    url, admin = keyed.server.url, keyed.admin
    page = requests.get(f"{url}/login", timeout=TIMEOUT)  # the fragment never reaches the server
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Cache-Control"] == "no-store"
    script = re.search(r'<script src="([^"]+)"></script>', page.text)
    assert script is not None and requests.get(f"{url}{script[1]}", timeout=TIMEOUT).status_code == 200

    cookie = sign_in(url, admin)
    assert cookie[SESSION_COOKIE] == admin
    assert {"httponly", "path", "samesite", "max-age"} <= cookie.keys() and "secure" not in cookie  # plain HTTP
    assert (cookie["path"], cookie["samesite"].lower(), cookie["max-age"]) == ("/", "strict", str(12 * 3600))
    # A key that expires sooner makes a cookie that does too.
    _, brief = create_key(keyed, "brief", "read", "--expires", "1h")
    assert 3500 < int(sign_in(url, brief)["max-age"]) <= 3600

    session = {"Cookie": f"{SESSION_COOKIE}={admin}"}
    csrf = {**session, "X-Ferry-CSRF": "1"}
    assert list_keys(url, session).status_code == 200  # reads need the cookie only
    new_key = {"name": "from-a-browser", "scopes": ["read"]}
    refused = requests.post(f"{url}/api/v1/keys", json=new_key, headers=session, timeout=TIMEOUT)
    assert (refused.status_code, refused.json()) == (
        403,
        {"error": "a change made with the session cookie needs the X-Ferry-CSRF header"},
    )
    assert requests.post(f"{url}/api/v1/keys", json=new_key, headers=csrf, timeout=TIMEOUT).status_code == 201
    body = scale_request([1.0, 2.0, 3.0, 4.0])
    assert infer(url, "scale", body, session).status_code == 403  # inference is a POST too
    assert infer(url, "scale", body, csrf).status_code == 200
    # The cookie cannot sign in again by itself, and a header beats the cookie.
    again = requests.post(f"{url}/api/v1/session", headers=session, timeout=TIMEOUT)
    assert again.status_code == 401
    assert list_keys(url, {**session, "X-API-Key": "fy_not_a_key"}).status_code == 401

    refused = requests.delete(f"{url}/api/v1/session", headers=session, timeout=TIMEOUT)
    assert refused.status_code == 403  # another site's page cannot sign the user out
    signed_out = requests.delete(f"{url}/api/v1/session", headers=csrf, timeout=TIMEOUT)
    assert signed_out.status_code == 204
    cleared = cookie_attributes(signed_out.headers["Set-Cookie"])
    assert cleared[SESSION_COOKIE] in ("", '""') and cleared["max-age"] == "0"


# -- 2. tritonclient with keys ----------------------------------------------------------


@pytest.fixture(scope="module")
def triton(keyed: Keyed) -> Iterator[httpclient.InferenceServerClient]:
    client = httpclient.InferenceServerClient(url=keyed.server.address, network_timeout=TIMEOUT)
    yield client
    client.close()


def scale_inputs(binary: bool = True) -> tuple[list[httpclient.InferInput], np.ndarray]:
    x = np.array([[1.0, -2.5, 0.25, 1000.0]], dtype=np.float32)
    tensor = httpclient.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return [tensor], x


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_tritonclient_infers_with_a_key(
    triton: httpclient.InferenceServerClient, infer_key: str, header: str, binary: bool
) -> None:
    headers = bearer(infer_key) if header == "Authorization" else {"X-API-Key": infer_key}
    inputs, x = scale_inputs(binary)
    result = triton.infer("scale", inputs, headers=headers)
    np.testing.assert_array_equal(result.as_numpy("y"), x * np.float32(FACTOR))
    # An infer key may not read metadata: that is the read scope.
    with pytest.raises(InferenceServerException) as refused:
        triton.get_model_metadata("scale", headers=headers)
    assert refused.value.status() == "403"


def test_tritonclient_without_a_key_gets_401(triton: httpclient.InferenceServerClient, keyed: Keyed) -> None:
    # Health is open: a client can see the server is up before it has a key.
    assert triton.is_server_ready()
    inputs, _ = scale_inputs()
    with pytest.raises(InferenceServerException) as missing:
        triton.infer("scale", inputs)
    assert missing.value.status() == "401"
    assert "an API key is required" in str(missing.value.message())

    # A well-formed key with the admin key's id and a wrong secret.
    forged = f"fy_{keyed.admin.split('_')[1]}_{'A' * 43}"
    for headers in (bearer(forged), {"X-API-Key": "not-a-key"}, {"Authorization": f"Basic {keyed.admin}"}):
        with pytest.raises(InferenceServerException) as invalid:
            triton.infer("scale", inputs, headers=headers)
        assert invalid.value.status() == "401", headers


def test_tritonclient_with_a_read_key_gets_403_on_infer(
    triton: httpclient.InferenceServerClient, read_key: str
) -> None:
    assert triton.get_model_metadata("scale", headers=bearer(read_key))["name"] == "scale"
    inputs, _ = scale_inputs()
    with pytest.raises(InferenceServerException) as refused:
        triton.infer("scale", inputs, headers={"X-API-Key": read_key})
    assert refused.value.status() == "403"
    assert refused.value.message() == "this key lacks the 'infer' scope"


# -- 3. TLS ---------------------------------------------------------------------------


@dataclass
class Tls:
    ca: Path  # the CA's certificate, for clients that trust it
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert(HOST)
    files = Tls(root / "ca.pem", root / "server.pem", root / "server.key")
    ca.cert_pem.write_to_path(str(files.ca))
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(files.cert), append=True)
    issued.private_key_pem.write_to_path(str(files.key))
    return files


def start_tls(root: Path, tls: Tls) -> Keyed:
    """Like ``start_keyed`` over HTTPS. tests/e2e/server.py polls http://, so the process
    is started here and polled over https with a client that trusts the test CA."""
    port, grpc_port = free_port(), free_port()
    data_dir = root / "data"
    command = [
        *ferry_command(),
        "serve",
        *map(str, model_files(root)),
        "--host",
        HOST,
        "--port",
        str(port),
        "--grpc-port",
        str(grpc_port),
        "--data-dir",
        str(data_dir),
        "--ssl-certfile",
        str(tls.cert),
        "--ssl-keyfile",
        str(tls.key),
    ]
    log_path = root / "tls.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=server_env())
    server = Server(process, port, log_path, time.monotonic(), grpc_port=grpc_port)
    try:
        eventually(lambda: https_ready(server, tls), TIMEOUT)
    except BaseException:
        process.kill()
        process.wait(5)
        raise AssertionError(f"ferry did not get ready over https\n{server.log()}") from None
    return Keyed(server, data_dir, banner_key(server))


def server_env() -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("FERRY_")}, "PYTHONUNBUFFERED": "1"}


def https_url(server: Server) -> str:
    return f"https://{HOST}:{server.port}"


def https_ready(server: Server, tls: Tls) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"ferry exited with {server.process.returncode}\n{server.log()}")
    try:
        return requests.get(f"{https_url(server)}/v2/health/ready", verify=str(tls.ca), timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_tls(tmp_path: Path, tls: Tls) -> None:
    keyed = start_tls(tmp_path, tls)
    url = https_url(keyed.server)
    try:
        # The banner's login URL is an https one.
        assert f"Web app:  {url}/login#key={keyed.admin}" in banner_lines(keyed.server.log(), keyed.admin)

        keys = list_keys(url, bearer(keyed.admin), verify=str(tls.ca))
        assert keys.status_code == 200, keys.text
        assert keys.headers["Strict-Transport-Security"] == "max-age=31536000"
        answer = infer(url, "scale", scale_request([1.0, 2.0, 3.0, 4.0]), bearer(keyed.admin), verify=str(tls.ca))
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [3.0, 6.0, 9.0, 12.0]
        assert "Strict-Transport-Security" in answer.headers  # the inference endpoints too
        refused = list_keys(url, {}, verify=str(tls.ca))
        assert refused.status_code == 401
        assert "Strict-Transport-Security" in refused.headers
        assert "secure" in sign_in(url, keyed.admin, verify=str(tls.ca))  # the cookie goes over HTTPS only

        # Plain HTTP to the TLS port is not served: the handshake fails and the connection
        # is dropped, so a client that forgot https:// finds out at once.
        with pytest.raises(requests.ConnectionError):
            list_keys(keyed.server.url, bearer(keyed.admin))
        # A client that trusts another CA refuses the server's certificate.
        other_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other_ca))
        with pytest.raises(requests.exceptions.SSLError):
            list_keys(url, bearer(keyed.admin), verify=str(other_ca))

        # The CLI over https: it trusts what SSL_CERT_FILE names, and nothing else.
        listed = ok("keys", url=url, key=keyed.admin, SSL_CERT_FILE=str(tls.ca))
        assert [row["NAME"] for row in table_rows(listed.out)] == ["admin"]
        untrusted = ferry("keys", url=url, key=keyed.admin)
        assert untrusted.code == 1, untrusted
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.err, untrusted
    finally:
        # Killed, not stopped: under TLS a SIGTERM can take uvicorn's full 30 s graceful
        # timeout (test_tls_stops_promptly_with_an_idle_client, below).
        kill(keyed.server)


def test_keys_and_tls_over_grpc(tmp_path: Path, tls: Tls) -> None:
    """The gRPC port takes the same TLS files and keys as HTTPS: keys from
    ``authorization: Bearer`` or ``x-api-key`` metadata, refusals as gRPC codes, load and
    unload audited, health open to anyone."""
    keyed = start_tls(tmp_path, tls)
    try:
        credentials = grpc.ssl_channel_credentials(tls.ca.read_bytes())
        client = stub(keyed.server.grpc_address, credentials)
        url = https_url(keyed.server)
        environment = {"SSL_CERT_FILE": str(tls.ca)}
        infer_id, infer_key = key_of(
            ok("keys", "create", "--name", "app", "--scopes", "infer", url=url, key=keyed.admin, **environment).out
        )
        _, read_key = key_of(
            ok("keys", "create", "--name", "ro", "--scopes", "read", url=url, key=keyed.admin, **environment).out
        )
        slow = ["--name", "slow", "--scopes", "infer", "--rate", "1/m"]
        _, slow_key = key_of(ok("keys", "create", *slow, url=url, key=keyed.admin, **environment).out)
        request = pb.ModelInferRequest(model_name="scale")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 2, 3, 4])

        def code(metadata: tuple[tuple[str, str], ...], call: str = "ModelInfer", message: object = request) -> object:
            try:
                getattr(client, call)(message, metadata=metadata, timeout=TIMEOUT)
            except grpc.RpcError as exc:
                return exc.code(), exc.details()
            return "ok"

        answer = client.ModelInfer(request, metadata=(("authorization", f"Bearer {infer_key}"),), timeout=TIMEOUT)
        assert list(answer.outputs[0].contents.fp32_contents) == [3.0, 6.0, 9.0, 12.0]
        assert code((("x-api-key", infer_key),)) == "ok"
        missing = code(())
        assert missing[0] == grpc.StatusCode.UNAUTHENTICATED and "API key is required" in missing[1]
        assert code((("authorization", "Bearer fy_nope_nope"),))[0] == grpc.StatusCode.UNAUTHENTICATED
        denied = code((("x-api-key", read_key),))
        assert denied == (grpc.StatusCode.PERMISSION_DENIED, "this key lacks the 'infer' scope")
        assert code((("x-api-key", slow_key),)) == "ok"
        limited = code((("x-api-key", slow_key),))
        assert limited[0] == grpc.StatusCode.RESOURCE_EXHAUSTED and "rate limit" in limited[1]
        # Metadata is read-scoped; load/unload deploy-scoped, and audited.
        assert code((("x-api-key", read_key),), "ModelMetadata", pb.ModelMetadataRequest(name="scale")) == "ok"
        unload = pb.RepositoryModelUnloadRequest(model_name="scale")
        assert (
            code((("x-api-key", infer_key),), "RepositoryModelUnload", unload)[0] == grpc.StatusCode.PERMISSION_DENIED
        )
        assert code((("x-api-key", keyed.admin),), "RepositoryModelUnload", unload) == "ok"
        assert code((("x-api-key", infer_key),))[0] == grpc.StatusCode.NOT_FOUND  # unloaded
        load = pb.RepositoryModelLoadRequest(model_name="scale")
        assert code((("x-api-key", keyed.admin),), "RepositoryModelLoad", load) == "ok"
        assert code((("x-api-key", infer_key),)) == "ok"

        def repository_actions() -> list[tuple[str, str, str]] | None:
            listed = table_rows(ok("audit", "--target", "scale", url=url, key=keyed.admin, **environment).out)
            rows = [(r["KEY"], r["ACTION"], r["RESULT"]) for r in listed if r["ACTION"].startswith("repository_")]
            return rows if len(rows) >= 3 else None

        admin_id = keyed.admin.split("_")[1]
        assert eventually(repository_actions) == [  # newest first
            (f"admin ({admin_id})", "repository_load", "ok"),
            (f"admin ({admin_id})", "repository_unload", "ok"),
            (f"app ({infer_id})", "repository_unload", "denied"),
        ]
        # Health is open, like /v2/health/*; plain-text gRPC to the TLS port is refused.
        with grpc.secure_channel(keyed.server.grpc_address, credentials) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError):
            stub(keyed.server.grpc_address).ServerLive(pb.ServerLiveRequest(), timeout=5)
    finally:
        kill(keyed.server)


def kill(server: Server) -> None:
    server.process.kill()
    server.process.wait(5)


def test_tls_stops_promptly_with_an_idle_client(tmp_path: Path, tls: Tls) -> None:
    keyed = start_tls(tmp_path, tls)
    try:
        with requests.Session() as client:  # keeps its connection open, idle, as pools do
            live = client.get(f"{https_url(keyed.server)}/v2/health/live", verify=str(tls.ca), timeout=TIMEOUT)
            assert live.status_code == 200
            keyed.server.process.send_signal(signal.SIGTERM)
            try:
                code = keyed.server.process.wait(STOP_BOUND_S)
            except subprocess.TimeoutExpired:
                code = None
        assert code == 0, f"ferry did not exit within {STOP_BOUND_S}s of SIGTERM"
    finally:
        kill(keyed.server)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--ssl-certfile", "{cert}"], "TLS needs both --ssl-certfile and --ssl-keyfile"),
        (["--ssl-keyfile", "{key}"], "TLS needs both --ssl-certfile and --ssl-keyfile"),
        (["--ssl-certfile", "{missing}", "--ssl-keyfile", "{key}"], "{missing}: no such file"),
    ],
    ids=["cert-only", "key-only", "missing-cert"],
)
def test_tls_settings_that_cannot_work_exit_with_2(tmp_path: Path, tls: Tls, flags: list[str], message: str) -> None:
    paths = {"cert": str(tls.cert), "key": str(tls.key), "missing": str(tmp_path / "missing.pem")}
    port = free_port()
    argv = ["serve", *map(str, model_files(tmp_path)), "--port", str(port), "--data-dir", str(tmp_path / "data")]
    result = ferry(*argv, *[flag.format(**paths) for flag in flags])
    assert result.code == 2, result
    assert result.err == f"ferry: {message.format(**paths)}\n"
    assert not (tmp_path / "data").exists()  # refused before anything was opened


# -- 4. --no-auth ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flags", "environment"])
def test_no_auth_off_loopback_is_refused_before_binding(tmp_path: Path, how: str) -> None:
    # The port is held, listening, on every address: a server that tried to bind would
    # fail with "address already in use", not with the refusal.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = str(held.getsockname()[1])
        models = [str(p) for p in model_files(tmp_path)]
        if how == "flags":
            result = ferry("serve", *models, "--no-auth", "--host", "0.0.0.0", "--port", port)
        else:
            result = ferry("serve", *models, "--port", port, FERRY_AUTH="false", FERRY_HOST="0.0.0.0")
    assert result.code == 2, result
    assert result.err.startswith("ferry: refusing to run without API keys on 0.0.0.0"), result
    assert "127.0.0.1" in result.err
    assert "address already in use" not in result.err.lower()
    assert "Uvicorn running" not in result.out + result.err


def test_no_auth_on_loopback_serves_without_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start(model_files(tmp_path), tmp_path / "open.log", "--data-dir", str(data_dir))  # --no-auth
    try:
        answer = infer(server.url, "scale", scale_request([1.0, 2.0, 3.0, 4.0]), {})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == [3.0, 6.0, 9.0, 12.0]
        assert requests.get(f"{server.url}/v2/models/scale", timeout=TIMEOUT).status_code == 200
        # There are no keys to manage, and a header with junk in it changes nothing.
        assert list_keys(server.url, {}).json() == {"error": "this server runs without API keys"}
        assert infer(server.url, "scale", scale_request([1.0, 2.0, 3.0, 4.0]), bearer("junk")).status_code == 200
        assert KEY.search(server.log()) is None
        assert not data_dir.exists()  # no keys: no database
    finally:
        assert server.terminate() == 0


# -- 5. nothing secret in the log ------------------------------------------------------

MARKER_TEXT = "ferry-marker-7f3a9c"
MARKER_NUMBER = 1234.5678


def test_no_key_or_payload_in_the_log(tmp_path: Path) -> None:
    keyed = start_keyed(tmp_path, "logged", "--access-log", "--log-level", "debug")
    url, admin = keyed.server.url, keyed.admin
    try:
        _, app = create_key(keyed, "logged-app", "infer")
        _, reader = create_key(keyed, "logged-reader", "read")
        revoked_id, revoked = create_key(keyed, "logged-revoked", "infer")
        ok("keys", "revoke", revoked_id, url=url, key=admin)
        forged = f"fy_{admin.split('_')[1]}_{'B' * 43}"  # the admin key's id, a wrong secret
        malformed = f"fy_{MARKER_TEXT}-not-a-key"

        assert list_keys(url, bearer(admin)).status_code == 200
        assert list_keys(url, {"X-API-Key": admin}).status_code == 200
        for headers in (bearer(app), {"X-API-Key": app}):
            echoed = infer(url, "echo", echo_request(MARKER_TEXT), headers)
            assert echoed.json()["outputs"][0]["data"] == [MARKER_TEXT]
            scaled = infer(url, "scale", scale_request([MARKER_NUMBER, 1.0, 2.0, 3.0]), headers)
            assert scaled.status_code == 200, scaled.text
        # The marker in a binary tensor, through tritonclient.
        client = httpclient.InferenceServerClient(url=keyed.server.address, network_timeout=TIMEOUT)
        try:
            tensor = httpclient.InferInput("INPUT0", [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[MARKER_TEXT.encode()]], dtype=object), binary_data=True)
            client.infer("echo", [tensor], headers={"X-API-Key": app})
        finally:
            client.close()
        # The browser's way: a session cookie holding the key.
        assert sign_in(url, app)[SESSION_COOKIE] == app
        cookie = {"Cookie": f"{SESSION_COOKIE}={app}", "X-Ferry-CSRF": "1"}
        assert infer(url, "echo", echo_request(MARKER_TEXT), cookie).status_code == 200
        # Refusals carrying keys and payloads: a wrong datatype, a read key, bad keys.
        assert infer(url, "scale", scale_request([MARKER_TEXT, 1.0, 2.0, 3.0]), bearer(app)).status_code == 400
        assert infer(url, "echo", echo_request(MARKER_TEXT), bearer(reader)).status_code == 403
        bad_cookie = {"Cookie": f"{SESSION_COOKIE}={forged}", "X-Ferry-CSRF": "1"}
        for headers in (
            bearer(forged),
            {"X-API-Key": malformed},
            bearer(revoked),
            {"Authorization": "Basic x"},
            bad_cookie,
        ):
            assert infer(url, "echo", echo_request(MARKER_TEXT), headers).status_code == 401, headers
            assert list_keys(url, headers).status_code == 401, headers
        ok("audit", url=url, key=admin)
    finally:
        assert keyed.server.terminate() == 0

    lines = keyed.server.log().splitlines()
    # Make sure the log was as chatty as asked: debug lines and one line per request (JSON
    # lines: the log is a file, not a terminal).
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert any(r["level"] == "DEBUG" for r in records)
    access = {(r.get("method"), r.get("path"), r.get("status")) for r in records if r["logger"] == "ferry.access"}
    assert ("POST", "/v2/models/echo/infer", 200) in access
    assert ("GET", "/api/v1/keys", 401) in access

    # The first-start banner (on stdout) is the one place a key is ever shown.
    shown = [i for i, line in enumerate(lines) if admin in line]
    assert [lines[i].strip() for i in shown] == [
        admin,
        f"Web app:  {url}/login#key={admin}",
        f"CLI:      export FERRY_API_KEY={admin}",
    ]
    assert shown[-1] - shown[0] <= 3  # one block: the key, a blank line, the URL, the export
    secrets = [admin, app, reader, revoked, forged, malformed]
    secrets += [secret_of(key) for key in (admin, app, reader, revoked)]
    for number, line in enumerate(lines):
        if number in shown:
            continue
        leaked = [s for s in secrets if s in line]
        assert not leaked, f"log line {number} holds a key: {line!r}"
        assert MARKER_TEXT not in line, f"log line {number} holds a payload: {line!r}"
        assert str(MARKER_NUMBER) not in line, f"log line {number} holds a payload: {line!r}"
        for header in ("authorization", "bearer", "x-api-key", SESSION_COOKIE):
            assert header not in line.lower(), f"log line {number} mentions {header}: {line!r}"


# -- 6. ferry keys and ferry audit ------------------------------------------------------


def test_keys_create_list_limit_and_revoke(keyed: Keyed) -> None:
    url, admin = keyed.server.url, keyed.admin
    created = ok(
        "keys", "create", "--name", "limited", "--scopes", "infer", "--rate", "5/s", "--expires", "1d",
        "--models", "scale", url=url, key=admin,
    )  # fmt: skip
    key_id, key = key_of(created.out)
    assert created.out.startswith(f"created key {key_id} (limited; scopes infer).")

    listed = ok("keys", url=url, key=admin)
    assert KEY.search(listed.out) is None and secret_of(key) not in listed.out  # never the secret
    rows = {row["ID"]: row for row in table_rows(listed.out)}
    row = rows[key_id]
    assert (row["NAME"], row["SCOPES"], row["MODELS"], row["RATE"], row["STATE"]) == (
        "limited",
        "infer",
        "scale",
        "5/s",
        "active",
    )
    expires = datetime.strptime(row["EXPIRES"], "%Y-%m-%d %H:%M:%S")  # local time
    assert abs(expires - (datetime.now() + timedelta(days=1))) < timedelta(minutes=5)
    assert KEY.search(ok("keys", "--json", url=url, key=admin).out) is None

    # The key works on its model only, and at its rate only.
    body = scale_request([1.0, 2.0, 3.0, 4.0])
    assert infer(url, "scale", body, bearer(key)).status_code == 200
    other = infer(url, "echo", echo_request("hi"), bearer(key))
    assert (other.status_code, other.json()) == (403, {"error": "this key may not use model 'echo'"})
    with requests.Session() as session:
        statuses = [
            session.post(f"{url}/v2/models/scale/infer", json=body, headers=bearer(key), timeout=TIMEOUT)
            for _ in range(20)
        ]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert {r.status_code for r in statuses} == {200, 429}
    assert int(limited[0].headers["Retry-After"]) >= 1

    revoked = ok("keys", "revoke", key_id, url=url, key=admin)
    assert revoked.out == f"revoked key {key_id} (limited)\n"
    # At once, and before the rate is looked at: an empty bucket would say 429.
    answer = infer(url, "scale", body, bearer(key))
    assert (answer.status_code, answer.json()) == (401, {"error": "this API key has been revoked"})
    assert {row["ID"]: row for row in table_rows(ok("keys", url=url, key=admin).out)}[key_id]["STATE"] == "revoked"


def test_keys_create_refuses_bad_arguments(keyed: Keyed) -> None:
    for extra, message in (
        (["--scopes", "root"], "unknown scope root"),
        (["--scopes", "infer", "--rate", "fast"], "invalid rate 'fast'"),
        (["--scopes", "infer", "--expires", "someday"], "invalid expiry 'someday'"),
    ):
        result = ferry("keys", "create", "--name", "bad", *extra, url=keyed.server.url, key=keyed.admin)
        assert result.code == 1, result
        assert message in result.err and "(HTTP 400)" in result.err, result
    listed = ok("keys", url=keyed.server.url, key=keyed.admin)
    assert "bad" not in [row["NAME"] for row in table_rows(listed.out)]


def test_audit_shows_key_changes_and_refusals(keyed: Keyed, infer_key: str) -> None:
    url, admin = keyed.server.url, keyed.admin
    admin_id = admin.split("_")[1]
    key_id, _ = create_key(keyed, "audited", "read")
    ok("keys", "revoke", key_id, url=url, key=admin)

    def changes() -> list[tuple[str, str, str, str]] | None:
        rows = [(r["KEY"], r["ACTION"], r["RESULT"], r["STATUS"]) for r in audit_rows(keyed) if r["TARGET"] == key_id]
        return rows if len(rows) == 2 else None

    # Newest first.
    assert eventually(changes) == [
        (f"admin ({admin_id})", "revoke_key", "ok", "200"),
        (f"admin ({admin_id})", "create_key", "ok", "201"),
    ]

    # Refused attempts at admin routes: an infer key, and no key at all.
    forbidden = ferry("keys", url=url, key=infer_key)
    assert forbidden.code == 1 and "(HTTP 403)" in forbidden.err, forbidden
    missing = ferry("keys", url=url)
    assert missing.code == 1, missing
    assert missing.out == ""
    assert missing.err == (
        "ferry: an API key is required: send Authorization: Bearer <key> or X-API-Key: <key> (HTTP 401)\n"
    )
    infer_id = infer_key.split("_")[1]

    def refusals() -> set[tuple[str, str, str]] | None:
        rows = audit_rows(keyed, "--result", "denied")
        assert {row["RESULT"] for row in rows} <= {"denied"}
        found = {(r["KEY"], r["ACTION"], r["STATUS"]) for r in rows}
        return found if (f"app ({infer_id})", "list_keys", "403") in found else None

    found = eventually(refusals)
    # Without a valid key, a refusal is counted in the metrics, not written down: anyone
    # could fill the table with them.
    assert ("-", "list_keys", "401") not in found


def test_a_flood_of_refusals_is_counted_exactly_through_sigterm(tmp_path: Path) -> None:
    """Repeated refusals by one key are one row with their count; the repeats still being
    counted when SIGTERM comes are written before the process exits."""
    from ferry.registry import connect, default_url
    from ferry.registry.keys import KeyStore

    keyed = start_keyed(tmp_path, "flood", "--audit-window-s", "3600")
    n = 200
    try:
        _, infer_key = create_key(keyed, "flooder", "infer")
        with requests.Session() as session:
            for _ in range(n):
                answer = session.get(f"{keyed.server.url}/api/v1/keys", headers=bearer(infer_key), timeout=TIMEOUT)
                assert answer.status_code == 403
    finally:
        assert keyed.server.terminate() == 0
    engine = connect(default_url(keyed.data_dir))
    try:
        rows = [e for e in KeyStore(engine).audit(limit=1000) if e.action == "list_keys"]
    finally:
        engine.dispose()
    assert [(e.key_name, e.result, e.count) for e in rows] == [("flooder", "denied", n - 1), ("flooder", "denied", 1)]


def test_keys_without_an_api_key_exit_with_1(keyed: Keyed) -> None:
    for argv in (["keys"], ["keys", "create", "--name", "x", "--scopes", "read"], ["audit"]):
        result = ferry(*argv, url=keyed.server.url)
        assert result.code == 1, result
        assert result.out == ""
        assert result.err.startswith("ferry: an API key is required") and result.err.endswith("(HTTP 401)\n")


def test_rescue_key_in_a_stopped_servers_data_dir(tmp_path: Path) -> None:
    keyed = start_keyed(tmp_path, "rescued")
    assert keyed.server.terminate() == 0

    # Every admin key lost: make one straight in the database, no server needed.
    data_dir = str(keyed.data_dir)
    created = ok("keys", "--data-dir", data_dir, "create", "--name", "rescue", "--scopes", "admin")
    rescue_id, rescue = key_of(created.out)
    listed = table_rows(ok("keys", "--data-dir", data_dir).out)
    assert [(row["NAME"], row["SCOPES"], row["STATE"]) for row in listed] == [
        ("admin", "admin", "active"),
        ("rescue", "admin", "active"),
    ]

    again = start(model_files(tmp_path), tmp_path / "again.log", "--data-dir", data_dir, auth=True)
    try:
        assert KEY.search(again.log()) is None  # the directory has keys: no first key
        keys = list_keys(again.url, bearer(rescue))
        assert keys.status_code == 200, keys.text
        assert {k["id"]: k["created_by"] for k in keys.json()}[rescue_id] == "ferry keys --data-dir"
        # The rescue key can do what an admin does: revoke the old admin key, say.
        old_admin = keyed.admin.split("_")[1]
        ok("keys", "revoke", old_admin, url=again.url, key=rescue)
        assert list_keys(again.url, bearer(keyed.admin)).status_code == 401
        # The offline creation is in the audit trail, by the command, not by a key.
        trail = ok("audit", "--json", "--action", "create_key", url=again.url, key=rescue)
        offline = [e for e in json.loads(trail.out) if e["target"] == rescue_id]
        assert offline and offline[0]["key_name"] == "ferry keys --data-dir" and offline[0]["key_id"] is None
    finally:
        assert again.terminate() == 0

    # A mistyped directory is refused: it must not get a new, empty database.
    typo = ferry("keys", "--data-dir", str(tmp_path / "no-such-dir"), "create", "--name", "x", "--scopes", "admin")
    assert typo.code == 1 and "no Ferry database here" in typo.err
    assert not (tmp_path / "no-such-dir").exists()


# -- the bootstrap admin key (clusters) -------------------------------------------------


def test_a_bootstrap_admin_key_is_the_first_admin_key_and_is_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = ok("keys", "generate").out.strip()
    assert split(text) is not None
    secret = tmp_path / "secret" / "admin-key"  # as Kubernetes mounts a Secret's key
    secret.parent.mkdir()
    secret.write_text(text + "\n")
    monkeypatch.setenv("FERRY_BOOTSTRAP_ADMIN_KEY_FILE", str(secret))
    server = start_command(["server", "--data-dir", str(tmp_path / "data")], tmp_path / "server.log", auth=True)
    try:
        listed = requests.get(f"{server.url}/api/v1/keys", headers={"X-API-Key": text}, timeout=TIMEOUT)
        assert listed.status_code == 200, listed.text
        assert [(k["name"], k["scopes"], k["created_by"]) for k in listed.json()] == [
            ("admin", ["admin"], "FERRY_BOOTSTRAP_ADMIN_KEY")
        ]
        assert text not in server.log() and "shown this once" not in server.log()
    finally:
        assert server.terminate() == 0
    # A later start with another bootstrap key on the same database changes nothing.
    other = ok("keys", "generate").out.strip()
    monkeypatch.setenv("FERRY_BOOTSTRAP_ADMIN_KEY_FILE", str(secret.with_name("other")))
    secret.with_name("other").write_text(other)
    server = start_command(["server", "--data-dir", str(tmp_path / "data")], tmp_path / "again.log", auth=True)
    try:
        refused = requests.get(f"{server.url}/api/v1/keys", headers={"X-API-Key": other}, timeout=TIMEOUT)
        assert refused.status_code == 401
        assert requests.get(f"{server.url}/api/v1/keys", headers={"X-API-Key": text}, timeout=TIMEOUT).ok
    finally:
        assert server.terminate() == 0


def test_a_bootstrap_admin_key_that_is_no_key_exits_with_2_without_echoing_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    argv = ["server", "--data-dir", str(data), "--port", str(free_port()), "--grpc-port", "0"]
    result = ferry(*argv, FERRY_BOOTSTRAP_ADMIN_KEY="hunter2-hunter2")
    assert result.code == 2, result
    assert "the bootstrap admin key is not a Ferry key" in result.err and "hunter2" not in result.err, result
    assert not data.exists()


# -- rate limits shared by nodes through Redis -----------------------------------------


def _redis_or_skip() -> None:
    client = reachable_redis()
    try:
        for key in client.scan_iter("ferry:rate:*"):
            client.delete(key)
    finally:
        client.close()


def _admitted(urls: list[str], key: str, seconds: float) -> tuple[int, float]:
    """Requests answered 200 by the nodes, taken in turns as fast as they answer, and the
    seconds it took."""
    started = time.monotonic()
    admitted = 0
    body = scale_request([1.0, 2.0, 3.0, 4.0])
    with requests.Session() as session:
        while time.monotonic() - started < seconds:
            for url in urls:
                answer = session.post(f"{url}/v2/models/scale/infer", json=body, headers=bearer(key), timeout=TIMEOUT)
                assert answer.status_code in (200, 429), answer.text
                admitted += answer.status_code == 200
    return admitted, time.monotonic() - started


def test_two_nodes_on_one_redis_hold_a_keys_rate_together(tmp_path: Path) -> None:
    _redis_or_skip()
    first = start_keyed(tmp_path, "node", "--redis-url", REDIS_URL)
    try:
        _, key = create_key(first, "steady", "infer", "--rate", "10/s")
        # The second node: the same data directory (keys), the same Redis.
        second = start(model_files(tmp_path), tmp_path / "node2.log", "--data-dir", str(first.data_dir),
                       "--redis-url", REDIS_URL, auth=True)  # fmt: skip
        try:
            body = scale_request([1.0, 2.0, 3.0, 4.0])
            eventually(lambda: infer(second.url, "scale", body, bearer(key)).status_code == 200 or None)
            time.sleep(1.1)  # the bucket refills to its 10 before the count starts
            admitted, elapsed = _admitted([first.server.url, second.url], key, 3.0)
        finally:
            second.terminate()
    finally:
        first.server.terminate()
    # One bucket of 10, refilled at 10/s: at most 10 + 10 per second between them.
    # Each node on its own would have let through about twice that.
    assert 10 <= admitted <= 10 + 10 * elapsed + 2, (admitted, elapsed)
