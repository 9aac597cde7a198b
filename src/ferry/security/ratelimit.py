"""Per-key token buckets: in the process (``RateLimiter``), or in Redis for every node
(``SharedRateLimiter``, with ``FERRY_REDIS_URL``). Without Redis, N processes behind a
load balancer let a key reach N times its rate (docs/security.md)."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ferry.security")

_RATE = re.compile(r"(?P<count>\d+(?:\.\d+)?)\s*/\s*(?P<unit>s|sec|second|m|min|minute|h|hour)")
_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(text: str) -> float:
    """``"50/s"``, ``"600/m"`` or ``"1000/h"`` as requests per second."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid rate {text!r}: use a number per s, m or h, such as 50/s or 600/m")
    per_s = float(match["count"]) / _SECONDS[match["unit"]]
    if per_s <= 0:
        raise ValueError("a rate must be more than 0")
    return per_s


@dataclass
class _Bucket:
    rate: float
    tokens: float
    updated: float


class RateLimiter:
    """``take(key, rate)``: None when the request may go, else the seconds until it may.
    A bucket holds one second's worth of requests (at least one), so a key may burst to
    its per-second rate and no further."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, rate: float) -> float | None:
        now = self._clock()
        capacity = max(1.0, rate)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:  # new key, or its rate was changed
            bucket = self._buckets[key] = _Bucket(rate, capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


def retry_after_s(wait_s: float) -> int:
    """Retry-After is whole seconds; never 0, which would invite an immediate retry."""
    return max(1, math.ceil(wait_s))


# One token bucket per key in a Redis hash, updated atomically by the script: every node
# takes from the same bucket. Time is Redis's own (TIME), so nodes' clocks need not agree.
_TAKE = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at', 'rate')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil or tonumber(state[3]) ~= rate then
  tokens, at = capacity, now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now), 'rate', ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedRateLimiter:
    """The same buckets as ``RateLimiter``, kept in Redis (``FERRY_REDIS_URL``) so a key's
    rate holds across every node. One round trip per request of a key with a rate; keys
    without one never reach Redis. While Redis cannot be reached, each process limits on
    its own (``fallback``), as without Redis, rather than refusing or letting all through."""

    PREFIX = "ferry:rate:"

    def __init__(self, client: Any, fallback: RateLimiter | None = None) -> None:
        self._client = client
        self._script = client.register_script(_TAKE)
        self._fallback = fallback or RateLimiter()
        self._warned_at = -math.inf

    async def take(self, key: str, rate: float) -> float | None:
        from redis.exceptions import RedisError

        try:
            wait = float(await self._script(keys=[self.PREFIX + key], args=[repr(rate), repr(max(1.0, rate))]))
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 60:  # once a minute, not per request
                self._warned_at = now
                log.warning("rate limits are per process: Redis cannot be reached (%s)", exc)
            return self._fallback.take(key, rate)
        return wait if wait > 0 else None

    async def close(self) -> None:
        await self._client.aclose()
