"""The response cache, served: a repeated request is answered without running the model
(the statistics' executions stay put), in any wire format, per version; counted in the
statistics and /metrics; shared by two servers through a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from ferry.settings import Settings
from tests.builders import scale_onnx
from tests.integration.serving import binary_request, json_input, outputs_of, serve, stats_of
from tests.redis_server import REDIS_URL, reachable_redis

X = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def _repository(root: Path, config: str) -> Path:
    for version, factor in (("1", 2.0), ("2", 3.0)):
        (root / "scale" / version).mkdir(parents=True)
        scale_onnx(root / "scale" / version / "model.onnx", factor)
    (root / "scale" / "config.yaml").write_text(config)
    return root


def _infer(client: Any, x: np.ndarray = X, version: str | None = None, **extra: Any) -> np.ndarray:
    path = f"/v2/models/scale/versions/{version}/infer" if version else "/v2/models/scale/infer"
    response = client.post(path, json={"inputs": [json_input("x", "FP32", x)], **extra})
    return outputs_of(response)[1]["y"]


def _counts(client: Any, version: str) -> tuple[int, int, int]:
    stats = stats_of(client, "scale", version)
    inference = stats["inference_stats"]
    return stats["execution_count"], inference["cache_hit"]["count"], inference["cache_miss"]["count"]


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root = _repository(tmp_path_factory.mktemp("cache"), "cache: {max_bytes: 100000}\nmax_batch_size: 0\n")
    with serve([root]) as client:
        yield client


def test_a_repeated_request_is_answered_without_running_the_model(cached: Any) -> None:
    before = _counts(cached, "2")
    first = _infer(cached, X * 7)
    again = _infer(cached, X * 7)
    np.testing.assert_array_equal(first, X * 7 * 3.0)
    np.testing.assert_array_equal(again, first)
    executions, hits, misses = _counts(cached, "2")
    assert (executions - before[0], hits - before[1], misses - before[2]) == (1, 1, 1)


def test_a_hit_is_answered_in_the_wire_format_asked_for(cached: Any) -> None:
    _infer(cached, X * 11)
    body, headers = binary_request([("x", "FP32", X * 11)], parameters={"binary_data_output": True})
    before = _counts(cached, "2")
    response = cached.post("/v2/models/scale/infer", content=body, headers=headers)
    np.testing.assert_array_equal(outputs_of(response)[1]["y"], X * 11 * 3.0)
    assert _counts(cached, "2")[:2] == (before[0], before[1] + 1)
    v1 = cached.post("/v1/models/scale:predict", json={"instances": (X * 11).tolist()})
    assert v1.json() == {"predictions": (X * 11 * 3.0).tolist()}
    assert _counts(cached, "2")[1] == before[1] + 2


def test_versions_never_share_answers(cached: Any) -> None:
    np.testing.assert_array_equal(_infer(cached, X * 5, version="2"), X * 5 * 3.0)
    np.testing.assert_array_equal(_infer(cached, X * 5, version="1"), X * 5 * 2.0)
    assert _counts(cached, "1")[2] >= 1


def test_other_inputs_or_outputs_are_other_entries(cached: Any) -> None:
    _infer(cached, X * 13)
    before = _counts(cached, "2")
    _infer(cached, X * 13, outputs=[{"name": "y"}])  # the outputs asked for differ: computed
    _infer(cached, X * 13 + 1)
    assert _counts(cached, "2") == (before[0] + 2, before[1], before[2] + 2)


def test_the_cache_is_in_the_metrics(cached: Any) -> None:
    _infer(cached, X * 17)
    _infer(cached, X * 17)
    text = cached.get("/metrics").text
    hits = [line for line in text.splitlines() if line.startswith('ferry_cache_hits_total{model="scale",version="2"}')]
    assert hits and float(hits[0].split()[-1]) >= 1
    assert 'ferry_cache_bytes{model="scale",version="2"}' in text


def test_a_full_cache_evicts_the_oldest_answers(tmp_path: Path) -> None:
    # Each answer is 16 bytes: three fit in 48.
    root = _repository(tmp_path, "cache: {max_bytes: 48}\nmax_batch_size: 0\n")
    with serve([root]) as client:
        for i in range(4):
            _infer(client, X + i)
        executions = _counts(client, "2")[0]
        _infer(client, X + 3)  # still there
        assert _counts(client, "2")[0] == executions
        _infer(client, X)  # the oldest went
        assert _counts(client, "2")[0] == executions + 1
        assert 'ferry_cache_evictions_total{model="scale",version="2"} 2.0' in client.get("/metrics").text


def test_without_a_cache_every_request_runs(tmp_path: Path) -> None:
    root = _repository(tmp_path, "max_batch_size: 0\n")
    with serve([root]) as client:
        _infer(client)
        _infer(client)
        assert _counts(client, "2") == (2, 0, 0)
        assert "ferry_cache_hits_total{" not in client.get("/metrics").text


# -- shared through Redis -------------------------------------------------------------


@pytest.fixture
def redis_db() -> Iterator[str]:
    client = reachable_redis()
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


def test_two_servers_share_answers_through_redis(tmp_path: Path, redis_db: str) -> None:
    root = _repository(tmp_path, "cache: {max_bytes: 100000, ttl_s: 60, shared: true}\nmax_batch_size: 0\n")
    settings = Settings(auth=False, redis_url=redis_db)
    with serve([root], settings) as first, serve([root], settings) as second:
        np.testing.assert_array_equal(_infer(first, X * 19), X * 19 * 3.0)
        np.testing.assert_array_equal(_infer(second, X * 19), X * 19 * 3.0)
        assert _counts(first, "2") == (1, 0, 1)
        assert _counts(second, "2") == (0, 1, 0)  # computed by the first server only
    entries = redis.Redis.from_url(redis_db).keys("ferry:cache:*")
    assert len(entries) == 1
    ttl = redis.Redis.from_url(redis_db).pttl(entries[0])
    assert 0 < ttl <= 60_000


def test_a_shared_cache_without_redis_fails_the_version_with_the_reason(tmp_path: Path) -> None:
    root = _repository(tmp_path, "cache: {max_bytes: 100000, shared: true}\n")
    with serve([root], Settings(auth=False, ready_despite_failures=True)) as client:
        ready = client.get("/v2/models/scale/versions/2/ready")
        assert ready.status_code != 200
        index = client.post("/v2/repository/index").json()
        reasons = [e.get("reason", "") for e in index if e["name"] == "scale"]
        assert any("FERRY_REDIS_URL" in r for r in reasons), index
