"""What image inputs may cost: the request's pixel budget (refused from the headers,
before any decoding), no more decoding for a client that left or a request past its
timeout, and a small request's image decoded between a large request's images. On the
real app, in process; decodes are counted at the real decoder's 8-bit step."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from PIL import Image
from starlette.types import Message

import ferry.pipeline
import ferry.pipeline.image
from ferry.http.app import FerryApp, create_app
from ferry.manager import ModelManager
from ferry.settings import Settings
from tests.builders import colour_classifier_onnx, png
from tests.integration.serving import READY_TIMEOUT_S, error_of, serve, settled

RED, BLUE = (200, 10, 10), (10, 10, 200)
BIG, SMALL = (16, 16), (12, 12)  # image sizes: which request an 8-bit step belongs to
WAIT_S = 10.0


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    colour_classifier_onnx(root / "colours" / "1" / "model.onnx")
    (root / "colours" / "config.yaml").write_text("preprocess: [{image: {size: [8, 8]}}]\n")
    colour_classifier_onnx(root / "tight" / "1" / "model.onnx")
    (root / "tight" / "config.yaml").write_text("preprocess: [{image: {size: [8, 8], max_request_pixels: 1000}}]\n")
    return root


class Decodes:
    """The images decoded, by size, seen at the decoder's 8-bit step; the first image of
    size ``hold`` waits there until ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold: tuple[int, int] | None = None) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        real = ferry.pipeline.image.to_8_bit

        def counted(picture: Image.Image) -> Image.Image:
            self.sizes.append(picture.size)
            if picture.size == hold and not self.started.is_set():
                self.started.set()
                self.release.wait(WAIT_S)
            return real(picture)

        monkeypatch.setattr(ferry.pipeline.image, "to_8_bit", counted)


def binary_request(images: list[bytes], parameters: dict[str, object] | None = None) -> tuple[bytes, dict[str, str]]:
    """A V2 request with the images as one binary BYTES tensor, as tritonclient sends it."""
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    size = {"binary_data_size": len(raw)}
    tensor = {"name": "image", "datatype": "BYTES", "shape": [len(images)], "parameters": size}
    doc: dict[str, object] = {"inputs": [tensor], "parameters": parameters or {}}
    header = orjson.dumps(doc)
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


