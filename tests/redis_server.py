"""The Redis of this machine for a test. With CI=true an unreachable Redis fails the
test; elsewhere it is skipped with the reason."""

from __future__ import annotations

import os

import pytest
import redis

REDIS_URL = os.environ.get("FERRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def reachable_redis() -> redis.Redis:
    """A client of REDIS_URL that answered a PING (close it when done)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        client.close()
        reason = f"Redis unreachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: the Redis tests are mandatory)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")
    return client
