"""The ``ferry serve`` process itself: what it makes of an untidy repository, how it
stops on SIGTERM, how fast a single model file becomes ready, and its exit codes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from ferry.grpc.protos import grpc_service_pb2 as pb
from tests.builders import add_sub_onnx, identity_onnx, python_model, shape_driven_onnx
from tests.e2e.grpc_clients import stub
from tests.e2e.server import HOST, Server, ferry_command, free_port, running, start, wait_ready

TIMEOUT = 30
# A liveness bound, not a performance claim: DESIGN.md aims at about two seconds.
STARTUP_BOUND_S = 15.0


def identity_request(values: list[float]) -> dict[str, Any]:
    return {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, len(values)], "data": values}]}


# -- an untidy repository -------------------------------------------------------------


@pytest.fixture(scope="module")
def untidy_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("untidy")
    identity_onnx(root / "good" / "1" / "model.onnx", "FP32")
    (root / "README.txt").write_text("not a model\n")
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "notes.md").write_text("# notes\n")
    (root / "junk" / "data.csv").write_text("a,b\n1,2\n")
    (root / "noversion" / "1").mkdir(parents=True)
    (root / "noversion" / "1" / "readme.txt").write_text("no model file here\n")
    (root / ".hidden" / "1").mkdir(parents=True)
    identity_onnx(root / ".hidden" / "1" / "model.onnx", "FP32")
    (root / "broken" / "1").mkdir(parents=True)
    (root / "broken" / "1" / "model.onnx").write_bytes(b"this is not an ONNX protobuf \x00\xff" * 10)
    (root / "loose.onnx").write_bytes(b"\x08\x07garbage")
    return root


@pytest.fixture(scope="module")
def untidy(untidy_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("logs") / "untidy.log"
    with running([untidy_repo], log, "--ready-despite-failures") as srv:
        yield srv


def test_a_failed_model_keeps_the_server_unready_unless_allowed(untidy_repo: Path, tmp_path: Path) -> None:
    """Kubernetes must not send traffic to a server missing a model: by default a model
    that failed to load keeps /v2/health/ready (and gRPC ServerReady) at not ready."""
    port, grpc_port = free_port(), free_port()
    command = [*ferry_command(), "serve", str(untidy_repo), "--no-auth", "--port", str(port)]
    log_path = tmp_path / "strict.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([*command, "--grpc-port", str(grpc_port)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
                if answer.status_code == 503 and answer.json()["error"].startswith("failed to load"):
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert "broken version 1" in answer.json()["error"] and answer.headers["retry-after"] == "1"
        assert requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=2).json() == {"live": True}
        good = requests.get(f"http://127.0.0.1:{port}/v2/models/good/ready", timeout=2)
        assert good.json() == {"name": "good", "ready": True}  # the rest still serves
        ready = stub(f"127.0.0.1:{grpc_port}").ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT)
        assert ready.ready is False
    finally:
        process.terminate()
        assert process.wait(TIMEOUT) == 0


def test_a_path_with_no_model_exits_2(tmp_path: Path) -> None:
    keras = tmp_path / "model.h5"
    keras.write_bytes(b"HDF5 weights")
    result = subprocess.run(
        [*ferry_command(), "serve", str(keras), "--port", "0"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 2, result
    assert f"ferry: no model found in {keras}" in result.stderr
    assert ".onnx" in result.stderr  # says what it can serve


def test_untidy_repository_serves_its_good_model(untidy: Server) -> None:
    assert untidy.alive()
    response = requests.post(f"{untidy.url}/v2/models/good/infer", json=identity_request([1, 2]), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [1.0, 2.0]


def test_non_models_are_ignored_with_a_log_line(untidy: Server, untidy_repo: Path) -> None:
    index = requests.post(f"{untidy.url}/v2/repository/index", timeout=TIMEOUT).json()
    assert {e["name"] for e in index} == {"good", "broken", "loose"}
    log = untidy.log()
    for ignored in ("README.txt", "empty", "junk", "noversion"):
        lines = [line for line in log.splitlines() if "ignoring" in line and str(untidy_repo / ignored) in line]
        assert lines, f"no log line says {ignored} was ignored:\n{log}"
    assert ".hidden" not in {e["name"] for e in index}
    assert "Traceback" not in log


def test_corrupt_onnx_is_unavailable_with_a_reason(untidy: Server) -> None:
    index = {e["name"]: e for e in requests.post(f"{untidy.url}/v2/repository/index", timeout=TIMEOUT).json()}
    assert index["good"]["state"] == "READY"
    assert "onnxruntime cannot load model.onnx" in index["broken"]["reason"]
    assert "onnxruntime cannot load loose.onnx" in index["loose"]["reason"]
    for name in ("broken", "loose"):
        assert index[name]["state"] == "UNAVAILABLE", index[name]
        assert index[name]["version"] == "1"
        # The reason reaches clients too, with 503 and Retry-After.
        response = requests.post(f"{untidy.url}/v2/models/{name}/infer", json=identity_request([1]), timeout=TIMEOUT)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert "onnxruntime cannot load" in response.json()["error"]


def test_corrupt_model_through_tritonclient(untidy: Server) -> None:
    client = httpclient.InferenceServerClient(url=untidy.address)
    try:
        assert client.is_server_ready()
        assert not client.is_model_ready("broken")
        assert client.is_model_ready("good")
        with pytest.raises(InferenceServerException) as info:
            client.load_model("broken")
        assert info.value.status() == "400"
        assert "onnxruntime cannot load" in (info.value.message() or "")
        # A failed load takes nothing else down.
        assert client.is_model_ready("good")
    finally:
        client.close()
    assert untidy.alive()


# -- SIGTERM with requests in flight ----------------------------------------------------

SLOW_MODEL = """
import time
import uuid
from pathlib import Path

