"""Image pre-processing on its own: 16-bit pictures scaled to 8 bits as before without
float64 copies of the whole image, and Pillow's decompression-bomb guard as a 400."""

from __future__ import annotations

import asyncio
import io
import struct
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from ferry.config import ModelConfig
from ferry.errors import InvalidInput
from ferry.pipeline import Pipeline, build_pipeline
from ferry.pipeline.image import to_8_bit
from ferry.signature import Signature, TensorSpec


def old_to_8_bit(values: np.ndarray, top: float) -> np.ndarray:
    """The float64 formula to_8_bit used to apply to the whole image."""
    return np.clip(values.astype(np.float64) / top * 255.0, 0, 255).round().astype(np.uint8)


def test_every_16_bit_value_is_scaled_as_before() -> None:
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    picture = Image.fromarray(every)
    assert picture.mode == "I;16"
    scaled = to_8_bit(picture)
    assert scaled.mode == "L"
    assert np.array_equal(np.asarray(scaled), old_to_8_bit(every, 65535.0))
    # Big-endian 16-bit, and 32-bit "I" (below 0, above 65535 clipped) alike.
    big_endian = Image.frombytes("I;16B", (256, 256), every.astype(">u2").tobytes())
    assert np.array_equal(np.asarray(to_8_bit(big_endian)), old_to_8_bit(every, 65535.0))
    wide = every.astype(np.int32)
    wide[0, :3] = [-5, 70000, 2**31 - 1]
    assert Image.fromarray(wide).mode == "I"
    assert np.array_equal(np.asarray(to_8_bit(Image.fromarray(wide))), old_to_8_bit(wide, 65535.0))


def test_float_pictures_are_scaled_as_before() -> None:
    values = np.random.default_rng(0).uniform(-0.2, 1.2, (300, 301)).astype(np.float32)
    scaled = np.asarray(to_8_bit(Image.fromarray(values))).astype(int)
    # float32 arithmetic now: a value within its rounding error of .5 may go either way
    assert np.abs(scaled - old_to_8_bit(values, 1.0)).max() <= 1


def test_a_16_bit_picture_is_converted_without_a_float64_copy() -> None:
    """The 8-bit result is the one whole-image array: the old float64 copies took 8 times
    its size, several at once (900 MiB for a 6300x6300 PNG)."""
    picture = Image.fromarray(np.full((3000, 3000), 40000, dtype=np.uint16))
    tracemalloc.start()
    try:
        scaled = to_8_bit(picture)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.asarray(scaled)[0, 0] == 156
    assert peak < 2 * 3000 * 3000, f"{peak / 2**20:.0f} MiB for a 9 MiB result"


def bomb(width: int, height: int) -> bytes:
    """A PNG header claiming width x height pixels, with none behind it."""
    header = io.BytesIO()
    Image.new("L", (1, 1)).save(header, format="PNG")
    data = bytearray(header.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def image_pipeline(**image: object) -> Pipeline:
    config = ModelConfig.model_validate({"preprocess": [{"image": {"size": [8, 8], **image}}]})
    signature = Signature((TensorSpec("image", "FP32", (-1, 3, 8, 8)),), (TensorSpec("y", "FP32", (-1, 3)),))
    pipeline = build_pipeline(config, signature, None)
    assert pipeline is not None
    return pipeline


def test_pillows_bomb_warning_is_a_400_even_where_warnings_are_errors() -> None:
    """A model may allow more pixels than Pillow's own guard: Pillow then warns; run with
    warnings as errors (python -W error), the warning is raised, and must still be a 400."""
    pipeline = image_pipeline(max_pixels=10**9, max_request_pixels=10**9)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with pytest.raises(InvalidInput, match="more pixels than the limit of 1000000000"):
                asyncio.run(pipeline.run_preprocess({"image": np.array([bomb(10_000, 10_000)], dtype=object)}))
    finally:
        pipeline.close()
