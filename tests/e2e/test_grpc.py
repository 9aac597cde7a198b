"""The gRPC endpoint of a real ``ferry serve`` process: tritonclient.grpc (sync, asyncio,
streaming) and the KServe SDK in their own virtualenv, gRPC health and reflection, the
error codes, request ids, metrics and the access log, batching shared with REST, and
SIGTERM with calls in flight. Keys and TLS over gRPC: test_security.py."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from ferry.grpc.protos import grpc_service_pb2 as pb
from tests.builders import add_sub_onnx, python_model
from tests.e2e.grpc_clients import run_client, stub
from tests.e2e.server import HOST, Server, ferry_command, free_port, running, start

TIMEOUT = 30

# 2x, half a second per call, batching with a 300 ms window: slow enough to catch calls
# in flight, and for a REST and a gRPC request to meet in one batch.
SLOW_MODEL = """
import time

import ferry
from ferry.signature import TensorSpec


class Slow(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1, 1))]
    outputs = [TensorSpec("y", "FP32", (-1, 1))]
    batchable = True

    def predict(self, inputs):
        time.sleep(0.5)
        return {"y": inputs["x"] * 2}
"""
# Its error names its own folder and the temporary directory (warm-up's zeros pass).
LEAKY_MODEL = """
import tempfile

import ferry
from ferry.signature import TensorSpec


class Leaky(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1, 1))]
    outputs = [TensorSpec("y", "FP32", (-1, 1))]

    def predict(self, inputs):
        if inputs["x"].any():
            raise ValueError(f"no cache at {self.path / 'cache.bin'} nor in {tempfile.gettempdir()}/ferry-cache")
        return {"y": inputs["x"]}
"""
BROKEN_MODEL = """
import ferry


class Broken(ferry.Model):
    def load(self):
        raise RuntimeError("this model cannot load")
"""


def slow_request(value: float, model: str = "slow") -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    message.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(value)
    return message


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grpc-repo")
    for name in ("slow", "batched"):
        python_model(root / name / "1", SLOW_MODEL)
        (root / name / "config.yaml").write_text("max_batch_size: 8\nmax_delay_ms: 300\n")
    python_model(root / "broken" / "1", BROKEN_MODEL)
    python_model(root / "leaky" / "1", LEAKY_MODEL)
    add_sub_onnx(root / "add_sub" / "1" / "model.onnx")
    return root


@pytest.fixture(scope="module")
def observed(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The repo above (a broken model included) with the access log on and a 64 KiB
    message limit."""
    log = tmp_path_factory.mktemp("logs") / "grpc.log"
    args = ("--access-log", "--ready-despite-failures", "--max-body-bytes", "65536")
    with running([repo], log, *args) as srv:
        yield srv


# -- third-party clients ------------------------------------------------------------------


def test_tritonclient_grpc(server: Server) -> None:
    report = run_client("triton_grpc.py", server.grpc_address)
    assert (report["live"], report["ready"], report["model_ready"]) == (True, True, True)
    assert report["server"]["name"] == "ferry"
    assert {"binary_tensor_data", "classification", "model_repository", "statistics"} <= set(
        report["server"]["extensions"]
    )
    metadata = report["metadata"]
    assert (metadata["name"], metadata["versions"], metadata["platform"]) == ("add_sub", ["1"], "onnxruntime_onnx")
    assert metadata["inputs"][0] == {"name": "INPUT0", "datatype": "FP32", "shape": ["-1", "16"]}
    config = report["config"]
    assert (config["max_batch_size"], config["input"][0]["data_type"], config["input"][0]["dims"]) == (
        32,
        "TYPE_FP32",
        ["16"],
    )
    assert report["add_sub"]["sum_ok"] and report["add_sub"]["difference_ok"]
    assert report["add_sub"]["version"] == "1" and report["add_sub"]["id"]  # the request id
    assert report["requested_output"] == {"outputs": ["OUTPUT1"], "id": "mine"}
    assert report["datatypes"] == dict.fromkeys(
        ["BOOL", "UINT8", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"], True
    )
    assert len(report["classification"]) == 2 and all(c.count(":") == 1 for c in report["classification"])
    assert report["stats"]["name"] == "add_sub" and report["stats"]["inference_count"] >= 2
    assert {"add_sub", "digits", "upper"} <= set(report["index"])
    errors = report["errors"]
    assert errors["unknown_model"] == "StatusCode.NOT_FOUND unknown model 'nope'"
    assert errors["bad_shape"].startswith("StatusCode.INVALID_ARGUMENT input 'INPUT0' has shape [1, 15]")
    assert errors["bad_version"].startswith("StatusCode.NOT_FOUND model 'add_sub' has no version 9")
    assert errors["metadata_unknown"].startswith("StatusCode.NOT_FOUND")
    stream = report["stream"]
    assert stream[:5] == ["s0", "s1", "s2", "s3", "s4"] and stream[6] == "after"
    assert stream[5].startswith("error: input 'INPUT0' has shape [1, 15]")


def test_tritonclient_grpc_asyncio_and_stream(server: Server) -> None:
    report = run_client("triton_grpc_aio.py", server.grpc_address)
    assert (report["live"], report["ready"], report["unary_ok"]) == (True, True, True)
    assert report["stream"] == [[f"r{n}", n + 1.0] for n in range(10)]


def test_kserve_sdk_rest_and_grpc_clients(server: Server) -> None:
    report = run_client("kserve_sdk.py", server.url, server.grpc_address)
    for transport in ("rest", "grpc"):
        answers = report[transport]
        assert (answers["live"], answers["ready"], answers["model_ready"]) == (True, True, True), transport
        assert answers["infer"] == {"model": "add_sub", "id": "kserve-1", "sum_ok": True}, transport


# -- health and reflection -------------------------------------------------------------


def test_health_service_follows_server_and_model_readiness(observed: Server) -> None:
    with grpc.insecure_channel(observed.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def status(service: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT).status

        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        assert status("") == serving  # --ready-despite-failures
        assert status("inference.GRPCInferenceService") == serving
        assert status("slow") == serving
        assert status("broken") == not_serving
        with pytest.raises(grpc.RpcError) as refused:
            status("nope")
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service="add_sub"), timeout=TIMEOUT)
        assert next(watch).status == serving
        watch.cancel()


