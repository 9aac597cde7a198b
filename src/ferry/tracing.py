"""OpenTelemetry traces of inference requests, exported over OTLP/HTTP.

Only built when ``FERRY_OTLP_ENDPOINT`` is set; otherwise nothing here is imported and
a request pays nothing. Spans are made after the answer is sent, from the times the
request recorded on its way (``RequestInfo``): a server span for the request, a child of
the caller's span when it sent a W3C ``traceparent``, and under it ``decode``, ``queue``,
``compute`` and ``encode``. Recording afterwards keeps the batcher free of tracing code,
and a batch's one model call still shows in each of its requests' traces."""

from __future__ import annotations

import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from ferry import __version__
from ferry.requestinfo import RequestInfo


class InferTracing:
    def __init__(self, exporter: SpanExporter, sample_ratio: float = 1.0) -> None:
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": "ferry", "service.version": __version__}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("ferry")

    @classmethod
    def otlp(cls, endpoint: str, sample_ratio: float = 1.0) -> InferTracing:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"), sample_ratio)

    def record(self, info: RequestInfo, route: str, headers: Sequence[tuple[bytes, bytes]], status: int) -> None:
        """The spans of one finished request. ``route`` is the templated path."""
        # perf_counter_ns marks to epoch nanoseconds, with the offset of this moment.
        offset = time.time_ns() - time.perf_counter_ns()
        ended = time.perf_counter_ns() + offset
        root = self._tracer.start_span(
            f"POST {route}",
            context=_parent(headers),
            kind=SpanKind.SERVER,
            start_time=info.started + offset,
            attributes={
                "http.request.method": "POST",
                "http.route": route,
                "http.response.status_code": status,
                "ferry.protocol": info.protocol,
                "ferry.model": info.model,
                "ferry.version": info.version,
            },
        )
        if status >= 500:
            root.set_status(Status(StatusCode.ERROR))
        inside = trace.set_span_in_context(root)
        steps = [
            ("decode", info.started, info.decoded),
            ("queue", info.queued, info.computing),
            ("compute", info.computing, info.computed),
            ("encode", info.computed, info.answered),
        ]
        for name, start, end in steps:
            if start and end:
                span = self._tracer.start_span(name, context=inside, start_time=start + offset)
                if name == "compute":
                    span.set_attribute("ferry.batch_size", info.batch_size)
                span.end(end_time=end + offset)
        root.end(end_time=ended)

    def flush(self, timeout_ms: int = 5000) -> bool:
        """Export every span recorded so far (spans leave in batches, in the background)."""
        return self._provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Send what is buffered, then stop."""
        self._provider.shutdown()


def _parent(headers: Sequence[tuple[bytes, bytes]]) -> Context | None:
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name in (b"traceparent", b"tracestate")
    }
    return extract(carrier) if carrier else None
