"""Batcher: one per loaded model version. Requests queue here; each worker (one per
model instance) takes everything compatible that is queued, up to ``max_batch_size``
rows, runs it in a thread and splits the outputs back to the requests.

Greedy by default: a free worker never waits for more requests, so a lone request
pays no batching delay, and under load batches grow by themselves. ``max_delay_ms``
lets a partial batch wait for company when throughput matters more than latency."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ferry.errors import FerryError, ModelFailed, Unavailable
from ferry.runtimes import Runtime
from ferry.stats import ModelStats

log = logging.getLogger("ferry.batching")

Tensors = dict[str, np.ndarray]


@dataclass
class _Pending:
    inputs: Tensors
    rows: int
    # Requests may share a batch only when names, dtypes and trailing dims all agree.
    key: Hashable
    deadline: float
    future: asyncio.Future[Tensors]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)


class Batcher:
    def __init__(
        self,
        runtimes: list[Runtime],
        *,
        max_batch_size: int,
        max_delay_ms: float,
        max_queue_size: int,
        timeout_s: float,
        stats: ModelStats,
        name: str = "model",
    ) -> None:
        if not runtimes:
            raise ValueError("a Batcher needs at least one runtime instance")
        self._runtimes = runtimes
        self._batching = runtimes[0].batchable and max_batch_size > 1
        self._max_rows = max_batch_size
        self._max_delay_s = max_delay_ms / 1000
        self._max_queue = max_queue_size
        self._timeout_s = timeout_s
        self._stats = stats
        self._queue: deque[_Pending] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(len(runtimes), thread_name_prefix=f"ferry-{name}")
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        self._closed = False

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(runtime)) for runtime in self._runtimes]

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, inputs: Tensors, timeout_s: float | None = None) -> Tensors:
        """Queue one request and wait for its outputs. Cancelling the caller (a client
        that went away) leaves a cancelled future the workers skip."""
        if self._closed:
            raise Unavailable("the model is being unloaded; try again")
        if len(self._queue) >= self._max_queue:
            raise Unavailable(f"the model's queue is full ({self._max_queue} requests waiting)")
        first = next(iter(inputs.values()))
        rows = first.shape[0] if first.ndim else 1
        limit = self._timeout_s if timeout_s is None else min(timeout_s, self._timeout_s)
        future: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        key = tuple((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items())
        self._queue.append(_Pending(inputs, rows, key, time.monotonic() + limit, future))
        self._wakeup.set()
        return await future

    async def drain(self) -> None:
        """Refuse new requests, let queued and running ones finish, release the models."""
        self._closed = True
        while self._queue or self._busy:
            self._wakeup.set()
            await asyncio.sleep(0.005)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._executor.shutdown(wait=True)
        for runtime in self._runtimes:
            runtime.close()

    async def _work(self, runtime: Runtime) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Counted busy from the moment requests leave the queue, so drain() waits for them.
            self._busy += 1
            try:
                batch = self._take()
                if self._batching and self._max_delay_s:
                    await self._wait_for_company(batch)
                batch = self._live(batch)
                if batch:
                    results = await loop.run_in_executor(self._executor, self._run, runtime, batch)
                    _deliver(batch, results)
            finally:
                self._busy -= 1

    def _take(self) -> list[_Pending]:
        first = self._queue.popleft()
        batch = [first]
        if self._batching:
            self._add_compatible(batch)
        return batch

    def _add_compatible(self, batch: list[_Pending]) -> None:
        rows = sum(p.rows for p in batch)
        key = batch[0].key
        kept: deque[_Pending] = deque()
        while self._queue:
            pending = self._queue.popleft()
            if pending.key == key and rows + pending.rows <= self._max_rows:
                batch.append(pending)
                rows += pending.rows
            else:
                kept.append(pending)
        self._queue.extendleft(reversed(kept))

    async def _wait_for_company(self, batch: list[_Pending]) -> None:
        until = time.monotonic() + self._max_delay_s
        while sum(p.rows for p in batch) < self._max_rows:
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return
            self._add_compatible(batch)

    def _live(self, batch: list[_Pending]) -> list[_Pending]:
        """Drop requests whose client left, and time out those that waited too long."""
        now = time.monotonic()
        live = []
        for pending in batch:
            if pending.future.done():
                continue
            if now > pending.deadline:
                pending.future.set_exception(Unavailable("the request timed out waiting in the model's queue"))
                continue
            live.append(pending)
        return live

    def _run(self, runtime: Runtime, batch: list[_Pending]) -> list[Tensors | BaseException]:
        """In a worker thread: one model call for the whole batch; if it fails, each
        request runs alone so one bad request cannot fail its neighbours."""
        try:
            return list(self._execute(runtime, batch))
        except BaseException as exc:
            if len(batch) == 1:
                return [_as_error(exc)]
        results: list[Tensors | BaseException] = []
        for pending in batch:
            try:
                results.extend(self._execute(runtime, [pending]))
            except BaseException as exc:
                results.append(_as_error(exc))
        return results

    def _execute(self, runtime: Runtime, batch: list[_Pending]) -> list[Tensors]:
        start = time.perf_counter_ns()
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            names = batch[0].inputs.keys()
            inputs = {n: np.concatenate([p.inputs[n] for p in batch]) for n in names}
        merged = time.perf_counter_ns()
        outputs = runtime.predict(inputs)
        predicted = time.perf_counter_ns()
        # Checked for a lone request too: otherwise a batch refused by _split is retried
        # one by one and the same wrong rows reach the clients unchecked.
        results = _split(outputs, batch) if self._batching else [outputs]
        done = time.perf_counter_ns()
        rows = sum(p.rows for p in batch)
        self._stats.record_execution(
            len(batch),
            rows,
            [start - p.enqueued_ns for p in batch],
            merged - start,
            predicted - merged,
            done - predicted,
        )
        return results


def _deliver(batch: list[_Pending], results: list[Tensors | BaseException]) -> None:
    for pending, result in zip(batch, results, strict=True):
        if pending.future.done():
            continue
        if isinstance(result, BaseException):
            pending.future.set_exception(result)
        else:
            pending.future.set_result(result)


def _split(outputs: Tensors, batch: list[_Pending]) -> list[Tensors]:
    total = sum(p.rows for p in batch)
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != total:
            raise ModelFailed(
                f"output {name!r} has shape {list(array.shape)} for a batch of {total} rows; "
                "a batchable model must return one row per input row"
            )
    results = []
    offset = 0
    for pending in batch:
        end = offset + pending.rows
        results.append({name: array[offset:end] for name, array in outputs.items()})
        offset = end
    return results


def _as_error(exc: BaseException) -> BaseException:
    if isinstance(exc, FerryError):
        return exc
    log.error("model call failed", exc_info=exc)
    return ModelFailed(f"the model failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
