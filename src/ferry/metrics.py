"""Prometheus metrics (docs/metrics.md lists every one). One ``Metrics`` per app, with a
registry of its own, passed down explicitly: never a module global.

The hot path pays little: each loaded version gets a ``VersionMetrics`` that observes
the times ``ModelStats`` measures anyway (nothing is timed twice) into plain counts
under one lock, turned into Prometheus families only when Prometheus scrapes. Queued
and in-flight requests are read at scrape time too, not updated per request.

Label cardinality is bounded: ``model`` and ``version`` name what this server has
(``""`` for a request that no loaded version answered, and ``model=""`` when the name
is not a model of this server), ``protocol`` is ``v2`` or ``v1`` and ``code`` is the
HTTP status."""

from __future__ import annotations

import asyncio
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ferry.errors import CLIENT_CLOSED, FerryError

CONTENT_TYPE = CONTENT_TYPE_LATEST
PROTOCOLS = ("v2", "v1", "grpc")
# A client that left before its answer: no HTTP status was sent; nginx's convention.

# Seconds: from 0.5 ms (a small model's whole request) to 30 s (the default timeout).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# ferry.security.auth's refusal reasons (ferry_auth_denied_requests_total{reason})
DENIAL_REASONS = ("missing", "invalid", "revoked", "expired", "csrf", "scope", "model", "rate_limited")


def status_of(exc: BaseException) -> int:
    """The HTTP status a failed request is answered (or counted) with."""
    if isinstance(exc, FerryError):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_CLOSED
    return 500


@dataclass(frozen=True)
class VersionGauges:
    """What a scrape reads of one version the server knows (loaded or not): version ""
    stands for a model that failed before any version was found."""

    model: str
    version: str
    queued: int = 0
    inflight: int = 0
    queue_capacity: int = 0  # 0: not loaded
    ready: bool = False
    default: bool = False  # answers the model's unversioned requests (production)
    # The response cache (ferry.cache); cached False: the version has none.
    cached: bool = False
    cache_hits: int = 0
    cache_misses: int = 0
    cache_evictions: int = 0
    cache_bytes: int = 0


