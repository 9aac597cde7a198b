"""A real ``ferry serve`` process: its log is JSON lines (not a terminal), every line of
a request carries the request id, and its traces reach a real OTLP/HTTP receiver (the
protobuf messages a collector gets) under the caller's trace."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from ferry.grpc.protos import grpc_service_pb2 as pb
from tests.builders import scale_onnx
from tests.e2e.grpc_clients import stub
from tests.e2e.server import HOST, Server, free_port, start

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}
WAIT_S = 15.0


class Collector(http.server.ThreadingHTTPServer):
    """Receives OTLP/HTTP trace exports and keeps their spans."""

    def __init__(self) -> None:
        super().__init__((HOST, free_port()), _Receive)
        self.spans: list[dict[str, str]] = []
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"

    def wait_for(self, name: str) -> list[dict[str, str]]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                if any(s["name"] == name for s in self.spans):
                    return list(self.spans)
            time.sleep(0.05)
        raise AssertionError(f"no span {name!r} arrived within {WAIT_S}s; got {self.spans}")


class _Receive(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
                for scoped in resource.scope_spans:
                    for span in scoped.spans:
                        self.server.spans.append(
                            {
                                "name": span.name,
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "service": service,
                            }
                        )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def traced(tmp_path: Path, collector: Collector, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    monkeypatch.setenv("FERRY_OTLP_ENDPOINT", collector.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # export every 0.2 s, not 5 s
    model = scale_onnx(tmp_path / "scale.onnx", 2.0)
    server = start([model], tmp_path / "server.log", "--access-log")
    yield server
    server.terminate()


def test_traces_reach_an_otlp_collector_under_the_callers_trace(traced: Server, collector: Collector) -> None:
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "X-Request-ID": "traced-1"}
    answer = requests.post(f"{traced.url}/v2/models/scale/infer", json=BODY, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "traced-1"
    spans = collector.wait_for("encode")
    ours = [s for s in spans if s["trace_id"] == TRACE_ID]
    by_name = {s["name"]: s for s in ours}
    root = by_name["POST /v2/models/{name}/infer"]
    assert root["parent"] == PARENT_ID and root["service"] == "ferry"
    for step in ("decode", "queue", "compute", "encode"):
        assert by_name[step]["parent"] == root["span_id"]


def test_grpc_calls_are_traced_under_the_callers_trace_too(traced: Server, collector: Collector) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4737"
    request = pb.ModelInferRequest(model_name="scale")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 2, 3, 4])
    metadata = (("traceparent", f"00-{trace_id}-{PARENT_ID}-01"),)
    answer = stub(traced.grpc_address).ModelInfer(request, metadata=metadata, timeout=10)
    assert list(answer.outputs[0].contents.fp32_contents) == [2.0, 4.0, 6.0, 8.0]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with collector.lock:
            ours = {s["name"]: s for s in collector.spans if s["trace_id"] == trace_id}
        if "encode" in ours:
            break
        time.sleep(0.05)
    root = ours["POST /inference.GRPCInferenceService/ModelInfer"]
    assert root["parent"] == PARENT_ID and root["service"] == "ferry"
    for step in ("decode", "queue", "compute", "encode"):
        assert ours[step]["parent"] == root["span_id"]


def test_log_lines_are_json_with_request_ids(traced: Server) -> None:
    for n in range(3):
        requests.post(
            f"{traced.url}/v2/models/scale/infer", json=BODY, headers={"X-Request-ID": f"log-{n}"}, timeout=10
        )
    requests.get(f"{traced.url}/v2/models/nope", timeout=10)
    deadline = time.monotonic() + WAIT_S
    # The access line is written after the answer is sent: wait for the last request's.
    while '"path":"/v2/models/nope"' not in traced.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [json.loads(line) for line in traced.log().splitlines() if line.strip()]  # every line is JSON
    assert {"timestamp", "level", "logger", "event"} <= set(lines[0])
    access = [line for line in lines if line["logger"] == "ferry.access"]
    by_id = {line["request_id"]: line for line in access}
    for n in range(3):
        line = by_id[f"log-{n}"]
        assert (line["status"], line["model"], line["version"]) == (200, "scale", "1")
    unknown = [line for line in access if line["path"] == "/v2/models/nope"]
    assert unknown and unknown[0]["status"] == 404 and len(unknown[0]["request_id"]) == 32
    assert not any("inputs" in json.dumps(line) for line in lines)  # no payload


def test_spans_still_buffered_are_sent_at_shutdown(tmp_path: Path, collector: Collector) -> None:
    env = {"FERRY_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        server = start([scale_onnx(tmp_path / "scale.onnx", 2.0)], tmp_path / "server.log")
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    try:
        assert requests.post(f"{server.url}/v2/models/scale/infer", json=BODY, timeout=10).status_code == 200
        time.sleep(0.3)
        assert collector.spans == []  # held in the batch for a minute...
    finally:
        assert server.terminate() == 0
    assert collector.wait_for("compute")  # ...and sent on SIGTERM
