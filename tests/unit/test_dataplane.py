"""DataPlane over a real ModelManager whose runtimes are fakes: routing, the compute
path, readiness, the response id and the errors every transport maps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

import ferry.manager
from ferry.config import ModelConfig
from ferry.dataplane import DataPlane
from ferry.errors import InvalidInput, NotFound, Unavailable
from ferry.inference import InferRequest, InferResponse, RequestedOutput
from ferry.logs import REQUEST_ID
from ferry.manager import ModelManager
from ferry.signature import Signature, TensorSpec

T = TypeVar("T")
SIGNATURE = Signature((TensorSpec("x", "FP32", (-1, 2)),), (TensorSpec("y", "FP32", (-1, 2)),))


class FakeRuntime:
    """y = x * factor, the factor read from the model file's text."""

    batchable = True
    signature = SIGNATURE

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * self.factor}

    def close(self) -> None:
        pass


class Direct:
    """A codec whose payload is already an InferRequest and whose answer is the response."""

    protocol = "v2"

    def decode(self, payload: InferRequest, signature: object) -> InferRequest:
        return payload

    def parse_size(self, payload: InferRequest) -> int:
        return 0

    def encode(self, response: InferResponse, request: InferRequest) -> InferResponse:
        return response


def run(body: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(body(), 20)

    return asyncio.run(bounded())


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> dict[str, threading.Event]:
    """Fake runtimes instead of the real ones: the file's text is the factor, "fail"
    fails the load, and a file named in the returned dict waits for its event."""
    waits: dict[str, threading.Event] = {}

    def build(runtime: str, path: Path, config: ModelConfig) -> tuple[list[FakeRuntime], float]:
        if str(path) in waits:
            waits[str(path)].wait(10)
        text = path.read_text()
        if text == "fail":
            raise RuntimeError("this version cannot load")
        return [FakeRuntime(float(text))], 0.0

    monkeypatch.setattr(ferry.manager, "build_runtimes", build)
    return waits


def repository(root: Path, versions: dict[str, dict[int, str]]) -> Path:
    for name, files in versions.items():
        for version, text in files.items():
            folder = root / name / str(version)
            folder.mkdir(parents=True)
            (folder / "model.onnx").write_text(text)
    return root


def request(*rows: list[float], outputs: list[str] | None = None, id: str | None = None) -> InferRequest:
    wanted = [RequestedOutput(name) for name in outputs] if outputs is not None else None
    return InferRequest({"x": np.array(rows, dtype=np.float32)}, id=id, outputs=wanted)


def test_unversioned_requests_go_to_the_latest_version_and_pinned_ones_to_theirs(tmp_path: Path, loads: Any) -> None:
    async def body() -> None:
        models = ModelManager([repository(tmp_path, {"m": {1: "2", 2: "3"}})])
        plane = DataPlane(models)
        await models.load_all()
        latest = await plane.infer("m", None, request([1, 2]), Direct())
        pinned = await plane.infer("m", "1", request([1, 2]), Direct())
        assert (latest.model_version, latest.outputs["y"].tolist()) == ("2", [[3, 6]])
        assert (pinned.model_version, pinned.outputs["y"].tolist()) == ("1", [[2, 4]])
        assert plane.model_metadata("m", None)["versions"] == ["1", "2"]
        assert plane.ready() and plane.model_ready("m", None) and plane.model_ready("m", "1")
        await models.close()

    run(body)


def test_errors_are_the_ones_transports_map(tmp_path: Path, loads: Any) -> None:
    async def body() -> None:
        models = ModelManager([repository(tmp_path, {"m": {1: "2"}})])
        plane = DataPlane(models)
        await models.load_all()
        with pytest.raises(NotFound, match="unknown model 'nope'"):
            await plane.infer("nope", None, request([1, 2]), Direct())
        with pytest.raises(NotFound):
            plane.model_ready("nope", None)
        with pytest.raises(InvalidInput, match="shape"):
            await plane.infer("m", None, request([1, 2, 3]), Direct())
        with pytest.raises(InvalidInput, match="unknown output 'z'"):
            await plane.infer("m", None, request([1, 2], outputs=["z"]), Direct())
        with pytest.raises(InvalidInput, match="requested more than once"):
            await plane.infer("m", None, request([1, 2], outputs=["y", "y"]), Direct())
        with pytest.raises(InvalidInput, match="positive integer"):
            await plane.infer("m", "one", request([1, 2]), Direct())
        # Refused requests are counted as failures of the version that refused them.
        stats = plane.statistics("m", None)["model_stats"][0]["inference_stats"]
        assert (stats["success"]["count"], stats["fail"]["count"]) == (0, 3)
        await models.close()

    run(body)


def test_the_response_id_is_the_clients_else_the_request_id(tmp_path: Path, loads: Any) -> None:
    async def body() -> None:
        models = ModelManager([repository(tmp_path, {"m": {1: "1"}})])
        plane = DataPlane(models)
        await models.load_all()
        assert (await plane.infer("m", None, request([1, 2], id="mine"), Direct())).id == "mine"
        token = REQUEST_ID.set("req-7")
        try:
            assert (await plane.infer("m", None, request([1, 2]), Direct())).id == "req-7"
        finally:
            REQUEST_ID.reset(token)
        await models.close()

    run(body)


def test_a_failed_version_keeps_the_server_unready_unless_failures_are_allowed(tmp_path: Path, loads: Any) -> None:
    async def body() -> None:
        models = ModelManager([repository(tmp_path, {"good": {1: "1"}, "bad": {1: "fail"}})])
        strict, lenient = DataPlane(models), DataPlane(models, ready_despite_failures=True)
        await models.load_all()
        reason = strict.unready_reason()
        assert reason is not None and "bad version 1" in reason and "cannot load" in reason
        assert not strict.ready()
        assert lenient.ready()
        assert strict.model_ready("good", None) and not strict.model_ready("bad", None)
        assert [(e["name"], e["state"]) for e in strict.repository_index()] == [
            ("bad", "UNAVAILABLE"),
            ("good", "READY"),
        ]
        assert strict.repository_index(ready_only=True) == [
            {"name": "good", "version": "1", "state": "READY", "reason": ""}
        ]
        await models.close()

    run(body)


def test_the_server_is_unready_while_a_model_still_loads(tmp_path: Path, loads: dict[str, threading.Event]) -> None:
    root = repository(tmp_path, {"fast": {1: "1"}, "slow": {1: "1"}})
    slow = threading.Event()
    loads[str(root / "slow" / "1" / "model.onnx")] = slow

    async def body() -> None:
        models = ModelManager([root])
        plane = DataPlane(models)
        loading = asyncio.create_task(models.load_all())
        assert plane.unready_reason() == "the server is still loading its models"
        while "fast" not in plane.model_names() or not plane.model_ready("fast", None):
            await asyncio.sleep(0.01)
        assert not plane.ready()  # fast serves, slow still loads
        slow.set()
        await loading
        assert plane.ready()
        await models.close()

    run(body)


def test_unload_and_load_through_the_data_plane(tmp_path: Path, loads: Any) -> None:
    async def body() -> None:
        root = repository(tmp_path, {"m": {1: "2"}})
        models = ModelManager([root])
        plane = DataPlane(models)
        await models.load_all()
        await plane.unload("m")
        assert not plane.model_ready("m", None)
        assert plane.ready()  # unloaded on purpose: not a failure
        with pytest.raises(NotFound, match="unloaded"):
            await plane.infer("m", None, request([1, 2]), Direct())
        (root / "m" / "1" / "model.onnx").write_text("5")
        await plane.load("m")
        assert (await plane.infer("m", None, request([1, 1]), Direct())).outputs["y"].tolist() == [[5, 5]]
        with pytest.raises(NotFound):
            await plane.load("nope")
        await models.close()

    run(body)


def test_a_full_queue_is_unavailable_before_decoding(tmp_path: Path, loads: Any) -> None:
    class Refusing(Direct):
        def decode(self, payload: InferRequest, signature: object) -> InferRequest:
            raise AssertionError("decoded a request the queue had no room for")

    async def body() -> None:
        models = ModelManager([repository(tmp_path, {"m": {1: "1"}})])
        plane = DataPlane(models)
        await models.load_all()
        version = models.get("m")
        await version.batcher.drain()  # closed: refuses like a full queue
        with pytest.raises(Unavailable):
            await plane.infer("m", None, request([1, 2]), Refusing())
        await models.close()

    run(body)
