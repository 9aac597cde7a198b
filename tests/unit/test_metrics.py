"""ferry.metrics: names, labels and the ModelStats observer, read back through the
Prometheus text exposition."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferry.errors import CLIENT_CLOSED, NotFound, Unavailable
from ferry.metrics import Metrics, VersionGauges, status_of
from ferry.stats import ModelStats


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


def test_each_metrics_has_its_own_registry() -> None:
    # Two apps in one process (tests, or two servers) must not collide or share counts.
    first, second = Metrics(), Metrics()
    first.version("m", "1").request("v2", 200, 1_000)
    assert samples(first)[("ferry_requests_total", labels(model="m", version="1", protocol="v2", code="200"))] == 1
    assert ("ferry_requests_total", labels(model="m", version="1", protocol="v2", code="200")) not in samples(second)


def test_stats_observer_sees_the_same_measurements() -> None:
    metrics = Metrics()
    stats = ModelStats(metrics.version("m", "3"))
    stats.request_started()
    assert stats.inflight == 1
    stats.record_request(True, 2_000_000, "v1", 200)
    stats.record_request(False, 1_000_000, "v2", 503)
    assert stats.inflight == 0
    stats.record_execution(2, 5, [1_000, 3_000], 10, 20, 30)
    got = samples(metrics)
    assert got[("ferry_requests_total", labels(model="m", version="3", protocol="v1", code="200"))] == 1
    assert got[("ferry_requests_total", labels(model="m", version="3", protocol="v2", code="503"))] == 1
    assert got[("ferry_request_duration_seconds_sum", labels(model="m", version="3", protocol="v1"))] == 0.002
    assert got[("ferry_queue_duration_seconds_count", labels(model="m", version="3"))] == 2
    assert got[("ferry_queue_duration_seconds_sum", labels(model="m", version="3"))] == pytest.approx(4e-6)
    # Each request of the batch is charged the batch's compute time, as the stats do.
    assert got[("ferry_compute_duration_seconds_count", labels(model="m", version="3"))] == 2
    assert got[("ferry_compute_duration_seconds_sum", labels(model="m", version="3"))] == pytest.approx(120e-9)
    assert got[("ferry_batch_size_count", labels(model="m", version="3"))] == 1
    assert got[("ferry_batch_size_sum", labels(model="m", version="3"))] == 5
    doc = stats.to_json("m", "3")
    assert doc["inference_stats"]["success"]["count"] == 1
    assert doc["inference_stats"]["fail"]["count"] == 1


def test_stats_without_observer_still_count() -> None:
    stats = ModelStats()
    stats.record_request(True, 1)
    stats.record_execution(1, 1, [1], 1, 1, 1)
    assert stats.to_json("m", "1")["execution_count"] == 1


def test_unrouted_requests_have_no_version() -> None:
    metrics = Metrics()
    metrics.unrouted("", "v2", 404, 0.001)
    got = samples(metrics)
    assert got[("ferry_requests_total", labels(model="", version="", protocol="v2", code="404"))] == 1
    assert got[("ferry_request_duration_seconds_count", labels(model="", version="", protocol="v2"))] == 1


def test_occupancy_is_read_at_scrape_time() -> None:
    metrics = Metrics()
    occupancy = [
        VersionGauges("m", "1", queued=4, inflight=6, queue_capacity=256, ready=True, default=True),
        VersionGauges("m", "2", ready=False),  # known, not loaded: no queue
        VersionGauges("broken", ""),
    ]
    metrics.watch(lambda: occupancy)
    got = samples(metrics)
    m1, m2 = labels(model="m", version="1"), labels(model="m", version="2")
    assert got[("ferry_queued_requests", m1)] == 4
    assert got[("ferry_inflight_requests", m1)] == 6
    assert got[("ferry_queue_capacity_requests", m1)] == 256
    assert got[("ferry_model_ready", m1)] == 1
    assert got[("ferry_model_ready", m2)] == 0
    assert got[("ferry_model_ready", labels(model="broken", version=""))] == 0
    assert got[("ferry_model_default_version", m1)] == 1
    assert ("ferry_model_default_version", m2) not in got
    assert ("ferry_queued_requests", m2) not in got
    occupancy = []
    assert ("ferry_queued_requests", m1) not in samples(metrics)


def test_lifecycle_events() -> None:
    metrics = Metrics()
    metrics.loaded("m", "1", 1.5, 0.25)
    metrics.load_failed("m", "2")
    metrics.unloaded("m", "1")
    got = samples(metrics)
    assert got[("ferry_model_loads_total", labels(model="m", version="1", result="success"))] == 1
    assert got[("ferry_model_loads_total", labels(model="m", version="2", result="failure"))] == 1
    assert got[("ferry_model_unloads_total", labels(model="m", version="1"))] == 1
    assert got[("ferry_model_load_duration_seconds", labels(model="m", version="1"))] == 1.5
    assert got[("ferry_model_warmup_seconds", labels(model="m", version="1"))] == 0.25


def test_names_follow_prometheus_conventions() -> None:
    metrics = Metrics()
    metrics.version("m", "1")
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    # prometheus_client's *_created companions (the time a series started) are left on.
    ours = {n: f for n, f in families.items() if n.startswith("ferry_") and not n.endswith("_created")}
    assert set(ours) == {
        "ferry_requests",
        "ferry_request_duration_seconds",
        "ferry_queue_duration_seconds",
        "ferry_compute_duration_seconds",
        "ferry_batch_size",
        "ferry_queued_requests",
        "ferry_inflight_requests",
        "ferry_model_loads",
        "ferry_model_unloads",
        "ferry_model_load_duration_seconds",
        "ferry_model_warmup_seconds",
        "ferry_queue_capacity_requests",
        "ferry_model_ready",
        "ferry_model_default_version",
        "ferry_auth_denied_requests",
        "ferry_rate_limited_requests",
        "ferry_cache_hits",
        "ferry_cache_misses",
        "ferry_cache_evictions",
        "ferry_cache_bytes",
    }
    for family in ours.values():
        assert family.documentation
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
    assert "process_cpu_seconds" in families


def test_status_of_failures() -> None:
    assert status_of(NotFound("x")) == 404
    assert status_of(Unavailable("x")) == 503
    assert status_of(asyncio.CancelledError()) == CLIENT_CLOSED
    assert status_of(RuntimeError("x")) == 500