import numpy as np

import ferry
from ferry.signature import TensorSpec

STARTED = Path({started!r})


class Slow(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs):
        # Tell the test this request is inside the model, then take a while.
        (STARTED / uuid.uuid4().hex).touch()
        time.sleep(0.5)
        return {{"y": inputs["x"] + 1}}
"""
IN_FLIGHT = 3


def slow_repo(root: Path, started: Path) -> Path:
    started.mkdir(parents=True)
    python_model(root / "slow" / "1", SLOW_MODEL.format(started=str(started)))
    # One instance per request, so all of them are inside predict() at once.
    (root / "slow" / "config.yaml").write_text(f"instances: {IN_FLIGHT}\nwarmup: false\n")
    return root


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    started = tmp_path / "started"
    repo = slow_repo(tmp_path / "repo", started)
    server = start([repo], tmp_path / "server.log")
    try:

        def call(i: int) -> requests.Response:
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [i, 10 * i]}]}
            return requests.post(f"{server.url}/v2/models/slow/infer", json=body, timeout=TIMEOUT)

        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [pool.submit(call, i) for i in range(IN_FLIGHT)]
            deadline = time.monotonic() + 10
            while len(list(started.iterdir())) < IN_FLIGHT:
                assert time.monotonic() < deadline, f"requests never reached the model\n{server.log()}"
                time.sleep(0.01)
            server.process.send_signal(signal.SIGTERM)
            responses = [f.result() for f in futures]
        code = server.process.wait(STARTUP_BOUND_S)
    finally:
        server.terminate()
    for i, response in enumerate(responses):
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == [i + 1.0, 10.0 * i + 1.0]
    assert code == 0, server.log()
    assert "Application shutdown complete" in server.log()


# -- a single model file ----------------------------------------------------------------


@pytest.fixture(scope="module")
def single_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("single")
    model = add_sub_onnx(root / "my-adder.onnx")
    with running([model], root / "server.log") as srv:
        yield srv


def test_single_file_starts_quickly(single_file: Server, capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\n[e2e] ferry serve my-adder.onnx: ready after {single_file.ready_after_s:.2f} s")
    assert single_file.ready_after_s < STARTUP_BOUND_S


def test_single_file_is_named_after_its_stem_version_1(single_file: Server) -> None:
    url = single_file.url
    metadata = requests.get(f"{url}/v2/models/my-adder", timeout=TIMEOUT).json()
    assert metadata["name"] == "my-adder"
    assert metadata["versions"] == ["1"]
    index = requests.post(f"{url}/v2/repository/index", timeout=TIMEOUT).json()
    assert index == [{"name": "my-adder", "version": "1", "state": "READY", "reason": ""}]

    client = httpclient.InferenceServerClient(url=single_file.address)
    try:
        a = np.ones((1, 16), dtype=np.float32)
        inputs = []
        for name in ("INPUT0", "INPUT1"):
            tensor = httpclient.InferInput(name, [1, 16], "FP32")
            tensor.set_data_from_numpy(a)
            inputs.append(tensor)
        result = client.infer("my-adder", inputs, model_version="1")
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
        assert result.get_response()["model_version"] == "1"
        assert not client.is_model_ready("my-adder", model_version="2")
    finally:
        client.close()


# -- exit codes -------------------------------------------------------------------------


def test_no_existing_path_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*ferry_command(), "serve", str(tmp_path / "missing.onnx"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 2
    assert "none of the given paths exist" in result.stderr


def test_idle_server_exits_0_on_sigterm(tmp_path: Path) -> None:
    server = start([add_sub_onnx(tmp_path / "adder.onnx")], tmp_path / "server.log")
    assert server.terminate() == 0, server.log()
    assert "Application shutdown complete" in server.log()


# -- a client that leaves ---------------------------------------------------------------

RECORDING_MODEL = """
import time
from pathlib import Path

