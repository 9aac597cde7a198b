"""The response cache's parts: keys, the in-memory LRU by bytes, the Redis entry format,
and which configs may have a cache (the served cache: tests/integration/test_cache.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ferry.cache import MemoryStore, build_cache, pack, request_key, tensors_size, unpack
from ferry.config import ModelConfig, parse_config
from ferry.errors import ConfigError
from ferry.inference import InferRequest, RequestedOutput


def _request(x: np.ndarray, outputs: list[RequestedOutput] | None = None) -> InferRequest:
    return InferRequest(inputs={"x": x}, outputs=outputs)


X = np.arange(8, dtype=np.float32).reshape(2, 4)


def test_the_same_request_has_the_same_key() -> None:
    assert request_key("m", "1", _request(X)) == request_key("m", "1", _request(X.copy()))
    # A view in another memory order holds the same tensor.
    assert request_key("m", "1", _request(np.asfortranarray(X))) == request_key("m", "1", _request(X))


@pytest.mark.parametrize(
    ("model", "version", "request_"),
    [
        ("other", "1", _request(X)),
        ("m", "2", _request(X)),
        ("m", "1", _request(X + np.float32(1e-6))),
        ("m", "1", _request(X.reshape(4, 2))),
        ("m", "1", _request(X.astype(np.float64))),
        ("m", "1", InferRequest(inputs={"y": X})),
        ("m", "1", _request(X, [RequestedOutput("y")])),
        ("m", "1", _request(X, [RequestedOutput("y", parameters={"classification": 2})])),
    ],
)
def test_anything_that_changes_the_answer_changes_the_key(model: str, version: str, request_: InferRequest) -> None:
    assert request_key(model, version, request_) != request_key("m", "1", _request(X))


def test_text_inputs_are_keyed_by_their_bytes() -> None:
    def text(*items: bytes) -> InferRequest:
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return InferRequest(inputs={"t": array})

    # Length-prefixed: ["ab", "c"] is not ["a", "bc"].
    assert request_key("m", "1", text(b"ab", b"c")) != request_key("m", "1", text(b"a", b"bc"))
    assert request_key("m", "1", text(b"ab", b"c")) == request_key("m", "1", text(b"ab", b"c"))


def _entry(size: int) -> dict[str, np.ndarray]:
    return {"y": np.zeros(size, dtype=np.uint8)}


def test_the_least_recently_used_answers_go_first_by_bytes() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_bytes=1000)
        for key in (b"a", b"b"):
            await store.put(key, _entry(400))
        assert await store.get(b"a") is not None  # a is now the most recent
        await store.put(b"c", _entry(400))  # 1200 bytes: b goes
        assert await store.get(b"b") is None
        assert await store.get(b"a") is not None and await store.get(b"c") is not None
        assert store.counts() == (1, 800)
        await store.put(b"huge", _entry(1001))  # could never fit: nothing is evicted for it
        assert await store.get(b"huge") is None and store.counts() == (1, 800)

    asyncio.run(scenario())


def test_stored_answers_are_copies_no_one_can_change() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_bytes=1000)
        answer = {"y": np.arange(4, dtype=np.int64)}
        await store.put(b"k", answer)
        answer["y"][0] = 99  # the batch's buffer, reused
        held = await store.get(b"k")
        assert held is not None and held["y"].tolist() == [0, 1, 2, 3]
        with pytest.raises(ValueError, match="read-only"):
            held["y"][0] = 5

    asyncio.run(scenario())


def test_answers_expire_after_their_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("ferry.cache.time.monotonic", lambda: now[0])

    async def scenario() -> None:
        store = MemoryStore(max_bytes=1000, ttl_s=5)
        await store.put(b"k", _entry(10))
        now[0] += 4.9
        assert await store.get(b"k") is not None
        now[0] += 0.2
        assert await store.get(b"k") is None
        assert store.counts() == (0, 0)

    asyncio.run(scenario())


def test_the_shared_format_round_trips_every_datatype() -> None:
    text = np.empty((1, 2), dtype=object)
    text[0, :] = [b"caf\xc3\xa9", b""]
    tensors = {
        "f32": np.array([[1.5, -2.0]], dtype=np.float32),
        "f16": np.array([0.5], dtype=np.float16),
        "i64": np.array([2**40], dtype=np.int64),
        "u8": np.array([255], dtype=np.uint8),
        "b": np.array([True, False]),
        "text": text,
        "scalar": np.array(3.0),
    }
    back = unpack(pack(tensors))
    assert back is not None and back.keys() == tensors.keys()
    for name, array in tensors.items():
        assert back[name].shape == array.shape and back[name].dtype == array.dtype, name
        assert back[name].tolist() == array.tolist(), name


@pytest.mark.parametrize(
    "data",
    [b"", b"\x05\x00\x00\x00[1,2", b"\x02\x00\x00\x00{}", b'\x1a\x00\x00\x00[["y","|O8",[1],8]]' + b"\0" * 8],
)
def test_anything_else_from_the_shared_store_is_a_miss(data: bytes) -> None:
    assert unpack(data) is None


def test_sizes_count_text_elements() -> None:
    text = np.empty(2, dtype=object)
    text[:] = [b"x" * 100, b"y"]
    assert tensors_size({"t": text}) >= 101
    assert tensors_size({"y": np.zeros(10, dtype=np.float64)}) == 80


def test_a_model_that_is_not_deterministic_cannot_have_a_cache() -> None:
    with pytest.raises(ConfigError, match="not deterministic"):
        parse_config({"cache": {"max_bytes": 1000}, "deterministic": False})

    class Sampling:
        deterministic = False

    config = ModelConfig.model_validate({"cache": {"max_bytes": 1000}})
    with pytest.raises(ConfigError, match="deterministic = False"):
        build_cache("m", "1", config, Sampling(), None)


def test_a_shared_cache_needs_redis() -> None:
    config = ModelConfig.model_validate({"cache": {"max_bytes": 1000, "shared": True}})
    with pytest.raises(ConfigError, match="FERRY_REDIS_URL"):
        build_cache("m", "1", config, object(), None)
    assert build_cache("m", "1", ModelConfig(), object(), None) is None


@pytest.mark.parametrize("cache", [{"max_bytes": 0}, {"max_bytes": 10, "ttl_s": 0}, {"max_bytes": 10, "size": 3}])
def test_cache_settings_are_checked(cache: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="cache"):
        parse_config({"cache": cache})