Occupancy = Callable[[], Iterable[VersionGauges]]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.model_loads = Counter(
            "ferry_model_loads",
            "Model version loads, by result (success|failure).",
            ["model", "version", "result"],
            registry=r,
        )
        self.model_unloads = Counter(
            "ferry_model_unloads", "Model versions drained and released.", ["model", "version"], registry=r
        )
        self.model_load_duration = Gauge(
            "ferry_model_load_duration_seconds",
            "Duration of the version's last successful load (warm-up included).",
            ["model", "version"],
            registry=r,
        )
        self.model_warmup = Gauge(
            "ferry_model_warmup_seconds",
            "Warm-up inference time per instance at the version's last successful load.",
            ["model", "version"],
            registry=r,
        )
        # reason: missing, invalid, revoked, expired (401); scope, model (403); rate_limited (429)
        self.auth_denials = Counter(
            "ferry_auth_denied_requests",
            "Requests refused by API-key checks, by reason.",
            ["reason"],
            registry=r,
        )
        # Every reason from the start, at 0: rate() and increase() then see the first refusal.
        for reason in DENIAL_REASONS:
            self.auth_denials.labels(reason)
        # key_id: bounded by the keys an admin made, unlike a client-chosen value.
        self.rate_limited = Counter(
            "ferry_rate_limited_requests",
            "Requests refused with 429 because their key's rate limit was used up.",
            ["key_id"],
            registry=r,
        )
        # The request series, one entry per (model, version) this server had: bounded.
        self._versions: dict[tuple[str, str], VersionMetrics] = {}
        self._versions_lock = threading.Lock()
        self._occupancy: Occupancy | None = None
        r.register(_Requests(self))

    def watch(self, occupancy: Occupancy) -> None:
        """Where the queued and in-flight gauges are read from at each scrape."""
        self._occupancy = occupancy

    def version(self, model: str, version: str) -> VersionMetrics:
        """The request series of one version (the same object if it is loaded again)."""
        with self._versions_lock:
            found = self._versions.get((model, version))
            if found is None:
                found = self._versions[(model, version)] = VersionMetrics()
            return found

    def unrouted(self, model: str, protocol: str, code: int, seconds: float) -> None:
        """A request no loaded version answered (unknown model or version, not ready):
        ``model`` must be "" unless it names a model of this server."""
        self.version(model, "").request(protocol, code, int(seconds * 1e9))

    def loaded(self, model: str, version: str, seconds: float, warmup_s: float) -> None:
        self.model_loads.labels(model, version, "success").inc()
        self.model_load_duration.labels(model, version).set(seconds)
        self.model_warmup.labels(model, version).set(warmup_s)

    def load_failed(self, model: str, version: str) -> None:
        self.model_loads.labels(model, version, "failure").inc()

    def unloaded(self, model: str, version: str) -> None:
        self.model_unloads.labels(model, version).inc()

    def denied(self, reason: str, key_id: str | None) -> None:
        """An Authenticator's observer: one refused request."""
        self.auth_denials.labels(reason).inc()
        if reason == "rate_limited" and key_id is not None:
            self.rate_limited.labels(key_id).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Histogram:
    """Bucket counts and a sum, updated under the owner's lock; exported at scrape time.
    A fraction of prometheus_client's per-observation cost (one lock for everything a
    request records, no per-bucket locks)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative = list(accumulate(self.counts))
        buckets = [(_le(b), float(c)) for b, c in zip((*self.bounds, math.inf), cumulative, strict=True)]
        family.add_metric(labels, buckets, self.sum)


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


class VersionMetrics:
    """One version's request series: the observer of its ``ModelStats``, called from
    the event loop and from worker threads."""

    __slots__ = ("_lock", "batch", "compute", "duration", "queue", "requests")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.duration = {p: _Histogram(LATENCY_BUCKETS) for p in PROTOCOLS}
        self.queue = _Histogram(LATENCY_BUCKETS)
        self.compute = _Histogram(LATENCY_BUCKETS)
        self.batch = _Histogram(BATCH_BUCKETS)

    def request(self, protocol: str, code: int, ns: int) -> None:
        key = (protocol, code)
        with self._lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            self.duration[protocol].observe(ns / 1e9)

    def execution(self, rows: int, queue_ns: list[int], compute_ns: int) -> None:
        compute_s = compute_ns / 1e9
        with self._lock:
            self.batch.observe(rows)
            for ns in queue_ns:
                self.queue.observe(ns / 1e9)
                self.compute.observe(compute_s)


class _Requests(Collector):
    """The request families, built from every VersionMetrics at scrape time, and
    ferry_queued_requests and ferry_inflight_requests, read from the loaded versions."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        yield from self._families({}, None)

    def collect(self) -> Iterator[Metric]:
        with self._metrics._versions_lock:
            versions = dict(self._metrics._versions)
        yield from self._families(versions, self._metrics._occupancy)

    @staticmethod
    def _families(versions: dict[tuple[str, str], VersionMetrics], occupancy: Occupancy | None) -> Iterator[Metric]:
        mv = ["model", "version"]
        requests = CounterMetricFamily(
            "ferry_requests",
            "Inference requests answered, by the HTTP status of the answer.",
            labels=[*mv, "protocol", "code"],
        )
        duration = HistogramMetricFamily(
            "ferry_request_duration_seconds",
            "Time from routing to the encoded answer (decode, queue, compute, encode).",
            labels=[*mv, "protocol"],
        )
        queue = HistogramMetricFamily(
            "ferry_queue_duration_seconds",
            "Time a request waited in the model's queue before its batch ran.",
            labels=mv,
        )
        compute = HistogramMetricFamily(
            "ferry_compute_duration_seconds",
            "Time of the model call that computed a request (its whole batch's, as in the OIP statistics).",
            labels=mv,
        )
        batch = HistogramMetricFamily("ferry_batch_size", "Rows in each executed batch (model call).", labels=mv)
        for (model, version), v in sorted(versions.items()):
            with v._lock:
                for (protocol, code), count in sorted(v.requests.items()):
                    requests.add_metric([model, version, protocol, str(code)], count)
                for protocol, histogram in v.duration.items():
                    if histogram.counts != [0] * len(histogram.counts) or version:
                        histogram.add_to(duration, [model, version, protocol])
                if version:
                    v.queue.add_to(queue, [model, version])
                    v.compute.add_to(compute, [model, version])
                    v.batch.add_to(batch, [model, version])
        queued = GaugeMetricFamily("ferry_queued_requests", "Requests waiting in the model's queue.", labels=mv)
        inflight = GaugeMetricFamily(
            "ferry_inflight_requests",
            "Requests being served by the version (decode, queue, compute, encode).",
            labels=mv,
        )
        capacity = GaugeMetricFamily(
            "ferry_queue_capacity_requests",
            "Most requests the version's queue holds (max_queue_size); beyond it, 503.",
            labels=mv,
        )
        ready = GaugeMetricFamily(
            "ferry_model_ready",
            "1 when the version is loaded and serving, 0 when it is loading, failed or unloaded.",
            labels=mv,
        )
        default = GaugeMetricFamily(
            "ferry_model_default_version",
            "1 for the version that answers the model's unversioned requests (production).",
            labels=mv,
        )
        hits = CounterMetricFamily("ferry_cache_hits", "Requests answered from the response cache.", labels=mv)
        misses = CounterMetricFamily(
            "ferry_cache_misses", "Requests the response cache did not hold (computed, then stored).", labels=mv
        )
        evictions = CounterMetricFamily(
            "ferry_cache_evictions", "Answers dropped from a full in-memory response cache.", labels=mv
        )
        held = GaugeMetricFamily("ferry_cache_bytes", "Bytes of answers the in-memory response cache holds.", labels=mv)
        for g in occupancy() if occupancy is not None else ():
            if g.cached:
                hits.add_metric([g.model, g.version], g.cache_hits)
                misses.add_metric([g.model, g.version], g.cache_misses)
                evictions.add_metric([g.model, g.version], g.cache_evictions)
                held.add_metric([g.model, g.version], g.cache_bytes)
            ready.add_metric([g.model, g.version], 1 if g.ready else 0)
            if g.queue_capacity:
                queued.add_metric([g.model, g.version], g.queued)
                inflight.add_metric([g.model, g.version], g.inflight)
                capacity.add_metric([g.model, g.version], g.queue_capacity)
            if g.default:
                default.add_metric([g.model, g.version], 1)
        yield from (requests, duration, queue, compute, batch, queued, inflight, capacity, ready, default)
        yield from (hits, misses, evictions, held)
