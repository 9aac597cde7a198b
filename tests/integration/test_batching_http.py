"""Batching, queue limits and deadlines seen from HTTP: concurrent requests share model
calls yet each gets exactly its own rows back; a full queue and a missed deadline answer
503 with Retry-After at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.builders import python_model
from tests.integration.serving import error_of, json_input, outputs_of, serve_async

# Slow enough that requests pile up behind a running call and get batched together.
ROW_TAGGER = """
import time

import numpy as np

import ferry
from ferry.signature import TensorSpec


class RowTagger(ferry.Model):
    inputs = [TensorSpec("x", "INT64", (-1, 2))]
    outputs = [TensorSpec("y", "INT64", (-1, 2)), TensorSpec("batch_rows", "INT64", (-1,))]
    batchable = True

    def predict(self, inputs):
        time.sleep(0.02)
        x = inputs["x"]
        return {"y": x * 10 + 1, "batch_rows": np.full(len(x), len(x), dtype=np.int64)}
"""

SLEEPER = """
import time

import ferry
from ferry.signature import TensorSpec


class Sleeper(ferry.Model):
    inputs = [TensorSpec("x", "FP32", (-1,))]
    outputs = [TensorSpec("y", "FP32", (-1,))]

    def predict(self, inputs):
        time.sleep({seconds})
        return {{"y": inputs["x"]}}
"""

X = np.array([1.0], dtype=np.float32)


def _model(root: Path, name: str, source: str, config: str) -> None:
    python_model(root / name / "1", source)
    (root / name / "config.yaml").write_text(config)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batching")
    _model(root, "tagger", ROW_TAGGER, "max_batch_size: 64\nwarmup: false\n")
    _model(root, "tagger_delay", ROW_TAGGER, "max_batch_size: 64\nmax_delay_ms: 50\nwarmup: false\n")
    _model(root, "unbatched", ROW_TAGGER, "max_batch_size: 0\nwarmup: false\n")
    _model(root, "tiny_queue", SLEEPER.format(seconds=0.3), "max_queue_size: 1\nwarmup: false\n")
    _model(root, "short_deadline", SLEEPER.format(seconds=0.3), "timeout_ms: 100\nwarmup: false\n")
    _model(root, "patient", SLEEPER.format(seconds=0.3), "warmup: false\n")
    return root


async def _stats(client: httpx.AsyncClient, name: str) -> dict[str, int]:
    (entry,) = (await client.get(f"/v2/models/{name}/versions/1/stats")).json()["model_stats"]
    return {
        "execution_count": entry["execution_count"],
        "inference_count": entry["inference_count"],
        "success": entry["inference_stats"]["success"]["count"],
        "largest_batch": max((b["batch_size"] for b in entry["batch_stats"]), default=0),
    }


async def _tag_concurrently(client: httpx.AsyncClient, name: str, requests: int) -> list[int]:
    """Send ``requests`` requests of 1-4 rows at once; check each gets its own rows."""
    row_counts = [1 + i % 4 for i in range(requests)]
    inputs = [np.arange(2 * rows, dtype=np.int64).reshape(rows, 2) + 1000 * i for i, rows in enumerate(row_counts)]

    async def one(i: int) -> np.ndarray:
        body = {"id": f"r{i}", "inputs": [json_input("x", "INT64", inputs[i])]}
        response = await client.post(f"/v2/models/{name}/infer", json=body)
        doc, outputs = outputs_of(response)
        assert doc["id"] == f"r{i}"
        np.testing.assert_array_equal(outputs["y"], inputs[i] * 10 + 1)
        return outputs["batch_rows"]

    batch_rows = await asyncio.gather(*(one(i) for i in range(requests)))
    return [int(rows[0]) for rows in batch_rows]


@pytest.mark.parametrize("name", ["tagger", "tagger_delay"])
def test_concurrent_requests_are_batched_and_split_back(repo: Path, name: str) -> None:
    async def scenario() -> None:
        async with serve_async([repo]) as client:
            before = await _stats(client, name)
            batch_rows = await _tag_concurrently(client, name, 24)
            after = await _stats(client, name)
            requests = after["success"] - before["success"]
            assert requests == 24
            assert after["inference_count"] - before["inference_count"] == sum(1 + i % 4 for i in range(24))
            executions = after["execution_count"] - before["execution_count"]
            assert executions < requests, after
            assert max(batch_rows) > 4  # some call saw rows from several requests
            assert after["largest_batch"] == max(batch_rows)
            assert after["largest_batch"] <= 64

    asyncio.run(scenario())


def test_unbatched_model_runs_one_request_per_call(repo: Path) -> None:
    async def scenario() -> None:
        async with serve_async([repo]) as client:
            before = await _stats(client, "unbatched")
            batch_rows = await _tag_concurrently(client, "unbatched", 6)
            after = await _stats(client, "unbatched")
            assert after["execution_count"] - before["execution_count"] == 6
            assert batch_rows == [1 + i % 4 for i in range(6)]

    asyncio.run(scenario())


async def _burst(client: httpx.AsyncClient, name: str, count: int, **extra: object) -> list[httpx.Response]:
    body = {"inputs": [json_input("x", "FP32", X)], **extra}

    async def one(delay: float) -> httpx.Response:
        await asyncio.sleep(delay)  # keep arrival order stable: the first one runs
        return await client.post(f"/v2/models/{name}/infer", json=body)

    return await asyncio.gather(*(one(0.01 * i) for i in range(count)))


def _split(responses: list[httpx.Response]) -> tuple[list[httpx.Response], list[httpx.Response]]:
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    for response in refused:
        error_of(response, 503)
        assert response.headers["retry-after"].isdigit()
    return ok, refused


def test_a_full_queue_answers_503_with_retry_after(repo: Path) -> None:
    async def scenario() -> None:
        async with serve_async([repo]) as client:
            ok, refused = _split(await _burst(client, "tiny_queue", 6))
            # One runs, (at most) one waits in the queue of one, the rest are turned away.
            assert 1 <= len(ok) <= 2
            assert len(refused) == 6 - len(ok)
            assert all("queue is full" in r.json()["error"] for r in refused)
            # Once the queue has room again, requests are served.
            again = await client.post("/v2/models/tiny_queue/infer", json={"inputs": [json_input("x", "FP32", X)]})
            assert again.status_code == 200

    asyncio.run(scenario())


def test_requests_past_their_deadline_answer_503(repo: Path) -> None:
    async def scenario() -> None:
        async with serve_async([repo]) as client:
            ok, refused = _split(await _burst(client, "short_deadline", 3))
            assert len(ok) == 1  # the first runs at once; the others wait 300 ms > 100 ms
            assert len(refused) == 2
            assert all("timed out" in r.json()["error"] for r in refused)
            stats = await _stats(client, "short_deadline")
            assert stats["execution_count"] == 1

    asyncio.run(scenario())


def test_the_timeout_parameter_sets_a_shorter_deadline(repo: Path) -> None:
    async def scenario() -> None:
        async with serve_async([repo]) as client:
            # timeout is in microseconds: 50 ms, while the model takes 300 ms per call.
            ok, refused = _split(await _burst(client, "patient", 2, parameters={"timeout": 50_000}))
            assert len(ok) == 1
            assert len(refused) == 1
            assert "timed out" in refused[0].json()["error"]
            # Without the parameter the default deadline (30 s) is generous.
            ok, refused = _split(await _burst(client, "patient", 2))
            assert len(ok) == 2

    asyncio.run(scenario())
