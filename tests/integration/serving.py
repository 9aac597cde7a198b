"""Helpers for the integration tests: the real app in-process (lifespan included),
and the OIP binary tensor extension written by hand, independently of ferry.codecs,
so the tests check the wire format rather than the codec against itself."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from starlette.testclient import TestClient

from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.settings import Settings

HEADER = "Inference-Header-Content-Length"
READY_TIMEOUT_S = 60.0

NUMPY = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "INT8": np.dtype("<i1"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}


def settled(response: httpx.Response) -> bool:
    """Whether a /v2/health/ready answer says loading has finished: ready, or not ready
    because some model failed (tests of broken models serve the rest)."""
    if response.status_code == 200:
        return True
    return response.status_code == 503 and response.json().get("error", "").startswith("failed to load")


def wait_ready(client: TestClient, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until loading has finished (see ``settled``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if settled(client.get("/v2/health/ready")):
            return
        time.sleep(0.02)
    raise AssertionError(f"the server was not ready after {timeout_s} s")


@contextmanager
def serve(paths: Sequence[Path], settings: Settings | None = None) -> Iterator[TestClient]:
    """The whole app with its lifespan running, ready to answer."""
    app = create_app(settings or Settings(auth=False), ModelManager(list(paths)))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@asynccontextmanager
async def serve_async(paths: Sequence[Path], settings: Settings | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The app on the caller's event loop, so asyncio.gather gives truly concurrent
    requests (httpx's ASGITransport does not run the lifespan, so we do)."""
    app = create_app(settings or Settings(auth=False), ModelManager(list(paths)))
    api = app.api  # the FastAPI app behind the middleware owns the lifespan
    async with api.router.lifespan_context(api):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ferry", timeout=30) as client:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not settled(await client.get("/v2/health/ready")):
                assert time.monotonic() < deadline, "the server never became ready"
                await asyncio.sleep(0.02)
            yield client


# -- wire helpers ---------------------------------------------------------------------


def error_of(response: httpx.Response, status: int) -> str:
    """Assert an error answer in the protocol's shape and return its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    doc = response.json()
    assert set(doc) == {"error"}, doc
    assert isinstance(doc["error"], str) and doc["error"]
    message: str = doc["error"]
    return message


def raw(array: np.ndarray, datatype: str) -> bytes:
    """Little-endian row-major bytes; BYTES elements with a 4-byte length prefix."""
    if datatype == "BYTES":
        out = b""
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            out += struct.pack("<I", len(data)) + data
        return out
    if datatype == "BOOL":
        return array.astype(np.uint8).tobytes()
    return array.astype(NUMPY[datatype]).tobytes()


def from_raw(data: bytes, datatype: str, shape: list[int]) -> np.ndarray:
    if datatype == "BYTES":
        items = []
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack_from("<I", data, offset)
            items.append(data[offset + 4 : offset + 4 + length])
            offset += 4 + length
        return np.array(items, dtype=object).reshape(shape)
    if datatype == "BOOL":
        return np.frombuffer(data, dtype=np.uint8).reshape(shape) != 0
    return np.frombuffer(data, dtype=NUMPY[datatype]).reshape(shape)


def binary_request(inputs: Sequence[tuple[str, str, np.ndarray]], **extra: Any) -> tuple[bytes, dict[str, str]]:
    """A body in the binary tensor extension: JSON header, then each input's bytes."""
    entries = []
    chunks = []
    for name, datatype, array in inputs:
        data = raw(array, datatype)
        entries.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(data)},
            }
        )
        chunks.append(data)
    header = orjson.dumps({"inputs": entries, **extra})
    return header + b"".join(chunks), {HEADER: str(len(header))}


def json_input(name: str, datatype: str, array: np.ndarray) -> dict[str, Any]:
    if datatype == "BYTES":
        data: Any = [x.decode() if isinstance(x, bytes) else x for x in array.reshape(-1)]
    else:
        data = array.reshape(-1).tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def outputs_of(response: httpx.Response) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The response's JSON document and every output as an array, whether the output
    came as JSON data or as binary bytes after the header."""
    assert response.status_code == 200, response.text
    body = response.content
    length = response.headers.get(HEADER)
    header = body if length is None else body[: int(length)]
    doc = orjson.loads(header)
    arrays = {}
    offset = int(length) if length is not None else len(body)
    for out in doc["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert length is not None, "a binary output needs Inference-Header-Content-Length"
            arrays[out["name"]] = from_raw(body[offset : offset + size], out["datatype"], out["shape"])
            offset += size
        elif out["datatype"] == "BYTES":
            arrays[out["name"]] = np.array([s.encode() for s in out["data"]], dtype=object).reshape(out["shape"])
        else:
            arrays[out["name"]] = np.array(out["data"], dtype=NUMPY[out["datatype"]]).reshape(out["shape"])
    assert offset == len(body), "bytes left over after the last binary output"
    return doc, arrays


def stats_of(client: TestClient, name: str, version: str) -> dict[str, Any]:
    response = client.get(f"/v2/models/{name}/versions/{version}/stats")
    assert response.status_code == 200, response.text
    (entry,) = response.json()["model_stats"]
    stats: dict[str, Any] = entry
    return stats


def index_of(client: TestClient) -> dict[str, dict[str, str]]:
    """Repository index keyed by "name" or "name/version"."""
    response = client.post("/v2/repository/index")
    assert response.status_code == 200, response.text
    return {f"{e['name']}/{e['version']}" if e["version"] else e["name"]: e for e in response.json()}
