"""Train a small image classifier on synthetic shapes and save it as a Ferry model
repository entry that takes encoded images (PNG, JPEG, WebP) and answers class names.

Everything happens offline and in memory: Pillow draws 64x64 RGB images of five shapes
(circle, square, triangle, star, cross) at random sizes, positions and rotations, in
random colours on random backgrounds, filled or outlined, with pixel noise; a small CNN
learns them with torch on the CPU in a few seconds; the model is exported to ONNX and
checked against torch in onnxruntime. The result is

    <out>/shapes/1/model.onnx   input "image" FP32 [batch, 3, 64, 64], output "logits" [batch, 5]
    <out>/shapes/config.yaml    preprocess (decode, scale, normalise) and postprocess (top 3 labels)
    <out>/shapes/labels.txt     one class name per line, in the order of the logits
    <out>/shapes/samples/       one PNG per class to try it with (``main`` only)

Run: ``.venv/bin/python examples/shapes/build.py [--out DIR]`` (default: examples/models).
"""

from __future__ import annotations

import argparse
import io
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw, ImageFilter
from torch import nn

CLASSES = ("circle", "square", "triangle", "star", "cross")
SIZE = 64
# Shapes are drawn at this multiple of SIZE and scaled down: anti-aliased edges, as in a
# real photo or screenshot, rather than the jagged ones ImageDraw makes.
SUPERSAMPLE = 2

# The normalisation the network is trained with; config.yaml tells Ferry to do the same
# to every uploaded image: (pixel * SCALE - MEAN) / STD, per channel.
SCALE = 1 / 255
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

TRAIN_IMAGES = 5000
TEST_IMAGES = 1000
# Seeds of the image generator: the training and the held-out set never share an image,
# and draw_png's callers (tests, docs) use seeds of their own, well above these.
TRAIN_SEED = 1
TEST_SEED = 2
SAMPLE_SEED = 10_000
EPOCHS = 8
BATCH = 64
MIN_ACCURACY = 0.9

CONFIG = f"""\
description: Shape classifier (circle, square, triangle, star, cross) on 64x64 RGB images; a small CNN in ONNX
max_batch_size: 32
preprocess:
  - input: image
    image:
      mode: RGB
      size: [{SIZE}, {SIZE}]
      # larger images: shorter side to {SIZE}, then the centre {SIZE}x{SIZE}
      resize: {SIZE}
      scale: {SCALE!r}
      mean: {list(MEAN)}
      std: {list(STD)}
      layout: NCHW
postprocess:
  - output: logits
    labels: labels.txt
    top_k: 3
    softmax: true
"""


# -- drawing --------------------------------------------------------------------------


def _polygon(points: int, radius: float, angle: float, inner: float | None = None) -> np.ndarray:
    """Vertices of a regular polygon (or, with ``inner``, a star) around the origin;
    ``inner`` is the radius of every second vertex, as a fraction of ``radius``."""
    count = points * 2 if inner is not None else points
    theta = angle + np.arange(count) * 2 * math.pi / count
    radii = np.full(count, radius)
    if inner is not None:
        radii[1::2] *= inner
    return np.stack([radii * np.cos(theta), radii * np.sin(theta)], axis=1)


def _cross(radius: float, angle: float, arm: float) -> np.ndarray:
    """A plus sign of half-width ``arm`` (a fraction of ``radius``), rotated by ``angle``."""
    a = arm
    corners = np.array(
        [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)]
    )
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return radius * corners @ rotation.T


