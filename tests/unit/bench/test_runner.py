"""ferry.bench.runner with a fake driver: what counts in the measured window, failures by
status, and a server that stops answering."""

from __future__ import annotations

import asyncio
import time

import pytest

from ferry.bench import runner
from ferry.bench.driver import Connection, Failure

TICK_S = 0.002


class FakeConnection:
    def __init__(self, driver: FakeDriver) -> None:
        self._driver = driver

    async def send(self) -> Failure | None:
        self._driver.sent += 1
        if self._driver.hang:
            await asyncio.Event().wait()
        await asyncio.sleep(TICK_S)
        if time.perf_counter() < self._driver.fail_until:
            return Failure("HTTP 503", "warming up")
        if self._driver.sent % 10 == 0:
            return Failure("UNAVAILABLE", "every tenth")
        return None


class FakeDriver:
    def __init__(self, fail_for_s: float = 0.0, hang: bool = False) -> None:
        self.fail_until = time.perf_counter() + fail_for_s
        self.hang = hang
        self.sent = 0
        self.connected: list[int] = []
        self.closed = 0

    async def connect(self, count: int) -> list[Connection]:
        self.connected.append(count)
        return [FakeConnection(self) for _ in range(count)]

    async def close(self) -> None:
        self.closed += 1


def test_a_level_counts_what_is_answered_within_the_window() -> None:
    driver = FakeDriver()
    started = time.perf_counter()
    result = asyncio.run(runner.run_level(driver, 4, warmup_s=0.1, duration_s=0.3, rows_per_request=2))
    elapsed = time.perf_counter() - started
    assert driver.connected == [4] and driver.closed == 1
    assert 0.4 <= elapsed < 1.5
    assert (result.concurrency, result.duration_s, result.rows_per_request) == (4, 0.3, 2)
    # About 4 workers x 0.3 s / TICK_S requests: the warm-up's are not in it.
    assert 0 < result.requests + result.errors < driver.sent * 0.85
    assert set(result.failures) == {"UNAVAILABLE"}
    assert result.messages == {"UNAVAILABLE": "every tenth"}
    assert all(latency >= TICK_S * 0.9 for latency in result.latencies_s)
    assert result.client_cpu_s is not None and result.client_cpu_s >= 0


def test_failures_during_the_warm_up_are_not_counted() -> None:
    driver = FakeDriver(fail_for_s=0.1)
    result = asyncio.run(runner.run_level(driver, 2, warmup_s=0.2, duration_s=0.2, rows_per_request=1))
    assert "HTTP 503" not in result.failures


def test_failures_within_the_window_are_counted_by_status() -> None:
    result = asyncio.run(runner.run_level(FakeDriver(fail_for_s=10), 2, warmup_s=0, duration_s=0.2, rows_per_request=1))
    assert result.requests == 0
    assert result.failures["HTTP 503"] > 10


def test_a_server_that_stops_answering_is_given_up_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "LAST_ANSWER_GRACE_S", 0.1)
    driver = FakeDriver(hang=True)
    result = asyncio.run(runner.run_level(driver, 3, warmup_s=0, duration_s=0.1, rows_per_request=1))
    assert result.failures == {"no answer": 3}
    assert "no answer within 0.1 s" in result.messages["no answer"]
    assert driver.closed == 1