import ferry
from ferry.signature import TensorSpec

SEEN = Path({seen!r})


class Recording(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs):
        # One file per request computed, named after its first value.
        (SEEN / str(int(inputs["x"][0]))).touch()
        time.sleep(0.5)
        return {{"y": inputs["x"]}}
"""


def test_request_of_a_disconnected_client_is_never_computed(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    repo = tmp_path / "repo"
    python_model(repo / "recording" / "1", RECORDING_MODEL.format(seen=str(seen)))
    (repo / "recording" / "config.yaml").write_text("instances: 1\nmax_batch_size: 0\nwarmup: false\n")
    server = start([repo], tmp_path / "server.log")
    try:

        def call(value: int) -> requests.Response:
            body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [value]}]}
            return requests.post(f"{server.url}/v2/models/recording/infer", json=body, timeout=TIMEOUT)

        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(call, 1)
            deadline = time.monotonic() + 10
            while not (seen / "1").exists():
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.01)
            # While the model is busy with request 1, request 2 queues, and its client leaves.
            body = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":[2]}]}'
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                sock.sendall(
                    b"POST /v2/models/recording/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                time.sleep(0.1)
            assert first.result().status_code == 200
        # Request 3 is computed after request 1; request 2 never is.
        assert call(3).status_code == 200
        assert sorted(p.name for p in seen.iterdir()) == ["1", "3"]
        stats = requests.get(f"{server.url}/v2/models/recording/stats", timeout=TIMEOUT).json()
        assert stats["model_stats"][0]["execution_count"] == 2
    finally:
        server.terminate()


# -- migrations run once (ferry migrate), nodes wait for them ---------------------------


def test_a_node_started_with_no_migrate_waits_for_ferry_migrate(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        argv = ["server", "--data-dir", str(data), "--no-migrate", "--no-auth", "--host", HOST, "--port", str(port)]
        process = subprocess.Popen(
            [*ferry_command(), *argv, "--grpc-port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = Server(process, port, log, time.monotonic())
    try:
        deadline = time.monotonic() + 60
        while "waiting for `ferry migrate`" not in node.log():
            assert node.alive() and time.monotonic() < deadline, node.log()
            time.sleep(0.1)
        with pytest.raises(requests.ConnectionError):  # not listening before the schema is there
            requests.get(f"{node.url}/v2/health/live", timeout=5)
        migrated = subprocess.run(
            [*ferry_command(), "migrate", "--data-dir", str(data)], capture_output=True, text=True, timeout=120
        )
        assert migrated.returncode == 0, migrated
        assert "migrated from an empty database to schema" in migrated.stdout
        wait_ready(node, 60)
        again = subprocess.run(
            [*ferry_command(), "migrate", "--data-dir", str(data)], capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0 and "already at schema" in again.stdout, again
    finally:
        assert node.terminate() == 0


def test_a_node_whose_schema_never_comes_exits_with_2(tmp_path: Path) -> None:
    argv = ["server", "--data-dir", str(tmp_path / "data"), "--no-migrate", "--no-auth", "--port", str(free_port())]
    done = subprocess.run(
        [*ferry_command(), *argv, "--grpc-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FERRY_SCHEMA_WAIT_S": "1"},
    )
    assert done.returncode == 2, done
    assert "after 1 s: run `ferry migrate`" in done.stderr, done


# -- memory a request can ask for ---------------------------------------------------------


def _resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_an_input_that_asks_for_gigabytes_gets_413_and_the_server_goes_on(tmp_path: Path) -> None:
    model = shape_driven_onnx(tmp_path / "ones.onnx")
    with running([model], tmp_path / "server.log", "--onnx-memory-mb", "256") as srv:
        url = f"{srv.url}/v2/models/ones/infer"

        def ask(shape: list[int]) -> requests.Response:
            body = {"inputs": [{"name": "shape", "datatype": "INT64", "shape": [3], "data": shape}]}
            return requests.post(url, json=body, timeout=TIMEOUT)

        assert ask([4, 4, 4]).json()["outputs"][0]["data"] == [64.0]
        for _ in range(3):  # 4 GiB of float32 ones, asked for by 24 bytes of input
            refused = ask([1024, 1024, 1024])
            assert refused.status_code == 413, refused.text
            assert "4096 MB" in refused.json()["error"] and "--onnx-memory-mb" in refused.json()["error"]
        assert ask([32, 1024, 1024]).status_code == 200  # 128 MiB: under the cap, served
        assert ask([8, 8, 8]).json()["outputs"][0]["data"] == [512.0]
        assert _resident_mb(srv.process.pid) < 1024, "the refused requests' memory was allocated"
    assert "ONNX models may use 256 MB" in srv.log()