def _outline(shape: str, radius: float, rng: np.random.Generator) -> np.ndarray | None:
    """The shape's vertices around the origin, or None for the circle (an ellipse)."""
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "square":
        # Circumradius; a square's side is then radius * sqrt(2).
        return _polygon(4, radius, angle)
    if shape == "triangle":
        return _polygon(3, radius, angle)
    if shape == "star":
        return _polygon(5, radius, angle, inner=rng.uniform(0.38, 0.5))
    if shape == "cross":
        return _cross(radius, angle, arm=rng.uniform(0.22, 0.34))
    return None


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and a foreground colour far enough apart to tell the shape from it."""
    background = rng.integers(0, 256, 3)
    while True:
        foreground = rng.integers(0, 256, 3)
        if np.linalg.norm(foreground - background) > 120:
            return tuple(int(c) for c in background), tuple(int(c) for c in foreground)


def draw(shape: str, rng: np.random.Generator) -> np.ndarray:
    """One SIZE x SIZE RGB image (uint8, HWC) of ``shape`` with random looks."""
    scale = SUPERSAMPLE
    background, foreground = _colours(rng)
    image = Image.new("RGB", (SIZE * scale, SIZE * scale), background)
    canvas = ImageDraw.Draw(image)
    # Circumradius in output pixels; the whole shape stays inside the image.
    radius = rng.uniform(11, 28)
    cx, cy = rng.uniform(radius + 1, SIZE - radius - 1, 2)
    filled = rng.random() < 0.7
    width = int(rng.integers(2, 5)) * scale
    vertices = _outline(shape, radius, rng)
    if vertices is None:
        box = [(cx - radius) * scale, (cy - radius) * scale, (cx + radius) * scale, (cy + radius) * scale]
        if filled:
            canvas.ellipse(box, fill=foreground)
        else:
            canvas.ellipse(box, outline=foreground, width=width)
    else:
        points = [(float(x), float(y)) for x, y in np.add(vertices, (cx, cy)) * scale]
        if filled:
            canvas.polygon(points, fill=foreground)
        else:
            canvas.polygon(points, outline=foreground, width=width)
    image = image.resize((SIZE, SIZE), Image.Resampling.BOX)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    # Sensor-like noise, from none to plainly visible.
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, rng.uniform(0, 14), (SIZE, SIZE, 3))
    return np.clip(pixels, 0, 255).round().astype(np.uint8)


def draw_png(shape: str, seed: int = SAMPLE_SEED) -> bytes:
    """A PNG of one freshly drawn ``shape`` (one of CLASSES), for tests and docs; the
    same seed draws the same image."""
    if shape not in CLASSES:
        raise ValueError(f"unknown shape {shape!r}; one of {', '.join(CLASSES)}")
    rng = np.random.default_rng([seed, CLASSES.index(shape)])
    buffer = io.BytesIO()
    Image.fromarray(draw(shape, rng)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_dataset(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (uint8, NHWC) and their class indices, the classes in turn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % len(CLASSES)
    images = np.stack([draw(CLASSES[label], rng) for label in labels])
    return images, labels


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC images -> the network's FP32 NCHW input, normalised exactly as
    config.yaml's preprocess step does on the server."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() * SCALE
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


# -- the network ----------------------------------------------------------------------


def make_model() -> nn.Module:
    """Four conv blocks halve the image to 4x4; global average pooling makes the answer
    independent of where the shape is, and keeps the parameter count small (~25k)."""

    def block(channels_in: int, channels_out: int) -> list[nn.Module]:
        return [
            nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]

    return nn.Sequential(
        *block(3, 12),
        *block(12, 24),
        *block(24, 32),
        *block(32, 48),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(48, len(CLASSES)),
    )


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = EPOCHS * math.ceil(len(x) / BATCH)
    # One-cycle: a short warm-up, then a decay to ~0, which gets far in few epochs.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=6e-3, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
            scheduler.step()
    model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    predictions = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((predictions == y).float().mean())


# -- ONNX -----------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, SIZE, SIZE)
    with warnings.catch_warnings():
        # The TorchScript-based exporter (dynamo=False) needs no onnxscript, which Ferry
        # does not depend on; it warns that it is no longer the default.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )


@torch.no_grad()
def check_onnx(model: nn.Module, path: Path, x: torch.Tensor) -> None:
    """onnxruntime must give torch's logits (to float rounding) on a few samples."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"image": x.numpy()})
    expected = model(x).numpy()
    if not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        raise RuntimeError(f"onnxruntime disagrees with torch: max difference {np.abs(got - expected).max():.2e}")


# -- putting it together --------------------------------------------------------------


def _timed(label: str, timings: dict[str, float], step: Callable[[], object]) -> object:
    started = time.perf_counter()
    result = step()
    timings[label] = time.perf_counter() - started
    return result


def build(out: Path, verbose: bool = False) -> float:
    """Generate the data, train, export and write ``<out>/shapes``; the held-out accuracy.
    Raises if the accuracy is below MIN_ACCURACY or ONNX and torch disagree."""
    torch.manual_seed(0)
    # Small and reproducible: the same threads on every machine (the CI box has two cores).
    torch.set_num_threads(2)
    timings: dict[str, float] = {}

    def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (*make_dataset(TRAIN_IMAGES, TRAIN_SEED), *make_dataset(TEST_IMAGES, TEST_SEED))

    train_images, train_labels, test_images, test_labels = _timed("data", timings, data)  # type: ignore[misc]
    x_train, y_train = to_tensor(train_images), torch.from_numpy(train_labels)
    x_test, y_test = to_tensor(test_images), torch.from_numpy(test_labels)

    model = make_model()
    _timed("train", timings, lambda: train(model, x_train, y_train))
    held_out = accuracy(model, x_test, y_test)
    if held_out < MIN_ACCURACY:
        raise RuntimeError(f"held-out accuracy {held_out:.3f} is below {MIN_ACCURACY}")

    target = out / "shapes"
    model_path = target / "1" / "model.onnx"
    _timed("export", timings, lambda: export_onnx(model, model_path))
    check_onnx(model, model_path, x_test[:16])
    (target / "config.yaml").write_text(CONFIG)
    (target / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    if verbose:
        steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in timings.items())
        print(f"shapes: {len(x_train)} training and {len(x_test)} held-out images; {steps}")
    return held_out


def write_samples(directory: Path) -> None:
    """One PNG per class, to try the served model with (``curl -F image=@circle.png``)."""
    directory.mkdir(parents=True, exist_ok=True)
    for shape in CLASSES:
        (directory / f"{shape}.png").write_bytes(draw_png(shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    args = parser.parse_args()
    started = time.perf_counter()
    held_out = build(args.out, verbose=True)
    write_samples(args.out / "shapes" / "samples")
    print(
        f"shapes: held-out accuracy {held_out:.3f}, built in {time.perf_counter() - started:.1f}s, "
        f"saved under {args.out / 'shapes'}"
    )


if __name__ == "__main__":
    main()
