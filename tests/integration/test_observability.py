"""Request ids, the access log, JSON log lines and traces, on the real app in process
(traces into OpenTelemetry's in-memory exporter: the same spans OTLP would send)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.testclient import TestClient

from ferry import logs
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.settings import Settings
from ferry.tracing import InferTracing
from tests.builders import python_model, scale_onnx
from tests.integration.serving import wait_ready

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"

FAILING = """
import numpy as np
import ferry
from ferry.signature import TensorSpec


class Failing(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1, 4))]
    outputs = [TensorSpec("y", "FP32", (-1, 4))]

    def predict(self, inputs):
        if (inputs["x"] < 0).any():
            raise RuntimeError("negative input")
        return {"y": inputs["x"]}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("observed")
    scale_onnx(root / "scale" / "1" / "model.onnx", 2.0)
    python_model(root / "failing" / "1", FAILING)
    return root


@dataclass
class Observed:
    client: TestClient
    tracing: InferTracing
    exporter: InMemorySpanExporter
    stream: io.StringIO

    def spans(self) -> list[ReadableSpan]:
        assert self.tracing.flush()
        return list(self.exporter.get_finished_spans())

    def lines(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.stream.getvalue().splitlines() if line.strip()]


@pytest.fixture
def observed(repo: Path) -> Iterator[Observed]:
    exporter = InMemorySpanExporter()
    tracing = InferTracing(exporter)
    stream = io.StringIO()
    settings = Settings(auth=False, access_log=True, log_format="json")
    logs.configure(settings, stream)
    try:
        with TestClient(create_app(settings, ModelManager([repo]), tracing=tracing)) as client:
            wait_ready(client)
            yield Observed(client, tracing, exporter, stream)
    finally:
        logging.getLogger().handlers.clear()


