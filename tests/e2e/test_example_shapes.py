"""examples/shapes: an image classifier trained here with torch (offline, about half a
minute), served as ONNX by a real ``ferry serve`` with config.yaml's image preprocessing
and labels. Clients upload PNGs (a form, or binary BYTES with tritonclient) and get class
names. Run with -s for the accuracy, build time and latency."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from PIL import Image

from tests.e2e.conftest import BuiltExamples
from tests.e2e.server import Server, running

# The first test here may build the examples (the shapes CNN trains for 30-60 s on two
# cores); the per-test timeout covers its fixtures too.
pytestmark = pytest.mark.timeout(300)
ROOT = Path(__file__).resolve().parents[2]
SEEDS = range(20_000, 20_006)  # images no training or held-out set drew


@dataclass
class Example:
    server: Server
    build: ModuleType  # examples/shapes/build.py
    accuracy: float
    seconds: float


@pytest.fixture(scope="module")
def shapes(examples: BuiltExamples, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    with running([examples.repo], tmp_path_factory.mktemp("shapes-log") / "server.log") as server:
        yield Example(server, examples.shapes, examples.shapes_accuracy, examples.shapes_seconds)


def infer_form(server: Server, *images: bytes) -> dict[str, list[object]]:
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(images)]
    answer = requests.post(f"{server.url}/v2/models/shapes/infer", files=files, timeout=30)
    assert answer.status_code == 200, answer.text
    return {o["name"]: o for o in answer.json()["outputs"]}


def test_metadata_is_the_signature_clients_use(shapes: Example) -> None:
    meta = requests.get(f"{shapes.server.url}/v2/models/shapes", timeout=10).json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    names = [o["name"] for o in meta["outputs"]]
    assert names == ["logits", "classes", "scores"]
    print(f"\n[shapes] held-out accuracy {shapes.accuracy:.3f}, built in {shapes.seconds:.1f} s")
    assert shapes.accuracy >= 0.9


def test_a_png_upload_gets_the_right_top_label(shapes: Example) -> None:
    right = total = 0
    for shape in shapes.build.CLASSES:
        for seed in SEEDS:
            outputs = infer_form(shapes.server, shapes.build.draw_png(shape, seed))
            classes, scores = outputs["classes"], outputs["scores"]
            assert classes["shape"] == [1, 3] and scores["shape"] == [1, 3]
            assert scores["data"][0] >= scores["data"][1] >= scores["data"][2]
            right += classes["data"][0] == shape
            total += 1
    assert right / total >= 0.9, f"{right}/{total}"


def test_larger_jpegs_are_resized_and_several_images_are_rows(shapes: Example) -> None:
    pictures = []
    for shape in ("circle", "star"):
        big = Image.open(io.BytesIO(shapes.build.draw_png(shape, 20_100))).resize((256, 256))
        buffer = io.BytesIO()
        big.convert("RGB").save(buffer, format="JPEG", quality=90)
        pictures.append(buffer.getvalue())
    outputs = infer_form(shapes.server, *pictures)
    assert outputs["classes"]["shape"] == [2, 3]
    assert outputs["classes"]["data"][0::3] == ["circle", "star"]


def test_tritonclient_class_count(shapes: Example) -> None:
    client = httpclient.InferenceServerClient(shapes.server.address)
    image = httpclient.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(np.array([shapes.build.draw_png("triangle", 20_200)], dtype=object), binary_data=True)
    top = httpclient.InferRequestedOutput("logits", binary_data=True, class_count=3)
    result = client.infer("shapes", [image], outputs=[top])
    [first, *_] = result.as_numpy("logits").reshape(-1)
    score, index, label = first.decode().split(":")
    assert label == "triangle" and int(index) == shapes.build.CLASSES.index("triangle") and float(score) > 0.5


def test_a_broken_upload_is_a_400_and_the_model_keeps_serving(shapes: Example) -> None:
    url = f"{shapes.server.url}/v2/models/shapes/infer"
    answer = requests.post(url, files={"image": ("x.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")}, timeout=10)
    assert answer.status_code == 400
    assert "row 0" in answer.json()["error"]
    assert infer_form(shapes.server, shapes.build.draw_png("square", 20_300))["classes"]["data"][0] == "square"


def test_latency(shapes: Example) -> None:
    png = shapes.build.draw_png("cross", 20_400)
    with requests.Session() as session:
        times = []
        for _ in range(35):
            started = time.perf_counter()
            answer = session.post(
                f"{shapes.server.url}/v2/models/shapes/infer", files={"image": ("c.png", png, "image/png")}, timeout=10
            )
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200
    median = statistics.median(times[5:])
    print(f"\n[shapes] one 64x64 PNG per request (form upload): median {median:.1f} ms over 30 requests")
