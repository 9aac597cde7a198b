"""Per model version counters in the shape of the OIP statistics extension."""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

# Upper bounds of the request latency histogram the web app's live charts read
# percentiles from: 50 us to about 49 s, each bucket 1.5x the one before.
LATENCY_BOUNDS_NS: tuple[int, ...] = tuple(int(50_000 * 1.5**i) for i in range(35))


class StatsObserver(Protocol):
    """Sees what ModelStats records, in the same measurements (ferry.metrics.VersionMetrics)."""

    def request(self, protocol: str, code: int, ns: int) -> None: ...

    def execution(self, rows: int, queue_ns: list[int], compute_ns: int) -> None: ...


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class BatchDurations:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


class ModelStats:
    """Request counts and times (success, fail, queue, compute) and a histogram of
    executed batch sizes. Updated from the event loop and from worker threads.
    ``observer`` (the version's metrics) is told of each request and execution."""

    def __init__(self, observer: StatsObserver | None = None) -> None:
        self._lock = threading.Lock()
        self._observer = observer
        # Requests between request_started and record_request: event loop only, no lock.
        self.inflight = 0
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.success = Duration()
        self.fail = Duration()
        self.queue = Duration()
        self.compute_input = Duration()
        self.compute_infer = Duration()
        self.compute_output = Duration()
        # Response cache lookups (ferry.cache): a hit's time is its lookup, a miss's the
        # lookup and the insertion, as in Triton's statistics.
        self.cache_hit = Duration()
        self.cache_miss = Duration()
        self.batches: dict[int, BatchDurations] = {}
        # Requests (success and fail) per LATENCY_BOUNDS_NS bucket, the last for slower ones.
        self.latency_counts = [0] * (len(LATENCY_BOUNDS_NS) + 1)

    def request_started(self) -> None:
        self.inflight += 1

    def record_request(self, ok: bool, ns: int, protocol: str = "v2", code: int | None = None) -> None:
        """A request's outcome: ``code`` is the HTTP status it is answered with (200 or
        500 when not given). Ends a request_started, if there was one."""
        with self._lock:
            (self.success if ok else self.fail).add(ns)
            self.latency_counts[bisect.bisect_left(LATENCY_BOUNDS_NS, ns)] += 1
            self.last_inference_ms = int(time.time() * 1000)
        if self.inflight:
            self.inflight -= 1
        if self._observer is not None:
            self._observer.request(protocol, code or (200 if ok else 500), ns)

    def record_cache(self, hit: bool, ns: int) -> None:
        with self._lock:
            (self.cache_hit if hit else self.cache_miss).add(ns)

    def record_execution(
        self, requests: int, rows: int, queue_ns: list[int], input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        with self._lock:
            self.execution_count += 1
            self.inference_count += rows
            for ns in queue_ns:
                self.queue.add(ns)
            # Each request in the batch is charged the batch's compute time, as Triton does.
            self.compute_input.add(input_ns * requests, requests)
            self.compute_infer.add(infer_ns * requests, requests)
            self.compute_output.add(output_ns * requests, requests)
            batch = self.batches.setdefault(rows, BatchDurations())
            batch.compute_input.add(input_ns)
            batch.compute_infer.add(infer_ns)
            batch.compute_output.add(output_ns)
        if self._observer is not None:
            self._observer.execution(rows, queue_ns, input_ns + infer_ns + output_ns)

    def snapshot(self) -> tuple[int, int, int, int, list[int]]:
        """(succeeded, failed, rows, executions, latency counts) at one instant."""
        with self._lock:
            counts = (self.success.count, self.fail.count, self.inference_count, self.execution_count)
            return (*counts, list(self.latency_counts))

    def to_json(self, name: str, version: str) -> dict[str, Any]:
        with self._lock:
            return {
                "name": name,
                "version": version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": self.success.to_json(),
                    "fail": self.fail.to_json(),
                    "queue": self.queue.to_json(),
                    "compute_input": self.compute_input.to_json(),
                    "compute_infer": self.compute_infer.to_json(),
                    "compute_output": self.compute_output.to_json(),
                    "cache_hit": self.cache_hit.to_json(),
                    "cache_miss": self.cache_miss.to_json(),
                },
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": b.compute_input.to_json(),
                        "compute_infer": b.compute_infer.to_json(),
                        "compute_output": b.compute_output.to_json(),
                    }
                    for size, b in sorted(self.batches.items())
                ],
            }