@asynccontextmanager
async def serving(repo: Path) -> AsyncIterator[tuple[FerryApp, httpx.AsyncClient, ModelManager]]:
    """The app on this event loop (as serve_async), with its ASGI callable and models."""
    models = ModelManager([repo])
    app = create_app(Settings(auth=False), models)
    async with app.api.router.lifespan_context(app.api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ferry", timeout=30) as client:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not settled(await client.get("/v2/health/ready")):
                assert time.monotonic() < deadline, "the server never became ready"
                await asyncio.sleep(0.02)
            yield app, client, models


def test_a_request_over_the_pixel_budget_is_413_before_any_decoding(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes = Decodes(monkeypatch)
    with serve([repo]) as client:
        within = [png(RED) for _ in range(4)]  # 4 x 20x12 = 960 pixels of the 1000
        body, headers = binary_request(within)
        answer = client.post("/v2/models/tight/infer", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert len(decodes.sizes) == 4
        body, headers = binary_request([*within, png(RED, (2, 2))])  # 964: still within
        assert client.post("/v2/models/tight/infer", content=body, headers=headers).status_code == 200
        decodes.sizes.clear()
        body, headers = binary_request([*within, png(RED)])  # 1200
        message = error_of(client.post("/v2/models/tight/infer", content=body, headers=headers), 413)
        assert "the limit per request is 1000 (image.max_request_pixels)" in message
        assert decodes.sizes == []  # refused from the headers: nothing decoded
        # The model with the default budget takes the same request.
        assert client.post("/v2/models/colours/infer", content=body, headers=headers).status_code == 200


def test_a_client_that_leaves_stops_its_images_decoding(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client sends 16 images and hangs up while the first is decoding: none of the
    other 15 is decoded (it used to decode them all, for nobody)."""
    monkeypatch.setattr(ferry.pipeline, "WORKERS", 1)  # one thread: first in, first out
    decodes = Decodes(monkeypatch, hold=BIG)

    async def scenario() -> list[int]:
        async with serving(repo) as (app, client, _):
            body, headers = binary_request([png(RED, BIG)] * 16)
            delivered = False
            gone = asyncio.Event()

            async def receive() -> Message:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await gone.wait()
                return {"type": "http.disconnect"}

            statuses: list[int] = []

            async def send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": "/v2/models/colours/infer",
                "raw_path": b"/v2/models/colours/infer",
                "query_string": b"",
                "root_path": "",
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                + [(b"content-length", str(len(body)).encode()), (b"host", b"ferry")],
                "client": ("127.0.0.1", 50000),
                "server": ("ferry", 80),
            }
            call = asyncio.create_task(app(scope, receive, send))
            assert await asyncio.to_thread(decodes.started.wait, WAIT_S)
            gone.set()  # the client hangs up while its first image decodes
            await call
            decodes.release.set()
            # One thread, first in first out: once a later request is answered,
            # everything the first one had queued has run.
            body, headers = binary_request([png(BLUE, SMALL)])
            later = await client.post("/v2/models/colours/infer", content=body, headers=headers)
            assert later.status_code == 200, later.text
            return statuses

    assert asyncio.run(scenario()) == []  # no answer sent to a client that left
    assert decodes.sizes.count(BIG) == 1


def test_a_request_past_its_timeout_stops_its_images_decoding(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ferry.pipeline, "WORKERS", 1)
    decodes = Decodes(monkeypatch, hold=BIG)

    async def scenario() -> None:
        async with serving(repo) as (_, client, _):
            body, headers = binary_request([png(RED, BIG)] * 16, {"timeout": 50_000})  # 50 ms, in microseconds
            answer = await client.post("/v2/models/colours/infer", content=body, headers=headers)
            assert "timed out after 0.05 s in pre-processing" in error_of(answer, 503)
            decodes.release.set()
            body, headers = binary_request([png(BLUE, SMALL)])
            later = await client.post("/v2/models/colours/infer", content=body, headers=headers)
            assert later.status_code == 200, later.text

    asyncio.run(scenario())
    assert decodes.sizes.count(BIG) == 1


def test_a_small_request_is_decoded_between_a_large_requests_images(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One decoding thread, a 16-image request holding it: a one-image request sent
    meanwhile has its image decoded before the large request's last (it used to wait
    for all 16)."""
    monkeypatch.setattr(ferry.pipeline, "WORKERS", 1)
    decodes = Decodes(monkeypatch, hold=BIG)

    async def scenario() -> list[httpx.Response]:
        async with serving(repo) as (_, client, models):
            body, headers = binary_request([png(RED, BIG)] * 16)
            large = asyncio.create_task(client.post("/v2/models/colours/infer", content=body, headers=headers))
            assert await asyncio.to_thread(decodes.started.wait, WAIT_S)
            body, headers = binary_request([png(BLUE, SMALL)])
            small = asyncio.create_task(client.post("/v2/models/colours/infer", content=body, headers=headers))
            pipeline = models.get("colours").pipeline
            assert pipeline is not None
            deadline = time.monotonic() + WAIT_S
            while pipeline.pending < 2:  # the small request waits for the thread too
                assert time.monotonic() < deadline
                await asyncio.sleep(0.001)
            decodes.release.set()
            return list(await asyncio.gather(large, small))

    answers = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [200, 200]
    order = decodes.sizes
    assert order.count(BIG) == 16 and order.count(SMALL) == 1
    last_large = len(order) - 1 - order[::-1].index(BIG)
    assert order.index(SMALL) < last_large, order
