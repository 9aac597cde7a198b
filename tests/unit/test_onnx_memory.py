"""How a request refused by the capped ONNX arena is answered: 413 when the tensor could
never fit, 503 when it would fit beside less (the arena itself: tests/e2e/test_process.py)."""

from __future__ import annotations

import pytest

from ferry.errors import PayloadTooLarge, Unavailable
from ferry.runtimes import onnx

MIB = 2**20


@pytest.fixture
def capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx, "_arena_bytes", 256 * MIB)


def test_a_tensor_larger_than_the_cap_is_413(capped: None) -> None:
    refusal = onnx._memory_refusal(4096 * MIB)
    assert isinstance(refusal, PayloadTooLarge)
    assert "4096 MB" in str(refusal) and "256 MB" in str(refusal) and "--onnx-memory-mb" in str(refusal)


def test_a_tensor_that_fits_alone_is_503(capped: None) -> None:
    assert isinstance(onnx._memory_refusal(200 * MIB), Unavailable)


def test_onnxruntimes_message_is_recognised() -> None:
    message = (
        "Non-zero status code returned while running ConstantOfShape node. Status Message: "
        "bfc_arena.cc:360 Available memory of 535822336 is smaller than requested bytes of 4294967296"
    )
    found = onnx._ARENA_FULL.search(message)
    assert found is not None and int(found.group(2)) == 4 * 2**30