def test_reflection_describes_the_service(server: Server) -> None:
    from google.protobuf.descriptor_pool import DescriptorPool

    with grpc.insecure_channel(server.grpc_address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
        pool = DescriptorPool(database)
        service = pool.FindServiceByName("inference.GRPCInferenceService")
        assert "ModelStreamInfer" in {m.name for m in service.methods}
        infer = pool.FindMessageTypeByName("inference.ModelInferRequest")
        assert infer.fields_by_name["raw_input_contents"].number == 7


# -- errors, ids, metrics, logs -------------------------------------------------------------


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as failed:
        call()  # type: ignore[operator]
    return failed.value.code(), failed.value.details()


def test_each_error_has_its_grpc_code_and_the_server_keeps_serving(observed: Server) -> None:
    client = stub(observed.grpc_address)
    assert code_of(lambda: client.ModelInfer(slow_request(1, "nope"), timeout=TIMEOUT)) == (
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'nope'",
    )
    bad = pb.ModelInferRequest(model_name="slow")
    bad.inputs.add(name="x", datatype="INT32", shape=[1, 1]).contents.int_contents.append(1)
    code, message = code_of(lambda: client.ModelInfer(bad, timeout=TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "datatype INT32" in message
    code, message = code_of(lambda: client.ModelInfer(slow_request(1, "broken"), timeout=TIMEOUT))
    assert code == grpc.StatusCode.UNAVAILABLE and "not ready" in message
    huge = pb.ModelInferRequest(model_name="slow")
    huge.inputs.add(name="x", datatype="FP32", shape=[20000, 1])
    huge.raw_input_contents.append(bytes(80000))  # over --max-body-bytes 65536
    code, _ = code_of(lambda: client.ModelInfer(huge, timeout=TIMEOUT))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, message = code_of(lambda: client.ModelMetadata(pb.ModelMetadataRequest(name="slow", version="x")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "positive integer" in message
    answer = client.ModelInfer(slow_request(3), timeout=TIMEOUT)
    assert list(answer.outputs[0].contents.fp32_contents) == [6.0]  # typed in, typed out
    assert answer.outputs[0].datatype == "FP32" and list(answer.outputs[0].shape) == [1, 1]
    assert client.ServerReady(pb.ServerReadyRequest(), timeout=TIMEOUT).ready


@pytest.mark.parametrize("version", ["9" * 5000, str(2**63)], ids=["5000-digits", "2**63"])
def test_a_version_past_64_bits_is_invalid_argument_on_every_call(observed: Server, version: str) -> None:
    """As REST answers 400: int() raises on 4,300+ digits, which was INTERNAL."""
    client = stub(observed.grpc_address)
    infer = slow_request(1)
    infer.model_version = version
    calls = {
        "ModelInfer": lambda: client.ModelInfer(infer, timeout=TIMEOUT),
        "ModelReady": lambda: client.ModelReady(pb.ModelReadyRequest(name="slow", version=version), timeout=TIMEOUT),
        "ModelMetadata": lambda: client.ModelMetadata(
            pb.ModelMetadataRequest(name="slow", version=version), timeout=TIMEOUT
        ),
        "ModelConfig": lambda: client.ModelConfig(pb.ModelConfigRequest(name="slow", version=version), timeout=TIMEOUT),
        "ModelStatistics": lambda: client.ModelStatistics(
            pb.ModelStatisticsRequest(name="slow", version=version), timeout=TIMEOUT
        ),
    }
    for method, call in calls.items():
        code, message = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, message[:200])
        assert message.startswith("version must be a positive integer of at most 19 digits"), method
    assert client.ModelReady(pb.ModelReadyRequest(name="slow", version="1"), timeout=TIMEOUT).ready


def test_error_messages_show_no_server_paths(observed: Server, repo: Path) -> None:
    client = stub(observed.grpc_address)
    code, message = code_of(lambda: client.ModelInfer(slow_request(1, "leaky"), timeout=TIMEOUT))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no cache at" in message
    streamed = list(client.ModelStreamInfer(iter([slow_request(1, "leaky")]), timeout=TIMEOUT))
    for text in (message, streamed[0].error_message):
        assert "leaky/1/cache.bin" in text and "<tmp>/ferry-cache" in text, text
        assert str(repo) not in text and tempfile.gettempdir() + "/" not in text


def test_request_ids_metrics_and_the_access_log(observed: Server) -> None:
    client = stub(observed.grpc_address)
    answer, call = client.ModelInfer.with_call(
        slow_request(2), metadata=(("x-request-id", "grpc-trace-1"),), timeout=TIMEOUT
    )
    assert answer.id == "grpc-trace-1"
    assert ("x-request-id", "grpc-trace-1") in tuple(call.initial_metadata())
    metrics = requests.get(f"{observed.url}/metrics", timeout=TIMEOUT).text
    assert 'ferry_requests_total{code="200",model="slow",protocol="grpc",version="1"}' in metrics
    assert 'model="nope"' not in metrics
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = [json.loads(line) for line in observed.log().splitlines() if line.startswith("{")]
        access = [
            line for line in lines if line.get("request_id") == "grpc-trace-1" and line["logger"] == "ferry.access"
        ]
        if access or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(access) == 1, observed.log()[-3000:]
    assert access[0]["method"] == "GRPC" and access[0]["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert (access[0]["status"], access[0]["model"], access[0]["version"]) == (200, "slow", "1")


def test_a_grpc_and_a_rest_request_share_one_batch(observed: Server) -> None:
    client = stub(observed.grpc_address)
    rest_body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1], "data": [5.0]}]}
    with ThreadPoolExecutor(2) as pool:
        over_grpc = pool.submit(client.ModelInfer, slow_request(4, "batched"), timeout=TIMEOUT)
        over_rest = pool.submit(
            requests.post, f"{observed.url}/v2/models/batched/infer", json=rest_body, timeout=TIMEOUT
        )
        assert list(over_grpc.result().outputs[0].contents.fp32_contents) == [8.0]
        assert over_rest.result().json()["outputs"][0]["data"] == [10.0]
    stats = client.ModelStatistics(pb.ModelStatisticsRequest(name="batched"), timeout=TIMEOUT).model_stats[0]
    assert (stats.inference_count, stats.execution_count) == (2, 1)
    assert [(b.batch_size, b.compute_infer.count) for b in stats.batch_stats] == [(2, 1)]


# -- the process ---------------------------------------------------------------------------


def test_sigterm_lets_grpc_calls_in_flight_finish(repo: Path, tmp_path: Path) -> None:
    server = start([repo], tmp_path / "server.log", "--ready-despite-failures")
    client = stub(server.grpc_address)
    with ThreadPoolExecutor(6) as pool:
        calls = [pool.submit(client.ModelInfer, slow_request(n), timeout=TIMEOUT) for n in range(6)]
        deadline = time.monotonic() + TIMEOUT
        while not _inflight(server, "slow"):
            assert time.monotonic() < deadline, "no call reached the model"
            time.sleep(0.02)
        server.process.send_signal(signal.SIGTERM)
        answers = [call.result(timeout=TIMEOUT) for call in calls]
    assert [a.outputs[0].contents.fp32_contents[0] for a in answers] == [2.0 * n for n in range(6)]
    assert server.process.wait(TIMEOUT) == 0, server.log()
    assert "gRPC stopped" in server.log()
    with pytest.raises(grpc.RpcError) as refused:
        client.ServerLive(pb.ServerLiveRequest(), timeout=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def _inflight(server: Server, model: str) -> bool:
    """Whether the model is computing a request now (read from /metrics)."""
    prefix = f'ferry_inflight_requests{{model="{model}"'
    lines = requests.get(f"{server.url}/metrics", timeout=TIMEOUT).text.splitlines()
    return any(line.startswith(prefix) and float(line.rsplit(" ", 1)[1]) > 0 for line in lines)


def test_a_taken_grpc_port_is_a_clear_error_and_0_turns_grpc_off(tmp_path: Path) -> None:
    model = add_sub_onnx(tmp_path / "adder.onnx")
    with running([model], tmp_path / "first.log") as first:
        argv = ["serve", str(model), "--no-auth", "--port", str(free_port()), "--grpc-port", str(first.grpc_port)]
        done = subprocess.run([*ferry_command(), *argv], capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"cannot serve gRPC on {HOST}:{first.grpc_port}" in done.stdout + done.stderr
        assert first.alive()
    with running([model], tmp_path / "off.log", "--grpc-port", "0") as off:
        assert requests.get(f"{off.url}/v2/health/ready", timeout=TIMEOUT).json() == {"ready": True}
        assert "serving gRPC" not in off.log()
