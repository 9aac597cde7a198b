"""Drives one concurrency level: N workers, each with its own connection, send the request
back to back for the warm-up and then the measured window.

A request counts when its answer arrives within the window, whenever it was sent (what wrk
and perf_analyzer count): throughput is completions per second of the window, and the
latencies are those requests' round trips. Answers after the window are not counted."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import TextIO

from ferry.bench.driver import Connection, Driver
from ferry.bench.report import LevelResult

# How long after the window the workers' last requests may take before they are given up
# and counted as failures (a server that stopped answering must not hang the command).
LAST_ANSWER_GRACE_S = 30.0
PROGRESS_INTERVAL_S = 0.5


class Window:
    """The measured window, on ``time.perf_counter``'s clock, and what was recorded in it."""

    def __init__(self, start: float, end: float, result: LevelResult) -> None:
        self.start = start
        self.end = end
        self.result = result


async def _worker(connection: Connection, window: Window) -> None:
    # Locals, not attribute look-ups, on the path every request takes.
    clock = time.perf_counter
    start, end = window.start, window.end
    latencies = window.result.latencies_s
    failures, messages = window.result.failures, window.result.messages
    send = connection.send
    while True:
        sent = clock()
        failure = await send()
        answered = clock()
        if answered > end:
            return
        if answered >= start:
            if failure is None:
                latencies.append(answered - sent)
            else:
                failures[failure.status] += 1
                messages.setdefault(failure.status, failure.message)


async def run_level(
    driver: Driver,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    rows_per_request: int,
    progress: TextIO | None = None,
) -> LevelResult:
    result = LevelResult(concurrency, duration_s, rows_per_request)
    connections = await driver.connect(concurrency)
    try:
        now = time.perf_counter()
        window = Window(now + warmup_s, now + warmup_s + duration_s, result)
        workers = [asyncio.create_task(_worker(c, window)) for c in connections]
        reporter = asyncio.create_task(_progress(window, progress)) if progress is not None else None
        meter = asyncio.create_task(_client_cpu(window))
        _, late = await asyncio.wait(workers, timeout=warmup_s + duration_s + LAST_ANSWER_GRACE_S)
        if reporter is not None and progress is not None:
            reporter.cancel()
            progress.write("\r\x1b[K")
            progress.flush()
        await meter  # done by now, or within moments: it ends with the window
        for task in late:
            task.cancel()
        if late:
            status = "no answer"
            result.failures[status] += len(late)
            result.messages.setdefault(status, f"no answer within {LAST_ANSWER_GRACE_S:g} s after the window")
        await asyncio.gather(*late, return_exceptions=True)
        crashed = [task.exception() for task in workers if not task.cancelled() and task.exception() is not None]
        if crashed:
            raise crashed[0]  # type: ignore[misc]  # a bug in a driver: let it show
    finally:
        await driver.close()
    return result


async def _client_cpu(window: Window) -> None:
    """This process's CPU time (every thread: grpc's included) over the window, to tell
    whether the client itself was what limited the rate."""
    await asyncio.sleep(max(0.0, window.start - time.perf_counter()))
    began = time.process_time()
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    window.result.client_cpu_s = time.process_time() - began


async def _progress(window: Window, stream: TextIO) -> None:
    """One line, rewritten in place: what the level is doing, and the counts so far."""
    result = window.result
    while True:
        now = time.perf_counter()
        if now < window.start:
            line = f"concurrency {result.concurrency}: warming up, {window.start - now:.1f} s left"
        else:
            done = min(now, window.end) - window.start
            line = (
                f"concurrency {result.concurrency}: {done:.1f}/{result.duration_s:g} s, "
                f"{result.requests:,} requests, {result.errors:,} errors"
            )
        stream.write(f"\r\x1b[K{line}")
        stream.flush()
        await asyncio.sleep(PROGRESS_INTERVAL_S)


def progress_stream() -> TextIO | None:
    """stderr when it is a terminal; never in a pipe or a log file."""
    return sys.stderr if sys.stderr.isatty() else None
