"""The numbers behind the web app's live charts: every few seconds, what each loaded
version did since the last look (requests, errors, latency histogram, rows and model
calls, queue depth), kept for a few minutes in this process. Read from the versions'
own ModelStats, so it works with Prometheus metrics off too."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ferry.manager import ModelManager
from ferry.stats import LATENCY_BOUNDS_NS, ModelStats

log = logging.getLogger("ferry.web")

# What the catalog calls "now": the intervals of about the last ten seconds.
RECENT_S = 10.0


@dataclass
class _Reading:
    """One version's cumulative counts at one instant."""

    stats: ModelStats
    succeeded: int
    failed: int
    rows: int
    executions: int
    latency: list[int]


@dataclass
class Delta:
    """What happened in one interval, for one version or summed over several."""

    succeeded: int = 0
    failed: int = 0
    rows: int = 0
    executions: int = 0
    queued: int = 0
    inflight: int = 0
    # Sparse latency histogram: bucket index -> requests.
    latency: dict[int, int] = field(default_factory=dict)

    def add(self, other: Delta) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.rows += other.rows
        self.executions += other.executions
        self.queued += other.queued
        self.inflight += other.inflight
        for bucket, count in other.latency.items():
            self.latency[bucket] = self.latency.get(bucket, 0) + count

    @property
    def requests(self) -> int:
        return self.succeeded + self.failed


@dataclass
class _Interval:
    end: float  # unix time
    seconds: float
    versions: dict[tuple[str, str], Delta]


class LiveStats:
    def __init__(self, models: ModelManager, interval_s: float = 2.0, keep: int = 150) -> None:
        self._models = models
        self.interval_s = interval_s
        self._intervals: deque[_Interval] = deque(maxlen=keep)
        self._last: dict[tuple[str, str], _Reading] = {}
        self._last_at = time.monotonic()
        # Requests and errors per model since this server started (versions come and go).
        self.totals: dict[str, list[int]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sample()
            except Exception:  # a bad sample must not end the charts for the process's life
                log.exception("could not sample the live numbers")

    def sample(self) -> None:
        now = time.monotonic()
        readings: dict[tuple[str, str], _Reading] = {}
        deltas: dict[tuple[str, str], Delta] = {}
        for loaded in self._models.loaded():
            key = (loaded.name, loaded.version)
            succeeded, failed, rows, executions, latency = loaded.stats.snapshot()
            reading = _Reading(loaded.stats, succeeded, failed, rows, executions, latency)
            readings[key] = reading
            before = self._last.get(key)
            if before is None or before.stats is not loaded.stats:  # new, or loaded again
                before = _Reading(loaded.stats, 0, 0, 0, 0, [0] * len(latency))
            delta = Delta(
                succeeded - before.succeeded,
                failed - before.failed,
                rows - before.rows,
                executions - before.executions,
                loaded.batcher.queued,
                loaded.stats.inflight,
                _grown(latency, before.latency),
            )
            deltas[key] = delta
            total = self.totals.setdefault(loaded.name, [0, 0])
            total[0] += delta.requests
            total[1] += delta.failed
        self._intervals.append(_Interval(time.time(), max(now - self._last_at, 1e-3), deltas))
        self._last = readings
        self._last_at = now

    def report(self, names: Iterable[str]) -> dict[str, Any]:
        """Per model (and per version): a series per chart, one point per interval, and
        the figures of about the last ten seconds; ``total`` sums the models named."""
        wanted = set(names)
        intervals = list(self._intervals)
        models: dict[str, Any] = {}
        for name in sorted(wanted):
            versions = sorted({v for i in intervals for (n, v) in i.versions if n == name}, key=int)
            per_version = {
                v: _summary([i.versions.get((name, v), Delta()) for i in intervals], intervals) for v in versions
            }
            merged = [_sum(d for (n, _), d in i.versions.items() if n == name) for i in intervals]
            requests, errors = self.totals.get(name, [0, 0])
            models[name] = {
                **_summary(merged, intervals),
                "requests": requests,
                "errors": errors,
                "versions": per_version,
            }
        merged = [_sum(d for (n, _), d in i.versions.items() if n in wanted) for i in intervals]
        return {
            "interval_s": self.interval_s,
            "time": [round(i.end, 3) for i in intervals],
            "models": models,
            "total": {
                **_summary(merged, intervals),
                "requests": sum(self.totals.get(n, [0, 0])[0] for n in wanted),
                "errors": sum(self.totals.get(n, [0, 0])[1] for n in wanted),
            },
        }


def _grown(now: list[int], then: list[int]) -> dict[int, int]:
    """The buckets that counted requests since ``then``, by how many."""
    return {i: a - b for i, (a, b) in enumerate(zip(now, then, strict=True)) if a > b}


def _sum(deltas: Iterable[Delta]) -> Delta:
    total = Delta()
    for delta in deltas:
        total.add(delta)
    return total


def _summary(deltas: list[Delta], intervals: list[_Interval]) -> dict[str, Any]:
    recent = Delta()
    seconds = 0.0
    for delta, interval in zip(reversed(deltas), reversed(intervals), strict=True):
        if seconds >= RECENT_S:
            break
        recent.add(delta)
        seconds += interval.seconds
    return {
        "now": _figures(recent, seconds, current=deltas[-1] if deltas else Delta()),
        "series": {
            "rps": [round(d.requests / i.seconds, 2) for d, i in zip(deltas, intervals, strict=True)],
            "errors": [round(d.failed / i.seconds, 2) for d, i in zip(deltas, intervals, strict=True)],
            "p50_ms": [percentile_ms(d.latency, 0.5) for d in deltas],
            "p99_ms": [percentile_ms(d.latency, 0.99) for d in deltas],
            "batch": [round(d.rows / d.executions, 2) if d.executions else None for d in deltas],
            "queue": [d.queued for d in deltas],
        },
    }


def _figures(delta: Delta, seconds: float, current: Delta) -> dict[str, Any]:
    return {
        "rps": round(delta.requests / seconds, 2) if seconds else 0.0,
        "error_ratio": round(delta.failed / delta.requests, 4) if delta.requests else 0.0,
        "p50_ms": percentile_ms(delta.latency, 0.5),
        "p99_ms": percentile_ms(delta.latency, 0.99),
        "batch": round(delta.rows / delta.executions, 2) if delta.executions else None,
        "queue": current.queued,
        "inflight": current.inflight,
    }


def percentile_ms(latency: dict[int, int], q: float) -> float | None:
    """The q-quantile of a latency histogram in ms, interpolated inside its bucket (as
    Prometheus' histogram_quantile does); None with no requests."""
    count = sum(latency.values())
    if not count:
        return None
    rank = q * count
    seen = 0
    for bucket in sorted(latency):
        n = latency[bucket]
        if seen + n >= rank:
            if bucket >= len(LATENCY_BOUNDS_NS):  # slower than the last bound
                return round(LATENCY_BOUNDS_NS[-1] / 1e6, 3)
            low = LATENCY_BOUNDS_NS[bucket - 1] if bucket else 0
            high = LATENCY_BOUNDS_NS[bucket]
            return round((low + (high - low) * (rank - seen) / n) / 1e6, 3)
        seen += n
    return round(LATENCY_BOUNDS_NS[-1] / 1e6, 3)
