"""Per-key token buckets. Each server process keeps its own: with N processes behind a
load balancer a key may reach N times its rate (docs/security.md)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

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
