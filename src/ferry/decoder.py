"""Decoding request bodies without stalling the event loop: big JSON bodies are decoded
in a worker process, small ones inline.

Not a thread: orjson and numpy hold the GIL while they parse, so a thread stops the
event loop just the same (a 110 MiB V2 body stalled it 2.3 s in a thread against 0.6 s
inline; in a worker process, 0.08 s, the copies in and out). Small bodies stay inline:
below a megabyte a decode takes a few milliseconds, less than the round trip."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from ferry.errors import Unavailable
from ferry.inference import InferRequest
from ferry.signature import Signature

log = logging.getLogger("ferry")

# Imported once by the worker processes' fork server, not by each worker.
PRELOAD = ["ferry.codecs.v1", "ferry.codecs.v2"]
# Decodes of big bodies at once; more queue. One per two cores, leaving the rest to
# the event loop and the models.
WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))

PayloadT = TypeVar("PayloadT", contravariant=True)


class Decodes(Protocol[PayloadT]):
    def decode(self, payload: PayloadT, signature: Signature) -> InferRequest: ...

    def parse_size(self, payload: PayloadT) -> int: ...


class Decoder:
    """``codec.decode(payload, signature)``, in a worker process when the codec says the
    payload has ``offload_bytes`` or more of text to parse (0: always inline). The
    codec, payload and signature are pickled to the worker, the request back."""

    def __init__(self, offload_bytes: int) -> None:
        self._offload_bytes = offload_bytes
        self._pool: ProcessPoolExecutor | None = None

    def offloads(self, codec: Decodes[Any], payload: Any) -> bool:
        return 0 < self._offload_bytes <= codec.parse_size(payload)

    async def decode(self, codec: Decodes[PayloadT], payload: PayloadT, signature: Signature) -> InferRequest:
        if not self.offloads(codec, payload):
            return codec.decode(payload, signature)
        try:
            pool = self._start()
            decoded = asyncio.get_running_loop().run_in_executor(pool, codec.decode, payload, signature)
        except OSError as exc:
            # No processes to be had (limits, no writable temporary directory): slower for
            # the others, still an answer for this one.
            log.warning("cannot start request decoding workers (%s): decoding every body inline", exc)
            self._offload_bytes = 0
            return codec.decode(payload, signature)
        try:
            return await decoded
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the next big body gets a fresh pool.
            log.error("a request decoding worker stopped; starting new ones")
            if self._pool is pool:
                self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("the request could not be decoded: its worker process stopped; retry") from None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # A fork server, not fork: this process runs threads (gRPC, onnxruntime, the
            # batchers) whose locks a forked child could inherit held.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            self._pool = ProcessPoolExecutor(WORKERS, mp_context=context, initializer=_ignore_interrupts)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _ignore_interrupts() -> None:
    # Ctrl+C reaches the whole process group: the server stops its workers itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
