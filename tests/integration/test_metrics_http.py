"""GET /metrics on the real app: the Prometheus exposition parses, agrees with
/v2/models/{m}/stats, and unknown model names create no series."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from ferry.settings import Settings
from tests.builders import scale_onnx
from tests.integration.serving import serve, stats_of

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

GOOD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
# Decodes, then fails the signature check: a 400 from the version that was routed to.
BAD = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("metrics-repo")
    scale_onnx(root / "scale" / "1" / "model.onnx", 1.0)
    scale_onnx(root / "scale" / "2" / "model.onnx", 2.0)
    broken = root / "broken" / "1" / "model.onnx"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not an onnx graph")
    return root


@pytest.fixture(scope="module")
def client(repo: Path) -> Iterator[TestClient]:
    with serve([repo]) as running:
        yield running


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (n, labels) in samples if n == name]


def test_stats_and_counters_agree(client: TestClient) -> None:
    successes, failures = 7, 3
    for _ in range(successes):
        assert client.post("/v2/models/scale/versions/1/infer", json=GOOD).status_code == 200
    for _ in range(failures):
        assert client.post("/v2/models/scale/versions/1/infer", json=BAD).status_code == 400
    assert client.post("/v1/models/scale:predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 200

    stats = stats_of(client, "scale", "1")["inference_stats"]
    samples = scrape(client)
    ok = value(samples, "ferry_requests_total", model="scale", version="1", protocol="v2", code="200")
    bad = value(samples, "ferry_requests_total", model="scale", version="1", protocol="v2", code="400")
    assert (ok, bad) == (successes, failures)
    assert stats["success"]["count"] == ok
    assert stats["fail"]["count"] == bad
    # Unversioned requests go to the latest version; V1 is its own protocol label.
    assert value(samples, "ferry_requests_total", model="scale", version="2", protocol="v1", code="200") == 1
    duration = value(samples, "ferry_request_duration_seconds_count", model="scale", version="1", protocol="v2")
    assert duration == successes + failures
    # Only requests that reached the model's queue are queued and computed.
    assert value(samples, "ferry_queue_duration_seconds_count", model="scale", version="1") == stats["queue"]["count"]
    assert stats["queue"]["count"] == successes
    computed = value(samples, "ferry_compute_duration_seconds_count", model="scale", version="1")
    assert computed == stats["compute_infer"]["count"] == successes
    batches = value(samples, "ferry_batch_size_count", model="scale", version="1")
    assert batches == stats_of(client, "scale", "1")["execution_count"]
    assert value(samples, "ferry_batch_size_sum", model="scale", version="1") == successes


def test_unknown_models_create_no_series(client: TestClient) -> None:
    for name in ("nope-1", "nope-2", "nope-3"):
        assert client.post(f"/v2/models/{name}/infer", json=GOOD).status_code == 404
    assert client.post("/v1/models/nope-4:predict", json={"instances": [[1]]}).status_code == 404
    # A known model with an unknown version: the model's name, no version.
    assert client.post("/v2/models/scale/versions/9/infer", json=GOOD).status_code == 404
    samples = scrape(client)
    families = ("ferry_requests_total", "ferry_request_duration_seconds_count")
    names = {labels["model"] for n in families for labels in series(samples, n)}
    assert names <= {"", "scale"}
    assert value(samples, "ferry_requests_total", model="", version="", protocol="v2", code="404") == 3
    assert value(samples, "ferry_requests_total", model="", version="", protocol="v1", code="404") == 1
    assert value(samples, "ferry_requests_total", model="scale", version="", protocol="v2", code="404") == 1
    assert "nope" not in client.get("/metrics").text


def test_loads_gauges_and_process_metrics(client: TestClient) -> None:
    samples = scrape(client)
    for version in ("1", "2"):
        assert value(samples, "ferry_model_loads_total", model="scale", version=version, result="success") == 1
        assert value(samples, "ferry_model_load_duration_seconds", model="scale", version=version) > 0
        assert (("ferry_model_warmup_seconds", (("model", "scale"), ("version", version)))) in samples
        assert value(samples, "ferry_queued_requests", model="scale", version=version) == 0
        assert value(samples, "ferry_inflight_requests", model="scale", version=version) == 0
    assert value(samples, "ferry_model_loads_total", model="broken", version="1", result="failure") == 1
    assert any(name == "process_cpu_seconds_total" for name, _ in samples)


def test_unload_is_counted(repo: Path) -> None:
    with serve([repo]) as client:
        assert client.post("/v2/repository/models/scale/unload").status_code == 200
        samples = scrape(client)
    for version in ("1", "2"):
        assert value(samples, "ferry_model_unloads_total", model="scale", version=version) == 1
    # Unloaded versions are no longer occupied.
    assert series(samples, "ferry_queued_requests") == []


def test_metrics_not_in_openapi(client: TestClient) -> None:
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_metrics_can_be_turned_off(repo: Path) -> None:
    with serve([repo], Settings(metrics=False, auth=False)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.post("/v2/models/scale/infer", json=GOOD).status_code == 200
        assert stats_of(client, "scale", "2")["inference_stats"]["success"]["count"] == 1


def test_readiness_default_version_and_queue_capacity(client: TestClient) -> None:
    samples = scrape(client)
    assert value(samples, "ferry_model_ready", model="scale", version="1") == 1
    assert value(samples, "ferry_model_ready", model="scale", version="2") == 1
    ready = {(s["model"], s["version"]) for s in series(samples, "ferry_model_ready")}
    assert ("broken", "1") in ready or ("broken", "") in ready
    assert all(
        value(samples, "ferry_model_ready", **labels) == 0
        for labels in series(samples, "ferry_model_ready")
        if labels["model"] == "broken"
    )
    # Unversioned requests go to the highest version in a repository.
    assert series(samples, "ferry_model_default_version") == [{"model": "scale", "version": "2"}]
    assert value(samples, "ferry_queue_capacity_requests", model="scale", version="2") == 256
