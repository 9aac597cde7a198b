"""ferry.decoder: big JSON bodies are decoded in a worker process, so the event loop
keeps serving other requests meanwhile; small ones inline. The workers are real
processes: the codecs below are importable, so they can be pickled to them."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import pytest

from ferry.codecs.v2 import V2Codec, V2Payload
from ferry.decoder import Decoder
from ferry.errors import InvalidInput
from ferry.inference import InferRequest
from ferry.signature import Signature

T = TypeVar("T")
OFFLOAD_BYTES = 1000
SIGNATURE = Signature(inputs=(), outputs=())
# How long a blocked decode waits to be released: a test that fails waits this long.
RELEASE_WAIT_S = 10.0


class PidCodec(V2Codec):
    """The V2 codec, noting the process it decoded in."""

    def decode(self, payload: V2Payload, signature: object) -> InferRequest:
        request = super().decode(payload, signature)
        request.parameters["pid"] = os.getpid()
        return request


class HeldCodec(V2Codec):
    """The V2 codec, which says it has started and then waits for the test to release it."""

    def __init__(self, started: Path, release: Path) -> None:
        super().__init__(1 << 30)
        self.started, self.release = started, release

    def decode(self, payload: V2Payload, signature: object) -> InferRequest:
        self.started.touch()
        deadline = time.monotonic() + RELEASE_WAIT_S
        while not self.release.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("never released: the test could not run while this decode ran")
            time.sleep(0.01)
        return super().decode(payload, signature)


def body(rows: int) -> V2Payload:
    data = np.arange(rows * 4, dtype=np.float32).tolist()
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 4], "data": data}]}
    return V2Payload(orjson.dumps(doc), None)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, 60)

    return asyncio.run(bounded())


def test_small_bodies_are_decoded_inline_and_big_ones_in_a_worker() -> None:
    small, big = body(1), body(1000)
    assert len(small.body) < OFFLOAD_BYTES <= len(big.body)
    codec = PidCodec(1 << 30)

    async def decode_both() -> tuple[InferRequest, InferRequest]:
        decoder = Decoder(OFFLOAD_BYTES)
        try:
            return await decoder.decode(codec, small, SIGNATURE), await decoder.decode(codec, big, SIGNATURE)
        finally:
            decoder.close()

    inline, offloaded = run(decode_both())
    assert inline.parameters["pid"] == os.getpid()
    assert offloaded.parameters["pid"] != os.getpid()
    assert offloaded.inputs["x"].dtype == np.float32
    np.testing.assert_array_equal(offloaded.inputs["x"], np.arange(4000, dtype=np.float32).reshape(1000, 4))


def test_only_the_json_of_a_binary_body_counts() -> None:
    header = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "UINT8", "shape": [4096], "parameters": {"binary_data_size": 4096}}]}
    )
    payload = V2Payload(header + bytes(4096), str(len(header)))
    assert not Decoder(OFFLOAD_BYTES).offloads(V2Codec(1 << 30), payload)
    assert Decoder(OFFLOAD_BYTES).offloads(V2Codec(1 << 30), body(1000))


def test_zero_decodes_everything_inline() -> None:
    request = run(Decoder(0).decode(PidCodec(1 << 30), body(1000), SIGNATURE))
    assert request.parameters["pid"] == os.getpid()


def test_a_worker_refuses_bad_input_as_the_event_loop_would() -> None:
    async def decode() -> InferRequest:
        decoder = Decoder(OFFLOAD_BYTES)
        try:
            return await decoder.decode(V2Codec(1 << 30), V2Payload(b"[" * 2000, None), SIGNATURE)
        finally:
            decoder.close()

    with pytest.raises(InvalidInput, match="malformed JSON"):
        run(decode())


def test_small_requests_are_decoded_while_a_big_one_is(tmp_path: Path) -> None:
    started, release = tmp_path / "started", tmp_path / "release"
    held = HeldCodec(started, release)

    async def scenario() -> None:
        decoder = Decoder(OFFLOAD_BYTES)
        try:
            big = asyncio.create_task(decoder.decode(held, body(1000), SIGNATURE))
            deadline = time.monotonic() + RELEASE_WAIT_S
            while not started.exists():  # the big decode has begun (in its worker, or here)
                assert time.monotonic() < deadline, "the big decode never started"
                await asyncio.sleep(0.01)
            small = await decoder.decode(V2Codec(1 << 30), body(1), SIGNATURE)
            assert small.inputs["x"].shape == (1, 4)
            assert not big.done()
            release.touch()
            assert (await big).inputs["x"].shape == (1000, 4)
        finally:
            decoder.close()

    run(scenario())
