"""The response cache: answers of a version kept by a hash of what was asked, so a
repeated request skips the queue and the model. Off unless a model's config.yaml asks
for it (``cache: {max_bytes, ttl_s, shared}``), and never for a model whose answers may
differ for the same inputs (``deterministic: false``, or a Python model saying so).

A cached answer belongs to one model version: the key hashes the model, the version,
every input (name, datatype, shape, bytes) and the outputs asked for, so versions never
share, and a key that may not use the model never gets as far as the lookup. Entries are
the selected output tensors, before encoding: a hit is answered in any wire format.

Two stores: ``MemoryStore``, per process, least recently used out first when its bytes
pass ``max_bytes``; ``RedisStore`` (``shared: true`` with ``FERRY_REDIS_URL``), shared by
every node, entries expire after ``ttl_s`` and Redis's own memory policy bounds the rest."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson

from ferry.codecs.tensors import array_from_raw, array_to_raw
from ferry.config import ModelConfig
from ferry.errors import ConfigError, FerryError

if TYPE_CHECKING:
    from ferry.inference import InferRequest

Tensors = dict[str, np.ndarray]


def tensors_size(tensors: Tensors) -> int:
    """Bytes an entry holds: the arrays' buffers, and each element of a BYTES tensor."""
    size = 0
    for array in tensors.values():
        if array.dtype == object:
            size += sum(len(x) if isinstance(x, (bytes, str)) else 8 for x in array.reshape(-1)) + 8 * array.size
        else:
            size += array.nbytes
    return size


def request_key(model: str, version: str, request: InferRequest) -> bytes:
    """The digest of everything that decides the answer: model, version, inputs (name,
    dtype, shape, bytes, in name order) and requested outputs with their parameters."""
    digest = hashlib.blake2b(digest_size=24)
    digest.update(orjson.dumps([model, version]))
    for name in sorted(request.inputs):
        array = request.inputs[name]
        digest.update(orjson.dumps([name, array.dtype.str, list(array.shape)]))
        if array.dtype == object:
            for element in array.reshape(-1):
                data = element if isinstance(element, bytes) else str(element).encode()
                digest.update(struct.pack("<I", len(data)))
                digest.update(data)
        else:
            digest.update(np.ascontiguousarray(array).data)
    if request.outputs is not None:
        digest.update(orjson.dumps([[o.name, sorted(o.parameters.items())] for o in request.outputs], default=str))
    else:
        digest.update(b"*")
    return digest.digest()


class CacheStore(Protocol):
    async def get(self, key: bytes) -> Tensors | None: ...

    async def put(self, key: bytes, tensors: Tensors) -> None: ...

    def counts(self) -> tuple[int, int]:
        """(entries evicted so far, bytes held now); (0, 0) where the store cannot tell."""
        ...


class MemoryStore:
    """Least recently used out first, by bytes. Tensors are stored read-only: a hit
    hands out the same arrays to every request."""

    def __init__(self, max_bytes: int, ttl_s: float | None = None) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._entries: OrderedDict[bytes, tuple[Tensors, int, float]] = OrderedDict()
        self._bytes = 0
        self._evictions = 0
        # Hits come from the event loop; the lock keeps ``counts`` (read at a scrape,
        # from another thread) consistent with the entries.
        self._lock = threading.Lock()

    async def get(self, key: bytes) -> Tensors | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            tensors, size, expires = entry
            if expires and time.monotonic() > expires:
                del self._entries[key]
                self._bytes -= size
                return None
            self._entries.move_to_end(key)
            return tensors

    async def put(self, key: bytes, tensors: Tensors) -> None:
        size = tensors_size(tensors)
        if size > self.max_bytes:  # could never fit: keep what is there
            return
        frozen = {}
        for name, array in tensors.items():
            copy = np.array(array, copy=True)  # never a view of a batch's buffer
            copy.flags.writeable = False
            frozen[name] = copy
        expires = time.monotonic() + self.ttl_s if self.ttl_s else 0.0
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (frozen, size, expires)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, dropped, _) = self._entries.popitem(last=False)
                self._bytes -= dropped
                self._evictions += 1

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self._evictions, self._bytes


