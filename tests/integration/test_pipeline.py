"""Pre- and post-processing from config.yaml (images in, class names out), Triton's
classification extension, multipart uploads, and a Python model's own preprocess and
postprocess around its batched predict; on the real app, in process."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.builders import colour_classifier_onnx, png, python_model
from tests.integration.serving import error_of, index_of, serve, serve_async

RED, GREEN, BLUE = (200, 10, 10), (10, 200, 10), (10, 10, 200)

COLOURS_CONFIG = """
preprocess:
  - input: image
    image: {mode: RGB, size: [8, 8]}
postprocess:
  - output: logits
    labels: labels.txt
    top_k: 2
    softmax: true
"""

WORDS = """
import numpy as np
import ferry
from ferry.signature import TensorSpec


class Words(ferry.Model):
    inputs = [TensorSpec("text", "BYTES", (-1,))]
    outputs = [TensorSpec("words", "INT64", (-1,)), TensorSpec("verdict", "BYTES", (-1,))]
    batchable = True
    calls = []

    def preprocess(self, inputs):
        # text -> a number per row: what predict takes
        return {"count": np.array([len(t.split()) for t in inputs["text"]], dtype=np.int64)}

    def predict(self, inputs):
        type(self).calls.append(len(inputs["count"]))
        return {"words": inputs["count"]}

    def postprocess(self, outputs):
        verdict = np.array([b"long" if n > 3 else b"short" for n in outputs["words"]], dtype=object)
        return {**outputs, "verdict": verdict}
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipelines")
    colour_classifier_onnx(root / "colours" / "1" / "model.onnx")
    (root / "colours" / "config.yaml").write_text(COLOURS_CONFIG)
    (root / "colours" / "labels.txt").write_text("red\ngreen\nblue\n")
    colour_classifier_onnx(root / "gray" / "1" / "model.onnx", channels=1, layout="NHWC")
    (root / "gray" / "config.yaml").write_text("preprocess:\n  - image: {mode: L, resize: 10}\n")
    colour_classifier_onnx(root / "badlabels" / "1" / "model.onnx")
    (root / "badlabels" / "config.yaml").write_text(
        "preprocess: [{image: {}}]\npostprocess: [{labels: [a, b], top_k: 1}]\n"
    )
    python_model(root / "words" / "1", WORDS)
    return root


@pytest.fixture(scope="module")
def client(repo: Path) -> Iterator[TestClient]:
    with serve([repo]) as running:
        yield running


