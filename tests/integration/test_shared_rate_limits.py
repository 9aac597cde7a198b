"""Rate limits in Redis: two limiters (two nodes) take from one bucket per key; an
unreachable Redis falls back to each process's own buckets."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio

from ferry.security.ratelimit import SharedRateLimiter
from tests.redis_server import REDIS_URL, reachable_redis


@pytest.fixture
def redis_url() -> str:
    reachable_redis().close()
    return REDIS_URL


def test_two_nodes_take_from_one_bucket(redis_url: str) -> None:
    key = f"test-{uuid.uuid4().hex}"  # a bucket of its own

    async def scenario() -> list[float | None]:
        nodes = [SharedRateLimiter(redis.asyncio.from_url(redis_url)) for _ in range(2)]
        try:
            return [await nodes[i % 2].take(key, 5.0) for i in range(7)]
        finally:
            for node in nodes:
                await node.close()

    waits = asyncio.run(scenario())
    assert waits[:5] == [None] * 5, waits  # the burst: 5 between the two nodes, not 10
    assert all(w is not None and 0 < w <= 0.2 for w in waits[5:]), waits


def test_different_keys_have_different_buckets(redis_url: str) -> None:
    async def scenario() -> list[float | None]:
        node = SharedRateLimiter(redis.asyncio.from_url(redis_url))
        try:
            a, b = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
            return [await node.take(a, 1.0), await node.take(a, 1.0), await node.take(b, 1.0)]
        finally:
            await node.close()

    first, second, other = asyncio.run(scenario())
    assert first is None and second is not None and other is None


def test_without_redis_each_process_limits_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[float | None]:
        node = SharedRateLimiter(redis.asyncio.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1))
        try:
            return [await node.take("k", 2.0) for _ in range(3)]
        finally:
            await node.close()

    waits = asyncio.run(scenario())
    assert waits[:2] == [None, None] and waits[2] is not None  # limited, not refused or let through
    warnings = [r for r in caplog.records if "rate limits are per process" in r.getMessage()]
    assert len(warnings) == 1  # once, not per request
