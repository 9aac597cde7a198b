"""Batcher: one per loaded model version. Requests queue here; each worker (one per
model instance) takes everything compatible that is queued, up to ``max_batch_size``
rows, runs it (in a thread, unless the model is very fast) and splits the outputs back
to the requests.

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

from ferry.errors import FerryError, InvalidInput, ModelFailed, Unavailable
from ferry.requestinfo import RequestInfo
from ferry.runtimes import Runtime
from ferry.stats import ModelStats

log = logging.getLogger("ferry.batching")

Tensors = dict[str, np.ndarray]

# A model call that usually takes less than this runs on the event loop itself: handing
# it to a worker thread and back costs more (tens of microseconds and GIL hand-offs)
# than the call, and stalls the loop for less than decoding a large request does.
# Slower models run in worker threads so the loop stays free.
INLINE_BELOW_NS = 500_000


@dataclass
class _Pending:
    inputs: Tensors
    rows: int
    # Requests may share a batch only when names, dtypes and trailing dims all agree.
    key: Hashable
    future: asyncio.Future[Tensors]
    enqueued_ns: int = field(default_factory=time.perf_counter_ns)
    # Fails the request with 503 if it is still queued when its deadline passes.
    expiry: asyncio.TimerHandle | None = None
    # Told when its batch ran, when the access log or tracing wants to know.
    info: RequestInfo | None = None

    def take(self) -> bool:
        """Leave the queue for a model call; False if the request is already over
        (its client left or its deadline passed)."""
        if self.expiry is not None:
            self.expiry.cancel()
        return not self.future.done()

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(Unavailable("the request timed out waiting in the model's queue"))


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
        self._name = name
        # Start on the thread path until real calls show the model is fast.
        self._call_ns = INLINE_BELOW_NS * 4
        # Set whenever the queue is empty and no call runs: what drain() waits for.
        self._idle = asyncio.Event()

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(runtime)) for runtime in self._runtimes]

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def capacity(self) -> int:
        """The most requests the queue holds; more are refused with 503."""
        return self._max_queue

    def check_capacity(self) -> None:
        """Refuse early, before the caller spends time decoding a request that would
        only be turned away."""
        if self._closed:
            raise Unavailable("the model is being unloaded; try again")
        if len(self._queue) >= self._max_queue:
            raise Unavailable(f"the model's queue is full ({self._max_queue} requests waiting)")

    async def submit(self, inputs: Tensors, timeout_s: float | None = None, info: RequestInfo | None = None) -> Tensors:
        """Queue one request and wait for its outputs. Cancelling the caller (a client
        that went away) leaves a cancelled future the workers skip."""
        self.check_capacity()
        rows = _rows(inputs) if self._batching else _first_rows(inputs)
        key = _batch_key(inputs) if self._batching else None
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, rows, key, loop.create_future(), info=info)
        if info is not None:
            info.queued = pending.enqueued_ns
        limit = self._timeout_s if timeout_s is None else min(timeout_s, self._timeout_s)
        pending.expiry = loop.call_later(limit, pending.expire)
        self._queue.append(pending)
        self._wakeup.set()
        return await pending.future

    async def drain(self, timeout_s: float | None = None) -> None:
        """Refuse new requests, let queued and running ones finish (for at most
        ``timeout_s``), then release the models."""
        self._closed = True
        self._idle.clear()
        self._wakeup.set()
        if self._queue or self._busy:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                log.warning("%s: gave up waiting for %d running call(s) after %ss", self._name, self._busy, timeout_s)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for pending in self._queue:
            pending.future.cancel()
        self._queue.clear()
        # A model call stuck past the timeout must not hold up the process's exit.
        self._executor.shutdown(wait=False, cancel_futures=True)
        for runtime in self._runtimes:
            runtime.close()

    async def _work(self, runtime: Runtime) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed and not self._busy:
                    self._idle.set()
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
                if batch and self._call_ns < INLINE_BELOW_NS:
                    _deliver(batch, self._run(runtime, batch))
                elif batch:
                    results = await loop.run_in_executor(self._executor, self._run, runtime, batch)
                    _deliver(batch, results)
            finally:
                self._busy -= 1
                if self._closed and not self._busy and not self._queue:
                    self._idle.set()

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
        """Drop requests whose client left or whose deadline passed while queued."""
        return [pending for pending in batch if pending.take()]

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
        # An exponential moving average of the model call: what decides inline or thread.
        self._call_ns += (predicted - merged - self._call_ns) // 8
        for pending in batch:
            if pending.info is not None:
                pending.info.computing, pending.info.computed, pending.info.batch_size = start, done, len(batch)
        self._stats.record_execution(
            len(batch),
            rows,
            [start - p.enqueued_ns for p in batch],
            merged - start,
            predicted - merged,
            done - predicted,
        )
        return results


def _batch_key(inputs: Tensors) -> Hashable:
    if len(inputs) == 1:
        ((name, array),) = inputs.items()
        return (name, array.dtype.str, array.shape[1:])
    # Sorted, so requests that list the same inputs in another order still batch.
    return tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in inputs.items()))


def _rows(inputs: Tensors) -> int:
    """Rows along the batch axis; every input must agree, or one request's rows would
    be split into another's answer."""
    if len(inputs) == 1:
        return _first_rows(inputs)
    sizes = {a.shape[0] if a.ndim else 1 for a in inputs.values()}
    if len(sizes) != 1:
        detail = ", ".join(f"{n}: {a.shape[0] if a.ndim else 1}" for n, a in inputs.items())
        raise InvalidInput(f"every input must have the same first (batch) dimension; got {detail}")
    return sizes.pop()


def _first_rows(inputs: Tensors) -> int:
    first = next(iter(inputs.values()))
    return first.shape[0] if first.ndim else 1


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
    # The details (and any paths in them) go to the log, not to the client.
    log.error("model call failed", exc_info=exc)
    return ModelFailed(f"the model failed while running the request ({type(exc).__name__}); see the server log")