def binary_request(images: list[bytes], outputs: list[dict[str, object]] | None = None) -> tuple[bytes, dict[str, str]]:
    """A V2 request with the images as one binary BYTES tensor, as tritonclient sends it."""
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    doc: dict[str, object] = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [len(images)], "parameters": {"binary_data_size": len(raw)}}
        ]
    }
    if outputs is not None:
        doc["outputs"] = outputs
    header = orjson.dumps(doc)
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def test_metadata_shows_the_signature_after_processing(client: TestClient) -> None:
    meta = client.get("/v2/models/colours").json()
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [
        {"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "classes", "datatype": "BYTES", "shape": [-1, 2]},
        {"name": "scores", "datatype": "FP32", "shape": [-1, 2]},
    ]


def test_multipart_upload_answers_class_names(client: TestClient) -> None:
    answer = client.post("/v2/models/colours/infer", files={"image": ("red.png", png(RED), "image/png")})
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["classes"]["data"][:2] == ["red", "blue"] or outputs["classes"]["data"][0] == "red"
    assert outputs["classes"]["shape"] == [1, 2]
    scores = outputs["scores"]["data"]
    assert scores[0] > scores[1] and 0 < scores[0] <= 1


@pytest.mark.parametrize(("colour", "label"), [(RED, "red"), (GREEN, "green"), (BLUE, "blue")])
def test_several_images_and_formats_in_one_request(
    client: TestClient, colour: tuple[int, int, int], label: str
) -> None:
    images = [png(colour), png(colour, (64, 48), fmt="JPEG"), png(colour, fmt="WEBP"), png(colour, fmt="BMP")]
    body, headers = binary_request(images)
    answer = client.post("/v2/models/colours/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["classes"]["shape"] == [4, 2]
    assert outputs["classes"]["data"][0::2] == [label] * 4


def test_two_files_under_one_field_are_two_rows(client: TestClient) -> None:
    files = [("image", ("a.png", png(RED), "image/png")), ("image", ("b.png", png(BLUE), "image/png"))]
    answer = client.post("/v2/models/colours/infer", files=files)
    classes = {o["name"]: o for o in answer.json()["outputs"]}["classes"]["data"]
    assert classes[0::2] == ["red", "blue"]


def test_triton_classification_extension(client: TestClient) -> None:
    body, headers = binary_request([png(GREEN)], [{"name": "logits", "parameters": {"classification": 2}}])
    answer = client.post("/v2/models/colours/infer", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    [logits] = answer.json()["outputs"]
    assert logits["datatype"] == "BYTES" and logits["shape"] == [1, 2]
    score, index, label = logits["data"][0].split(":")
    assert (index, label) == ("1", "green") and float(score) == pytest.approx(200 / 255, abs=0.01)
    assert logits["data"][1].split(":")[1:] in (["0", "red"], ["2", "blue"])
    # Without labels, "score:index".
    body, headers = binary_request([png(GREEN)], [{"name": "logits", "parameters": {"classification": 1}}])
    plain = client.post("/v2/models/gray/infer", content=body.replace(b'"image"', b'"image"'), headers=headers)
    assert plain.status_code == 200, plain.text
    assert plain.json()["outputs"][0]["data"][0].count(":") == 1
    bad, headers = binary_request([png(GREEN)], [{"name": "logits", "parameters": {"classification": 0}}])
    assert "classification" in error_of(client.post("/v2/models/colours/infer", content=bad, headers=headers), 400)


def test_grayscale_nhwc_with_resize_and_crop(client: TestClient) -> None:
    meta = client.get("/v2/models/gray").json()
    assert meta["inputs"][0] == {"name": "image", "datatype": "BYTES", "shape": [-1]}
    answer = client.post(
        "/v2/models/gray/infer", files={"image": ("g.png", png((128, 128, 128), (40, 20)), "image/png")}
    )
    assert answer.status_code == 200, answer.text
    [logits] = answer.json()["outputs"]
    assert logits["data"][0] == pytest.approx(128 / 255, abs=0.01)


def test_bad_images_are_400_and_the_model_keeps_serving(client: TestClient) -> None:
    cases = {
        "not an image": b"hello, I am text",
        "truncated": png(RED)[:40],
        "empty": b"",
    }
    for what, data in cases.items():
        answer = client.post("/v2/models/colours/infer", files={"image": ("x.png", data, "image/png")})
        message = error_of(answer, 400)
        assert "row 0" in message and ("image" in message), (what, message)
    # A picture that claims 100000 x 100000 pixels: refused from its header, never decoded.
    header = io.BytesIO()
    Image.new("L", (1, 1)).save(header, format="PNG")
    bomb = bytearray(header.getvalue())
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR width, height
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))  # its checksum: still a valid PNG header
    message = error_of(
        client.post("/v2/models/colours/infer", files={"image": ("b.png", bytes(bomb), "image/png")}), 400
    )
    assert "limit of 40000000" in message
    # Within Pillow's own guard, past Ferry's limit: the size is in the message.
    bomb[16:24] = struct.pack(">II", 8000, 8000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    answer = client.post("/v2/models/colours/infer", files={"image": ("b.png", bytes(bomb), "image/png")})
    assert "8000x8000 pixels; the limit is 40000000" in error_of(answer, 400)
    # Not a list of images
    doc = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": ["x"]}]}
    assert "expects rank 1" in error_of(client.post("/v2/models/colours/infer", json=doc), 400)
    # And it still answers.
    ok = client.post("/v2/models/colours/infer", files={"image": ("red.png", png(RED), "image/png")})
    assert ok.status_code == 200


def test_a_config_that_cannot_work_makes_the_model_unavailable(client: TestClient) -> None:
    entry = index_of(client)["badlabels/1"]
    assert entry["state"] == "UNAVAILABLE"
    assert "3 classes but 2 labels" in entry["reason"]


def test_python_model_hooks_around_a_batched_predict(repo: Path) -> None:
    async def scenario() -> list[dict[str, object]]:
        async with serve_async([repo]) as client:
            texts = ["one two", "one two three four five", "a", "so many words in here"] * 4

            async def ask(text: str) -> dict[str, object]:
                doc = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}]}
                answer = await client.post("/v2/models/words/infer", json=doc)
                assert answer.status_code == 200, answer.text
                return {o["name"]: o["data"] for o in answer.json()["outputs"]}

            return list(await asyncio.gather(*(ask(t) for t in texts)))

    answers = asyncio.run(scenario())
    expected = [(2, "short"), (5, "long"), (1, "short"), (5, "long")] * 4
    assert [(a["words"][0], a["verdict"][0]) for a in answers] == expected