def test_request_id_is_returned_generated_or_echoed(
    observed: Observed,
) -> None:
    client = observed.client
    generated = client.get("/v2/health/live").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/v2/health/live").headers["x-request-id"] != generated
    assert client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    for bad in ("has space", "x" * 129, "new\tline"):
        echoed = client.get("/v2/health/live", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert echoed != bad and len(echoed) == 32
    answer = client.post("/v2/models/scale/infer", json=BODY, headers={"X-Request-ID": "infer-1"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "infer-1"
    assert client.get("/nowhere", headers={"X-Request-ID": "lost-1"}).headers["x-request-id"] == "lost-1"


def test_access_log_lines_are_json_with_the_request(
    observed: Observed,
) -> None:
    client = observed.client
    client.post("/v2/models/scale/infer", json=BODY, headers={"X-Request-ID": "ok-1"})
    client.post("/v2/models/scale/versions/1/infer", json={"inputs": []}, headers={"X-Request-ID": "bad-1"})
    client.get("/v2/models/scale", headers={"X-Request-ID": "meta-1"})
    lines = observed.lines()
    access = {line["request_id"]: line for line in lines if line["logger"] == "ferry.access"}
    ok = access["ok-1"]
    assert ok["event"] == "request" and ok["level"] == "INFO"
    assert ok["method"] == "POST" and ok["path"] == "/v2/models/scale/infer" and ok["status"] == 200
    assert ok["model"] == "scale" and ok["version"] == "1"
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] > 0
    assert "timestamp" in ok and ok["client"]
    assert access["bad-1"]["status"] == 400 and access["bad-1"]["model"] == "scale"
    assert access["meta-1"]["status"] == 200 and "model" not in access["meta-1"]
    # No payload in any line (as a list: a duration such as 14.03 ms holds "4.0" too).
    assert not any("inputs" in str(line) or "2.0, 3.0, 4.0" in str(line) for line in lines)


def test_log_lines_written_during_a_request_carry_its_id(
    observed: Observed,
) -> None:
    client = observed.client
    answer = client.post(
        "/v2/models/failing/infer",
        json={**BODY, "inputs": [{**BODY["inputs"][0], "data": [-1, 0, 0, 0]}]},
        headers={"X-Request-ID": "fail-1"},
    )  # type: ignore[dict-item]
    assert answer.status_code == 500
    # Lines written on the request's own path carry its id (a batch's worker serves many
    # requests at once, so its lines carry none).
    errors = [line for line in observed.lines() if line["level"] == "ERROR" and line["logger"] == "ferry.http"]
    assert errors and all(line["request_id"] == "fail-1" for line in errors), errors


def test_infer_spans_follow_the_callers_trace(observed: Observed) -> None:
    client = observed.client
    answer = client.post("/v2/models/scale/infer", json=BODY, headers={"traceparent": TRACEPARENT})
    assert answer.status_code == 200
    spans = {span.name: span for span in observed.spans()}
    root = spans["POST /v2/models/{name}/infer"]
    assert root.kind == SpanKind.SERVER
    assert f"{root.context.trace_id:032x}" == TRACE_ID
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT_ID
    assert root.attributes["ferry.model"] == "scale" and root.attributes["ferry.version"] == "1"
    assert root.attributes["http.response.status_code"] == 200
    steps = [spans[name] for name in ("decode", "queue", "compute", "encode")]
    for step in steps:
        assert step.context.trace_id == root.context.trace_id
        assert step.parent is not None and step.parent.span_id == root.context.span_id
        assert root.start_time <= step.start_time <= step.end_time <= root.end_time
    # In order: each step starts when (or after) the one before it ends.
    for before, after in pairwise(steps):
        assert before.end_time <= after.start_time
    assert spans["compute"].attributes["ferry.batch_size"] == 1


def test_a_request_without_traceparent_starts_a_trace_and_errors_are_marked(
    observed: Observed,
) -> None:
    client = observed.client
    bad = {"inputs": [{**BODY["inputs"][0], "data": [-1.0, 0.0, 0.0, 0.0]}]}
    assert client.post("/v1/models/failing:predict", json={"instances": [[-1.0, 0.0, 0.0, 0.0]]}).status_code == 500
    assert client.post("/v2/models/failing/infer", json=bad).status_code == 500
    roots = [s for s in observed.spans() if s.kind == SpanKind.SERVER]
    assert {s.name for s in roots} == {"POST /v1/models/{name}:predict", "POST /v2/models/{name}/infer"}
    for root in roots:
        assert root.parent is None
        assert root.status.status_code == StatusCode.ERROR


@contextmanager
def console_logged(repo: Path) -> Iterator[tuple[TestClient, io.StringIO]]:
    """The app with the access log on, logging readable lines into a string."""
    stream = io.StringIO()
    settings = Settings(auth=False, access_log=True, log_format="console")
    logs.configure(settings, stream)
    try:
        with TestClient(create_app(settings, ModelManager([repo]))) as client:
            wait_ready(client)
            yield client, stream
    finally:
        logging.getLogger().handlers.clear()


def test_console_format_is_readable(repo: Path) -> None:
    with console_logged(repo) as (client, stream):
        client.post("/v2/models/scale/infer", json=BODY, headers={"X-Request-ID": "tty-1"})
    line = next(line for line in stream.getvalue().splitlines() if "tty-1" in line)
    assert " INFO ferry.access: request request_id=tty-1 method=POST path=/v2/models/scale/infer status=200" in line
    assert "model=scale version=1" in line
    assert not line.startswith("{")


def test_console_lines_cannot_be_forged_through_the_path(repo: Path) -> None:
    with console_logged(repo) as (client, stream):
        client.get("/nothing%0A2026-11-21%2023:59:59%20WARNING%20ferry.security:%20forged")
    assert not any(line.startswith("2026-11-21 23:59:59 WARNING") for line in stream.getvalue().splitlines())
    assert "\\x0a2026-11-21" in stream.getvalue()


def test_one_line_escapes_control_characters() -> None:
    assert logs.one_line("a\nb\x00c\td é") == "a\\x0ab\\x00c\\x09d é"