class RedisStore:
    """Entries in Redis under ``ferry:cache:<hex key>``, shared by every node; each
    expires after ``ttl_s``. An entry larger than ``max_bytes`` is not stored. A Redis
    that cannot be reached makes every lookup a miss, never a failed request."""

    PREFIX = b"ferry:cache:"

    def __init__(self, client: Any, max_bytes: int, ttl_s: float | None) -> None:
        self._client = client
        self.max_bytes = max_bytes
        self.ttl_ms = int(ttl_s * 1000) if ttl_s else None

    async def get(self, key: bytes) -> Tensors | None:
        from redis.exceptions import RedisError

        try:
            data = await self._client.get(self.PREFIX + key.hex().encode())
        except (RedisError, OSError):
            return None
        return unpack(data) if data is not None else None

    async def put(self, key: bytes, tensors: Tensors) -> None:
        from redis.exceptions import RedisError

        if tensors_size(tensors) > self.max_bytes:
            return
        try:
            await self._client.set(self.PREFIX + key.hex().encode(), pack(tensors), px=self.ttl_ms)
        except (RedisError, OSError):
            return

    def counts(self) -> tuple[int, int]:
        return 0, 0


def pack(tensors: Tensors) -> bytes:
    """Tensors as bytes without pickle (a shared store must never make this process
    run code): a JSON header of names, dtypes and shapes, then each buffer; BYTES
    elements length-prefixed as in the binary tensor extension (ferry.codecs.tensors)."""
    header = []
    buffers = []
    for name, array in tensors.items():
        if array.dtype == object:
            buffer = array_to_raw(array, "BYTES")
            dtype = "bytes"
        else:
            buffer = np.ascontiguousarray(array).tobytes()
            dtype = array.dtype.str
        header.append([name, dtype, list(array.shape), len(buffer)])
        buffers.append(buffer)
    head = orjson.dumps(header)
    return struct.pack("<I", len(head)) + head + b"".join(buffers)


def unpack(data: bytes) -> Tensors | None:
    """``pack``'s tensors; None for anything else (then it is a miss)."""
    try:
        (length,) = struct.unpack_from("<I", data)
        header = orjson.loads(data[4 : 4 + length])
        if not isinstance(header, list) or not header:
            return None
        offset = 4 + length
        tensors: Tensors = {}
        for name, dtype, shape, size in header:
            buffer = data[offset : offset + size]
            if len(buffer) != size:
                return None
            offset += size
            if dtype == "bytes":
                tensors[name] = array_from_raw(name, "BYTES", shape, memoryview(buffer))
            else:
                numeric = np.dtype(dtype)
                if numeric.kind not in "biufc":  # never an object array from a buffer
                    return None
                tensors[name] = np.frombuffer(buffer, dtype=numeric).reshape(shape)
        return tensors if offset == len(data) else None
    except (struct.error, ValueError, TypeError, orjson.JSONDecodeError, FerryError):
        return None


class ResponseCache:
    """One version's cache: its store, and its hits and misses."""

    def __init__(self, model: str, version: str, store: CacheStore) -> None:
        self.model = model
        self.version = version
        self.store = store
        self.hits = 0
        self.misses = 0

    def key(self, request: InferRequest) -> bytes:
        return request_key(self.model, self.version, request)

    async def get(self, key: bytes) -> Tensors | None:
        tensors = await self.store.get(key)
        if tensors is None:
            self.misses += 1
        else:
            self.hits += 1
        return tensors

    async def put(self, key: bytes, tensors: Tensors) -> None:
        await self.store.put(key, tensors)


def build_cache(
    model: str, version: str, config: ModelConfig, runtime: object, shared_client: Any | None
) -> ResponseCache | None:
    """The version's cache as its config asks (None: no cache). ConfigError when it
    cannot have the one asked for."""
    asked = config.cache
    if asked is None:
        return None
    if not getattr(runtime, "deterministic", True):
        raise ConfigError("cache: the model says it is not deterministic (deterministic = False): remove cache")
    store: CacheStore
    if asked.shared:
        if shared_client is None:
            raise ConfigError("cache: shared: true needs a Redis server: set FERRY_REDIS_URL (--redis-url)")
        store = RedisStore(shared_client, asked.max_bytes, asked.ttl_s)
    else:
        store = MemoryStore(asked.max_bytes, asked.ttl_s)
    return ResponseCache(model, version, store)