def test_python_model_metadata_is_its_declared_signature(client: TestClient) -> None:
    meta = client.get("/v2/models/words").json()
    assert [i["name"] for i in meta["inputs"]] == ["text"]
    assert [o["name"] for o in meta["outputs"]] == ["words", "verdict"]


def test_labels_file_errors(tmp_path: Path) -> None:
    from ferry.config import load_config
    from ferry.errors import ConfigError

    (tmp_path / "config.yaml").write_text("postprocess: [{labels: ../secret.txt}]\n")
    with pytest.raises(ConfigError, match=r"beside config\.yaml"):
        load_config(tmp_path / "config.yaml")
    (tmp_path / "config.yaml").write_text("postprocess: [{labels: missing.txt}]\n")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "config.yaml")
    (tmp_path / "labels.txt").write_text("a\nb\n\n")
    (tmp_path / "config.yaml").write_text("postprocess: [{labels: labels.txt}]\n")
    assert load_config(tmp_path / "config.yaml").postprocess[0].labels == ["a", "b"]


def test_softmax_and_top_k_numbers() -> None:
    from ferry.pipeline.classify import softmax, top_indices

    probabilities = softmax(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    assert probabilities.sum() == pytest.approx(1.0)
    assert top_indices(probabilities, 2).tolist() == [[2, 1]]


def test_v1_predict_takes_base64_images(client: TestClient) -> None:
    import base64

    instances = [{"b64": base64.b64encode(png(colour)).decode()} for colour in (BLUE, RED)]
    answer = client.post("/v1/models/colours:predict", json={"instances": instances})
    assert answer.status_code == 200, answer.text
    assert [p["classes"][0] for p in answer.json()["predictions"]] == ["blue", "red"]


def test_review_findings_on_images(client: TestClient) -> None:
    """A 200000x1 picture is not scaled up whole before the crop; an empty list is a 400;
    too many images a 413; a 16-bit PNG is scaled, not clipped."""
    import time as clock

    strip = io.BytesIO()
    Image.new("RGB", (200_000, 1), (10, 200, 10)).save(strip, format="PNG")
    started = clock.perf_counter()
    answer = client.post("/v2/models/gray/infer", files={"image": ("s.png", strip.getvalue(), "image/png")})
    assert answer.status_code == 200 and clock.perf_counter() - started < 5
    empty = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [0], "data": []}]}
    assert "no image" in error_of(client.post("/v2/models/colours/infer", json=empty), 400)
    many = [("image", (f"{i}.png", png(RED), "image/png")) for i in range(65)]
    assert "at most 64" in error_of(client.post("/v2/models/colours/infer", files=many), 413)
    deep = io.BytesIO()
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(deep, format="PNG")
    answer = client.post("/v2/models/gray/infer", files={"image": ("d.png", deep.getvalue(), "image/png")})
    assert answer.json()["outputs"][0]["data"][0] == pytest.approx(128 / 255, abs=0.01)


def test_a_form_with_too_many_parts_is_refused_before_parsing(client: TestClient) -> None:
    files = [("image", (f"{i}.png", b"x", "image/png")) for i in range(300)]
    assert "parts" in error_of(client.post("/v2/models/colours/infer", files=files), 413)
