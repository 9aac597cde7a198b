"""What the web app's playground shows for each input of a model: an image drop zone, a
drawing canvas, a text box, a form with a field per feature, or a JSON editor. Chosen
from config.yaml's ``playground`` section when it names one, else guessed from the
input's datatype, shape and preprocess step."""

from __future__ import annotations

import math
from typing import Any

from ferry.config import PlaygroundInput
from ferry.manager import LoadedVersion
from ferry.signature import TensorSpec

# Numeric inputs of at most this many columns get one form field each.
MAX_FORM_FEATURES = 32
# Square grayscale inputs from 8x8 to this side get a canvas (small, as the 8x8 digits).
MAX_CANVAS_SIDE = 64
# A JSON editor is pre-filled with zeros for inputs of at most this many elements.
MAX_EXAMPLE_ELEMENTS = 4096


def widgets(loaded: LoadedVersion) -> list[dict[str, Any]]:
    images = {image.name for image in loaded.pipeline.images} if loaded.pipeline is not None else set()
    hints = loaded.config.playground.inputs
    return [widget(spec, spec.name in images, hints.get(spec.name)) for spec in loaded.signature.inputs]


def widget(spec: TensorSpec, is_image: bool, hint: PlaygroundInput | None = None) -> dict[str, Any]:
    """The input's name, datatype, shape, and ``kind`` with what that kind needs."""
    described: dict[str, Any] = {**spec.to_json(), **_guess(spec, is_image)}
    if hint is None:
        return described
    if hint.widget is not None and hint.widget != described["kind"]:
        described = {**spec.to_json(), **_forced(spec, hint.widget)}
    if described["kind"] == "canvas":
        height, width = hint.size or (described["height"], described["width"])
        described.update(height=height, width=width, range=list(hint.range or described["range"]))
    if described["kind"] == "form" and hint.features:
        described["features"] = hint.features
    return described


def _guess(spec: TensorSpec, is_image: bool) -> dict[str, Any]:
    one = _one_row(spec.shape)
    if is_image:
        return {"kind": "image", "batch_shape": one}
    if spec.datatype == "BYTES":
        return {"kind": "text", "batch_shape": one}
    side = _square_side(spec.shape)
    if side is not None:
        return {"kind": "canvas", "batch_shape": one, "height": side, "width": side, "range": _ink_range(spec)}
    if len(spec.shape) == 2 and 0 < spec.shape[1] <= MAX_FORM_FEATURES:
        return {"kind": "form", "batch_shape": one, "features": [f"feature {i}" for i in range(spec.shape[1])]}
    return {"kind": "json", "batch_shape": one, "example": _zeros(one)}


def _forced(spec: TensorSpec, kind: str) -> dict[str, Any]:
    """Widget ``kind`` for ``spec`` whatever its shape, with the defaults that kind needs."""
    one = _one_row(spec.shape)
    if kind == "canvas":
        # A square side from the input's elements per row; config.yaml's size overrides it.
        side = math.isqrt(max(1, math.prod(one[1:])))
        return {"kind": kind, "batch_shape": one, "height": side, "width": side, "range": _ink_range(spec)}
    if kind == "form":
        columns = math.prod(one[1:]) if len(one) > 1 else 1
        return {"kind": kind, "batch_shape": one, "features": [f"feature {i}" for i in range(columns)]}
    if kind == "json":
        return {"kind": kind, "batch_shape": one, "example": _zeros(one)}
    return {"kind": kind, "batch_shape": one}


def _ink_range(spec: TensorSpec) -> list[float]:
    """Pixel values of a canvas by default: 0-255 for 8-bit images, else 0-1."""
    return [0.0, 255.0] if spec.datatype == "UINT8" else [0.0, 1.0]


def _one_row(shape: tuple[int, ...]) -> list[int]:
    """The shape of one request: any-size dimensions (-1) taken as 1."""
    return [1 if d < 0 else d for d in shape]


def _square_side(shape: tuple[int, ...]) -> int | None:
    """H for a grayscale square image input: [N, H*H], [N, H, H] or [N, 1, H, H]."""
    dims = list(shape[1:])
    if len(dims) == 3 and dims[0] == 1:
        dims = dims[1:]
    if len(dims) == 2 and dims[0] == dims[1]:
        side = dims[0]
    elif len(dims) == 1 and dims[0] > 0 and math.isqrt(dims[0]) ** 2 == dims[0]:
        side = math.isqrt(dims[0])
    else:
        return None
    return side if 8 <= side <= MAX_CANVAS_SIDE else None


def _zeros(shape: list[int]) -> Any:
    if math.prod(shape) > MAX_EXAMPLE_ELEMENTS:
        return None
    if not shape:
        return 0
    return [_zeros(shape[1:]) for _ in range(shape[0])] if len(shape) > 1 else [0] * shape[0]
