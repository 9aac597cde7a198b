"""Who may make the server run code from a model file: its operator (``ferry server
--trust-model/--trust-type``), never the uploader. Real malicious files: a pickle whose
loading creates a directory, and a .skops pipeline that would call ``os.system``."""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ferry.artifacts import LocalArtifactStore
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.registry import Registry, connect, default_url, migrate
from ferry.registry_source import RegistrySource
from ferry.settings import Settings
from ferry.trust import TrustPolicy
from tests.builders import iris_joblib
from tests.integration.serving import wait_ready


class _Payload:
    """Unpickling this calls os.mkdir(marker): proof that loading ran the file's code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def malicious_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Payload(marker)))
    return path


def shell_skops(path: Path) -> Path:
    """A pipeline whose first step would pass its input to os.system."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    sio.dump(make_pipeline(FunctionTransformer(func=os.system), LogisticRegression()), path)
    return path


def _serving(tmp_path: Path, trust: TrustPolicy) -> Iterator[tuple[TestClient, RegistrySource]]:
    data_dir = tmp_path / "data"
    engine = connect(default_url(data_dir))
    try:
        migrate(engine)
        source = RegistrySource(
            Registry.from_engine(engine), LocalArtifactStore(data_dir / "artifacts"), data_dir, trust=trust
        )
        app = create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))
        with TestClient(app) as running:
            wait_ready(running)
            yield running, source
    finally:
        engine.dispose()


@pytest.fixture
def untrusting(tmp_path: Path) -> Iterator[tuple[TestClient, RegistrySource]]:
    yield from _serving(tmp_path, TrustPolicy())


@pytest.fixture
def trusting_iris(tmp_path: Path) -> Iterator[tuple[TestClient, RegistrySource]]:
    yield from _serving(tmp_path, TrustPolicy.of(models=["iris"]))


def _post(client: TestClient, model: str, path: Path, config: str | None = None) -> dict:
    files = {"file": (path.name, path.read_bytes())}
    if config is not None:
        files["config"] = ("config.yaml", config.encode())
    response = client.post(f"/api/v1/models/{model}/versions", files=files)
    return {"status": response.status_code, **response.json()}


@pytest.mark.parametrize("config", ["trusted: true\n", "trusted_types: [posix.system]\n"])
def test_an_upload_cannot_declare_itself_trusted(
    untrusting: tuple[TestClient, RegistrySource], tmp_path: Path, config: str
) -> None:
    client, _ = untrusting
    marker = tmp_path / "ran"
    answer = _post(client, "evil", malicious_pickle(tmp_path / "model.pkl", marker), config)
    assert answer["status"] == 400, answer
    assert "cannot be set by an upload" in answer["error"] and "--trust-" in answer["error"], answer
    assert not marker.exists()
    assert client.get("/api/v1/models/evil").status_code == 404  # nothing was stored


def test_a_malicious_pickle_fails_validation_without_running(
    untrusting: tuple[TestClient, RegistrySource], tmp_path: Path
) -> None:
    client, _ = untrusting
    marker = tmp_path / "ran"
    answer = _post(client, "evil", malicious_pickle(tmp_path / "model.pkl", marker))
    assert answer["status"] == 201 and answer["state"] == "failed", answer
    assert "--trust-model NAME" in answer["failure_reason"], answer
    assert not marker.exists()


def test_a_trusted_config_stored_by_an_older_release_grants_nothing(
    untrusting: tuple[TestClient, RegistrySource], tmp_path: Path
) -> None:
    # Releases before this one stored an upload's own `trusted: true`: such a config
    # reaches validation (and every later load) from the database.
    _, source = untrusting
    marker = tmp_path / "ran"
    with malicious_pickle(tmp_path / "model.pkl", marker).open("rb") as file:
        version = asyncio.run(source.upload("evil", "model.pkl", file, config={"trusted": True}))
    assert version.state.value == "failed", version
    assert not marker.exists()


def test_a_skops_file_calling_the_shell_is_refused(
    untrusting: tuple[TestClient, RegistrySource], tmp_path: Path
) -> None:
    client, _ = untrusting
    answer = _post(client, "shell", shell_skops(tmp_path / "model.skops"))
    assert answer["status"] == 201 and answer["state"] == "failed", answer
    assert "posix.system" in answer["failure_reason"] and "--trust-type" in answer["failure_reason"], answer


def test_the_operator_trusts_one_model_not_the_others(
    trusting_iris: tuple[TestClient, RegistrySource], tmp_path: Path
) -> None:
    client, _ = trusting_iris
    model = iris_joblib(tmp_path / "model.joblib")
    assert _post(client, "iris", model)["state"] == "ready"
    other = _post(client, "lookalike", model)
    assert other["state"] == "failed" and "--trust-model" in other["failure_reason"], other
    # Served with the trust, and the trust is not the upload's to read back as its own.
    client.put("/api/v1/models/iris/stages/production", json={"version": 1})
    wait_ready(client)
    flower = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
    answer = client.post("/v2/models/iris/infer", json={"inputs": [flower]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == ["setosa"]


def test_the_policy_overrides_whatever_a_config_says() -> None:
    from ferry.config import ModelConfig

    policy = TrustPolicy.of(models=["a"], types=["numpy.float64", "numpy.float64"])
    claimed = ModelConfig(trusted=True, trusted_types=["posix.system"])
    assert policy.apply("b", claimed).trusted is False
    assert policy.apply("b", claimed).trusted_types == ["numpy.float64"]
    assert policy.apply("a", ModelConfig()).trusted is True


def file_reading_torchscript(path: Path, secret: Path) -> Path:
    """A TorchScript program that answers every request with the bytes of ``secret``."""
    import torch

    class Reader(torch.nn.Module):
        def __init__(self, target: str) -> None:
            super().__init__()
            self.target = target

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.from_file(self.target, size=8, dtype=torch.uint8) + x.to(torch.uint8) * 0

    torch.jit.script(Reader(str(secret))).save(str(path))
    return path


_READER_CONFIG = (
    "inputs: [{name: x, datatype: UINT8, shape: [8]}]\n"
    "outputs: [{name: y, datatype: UINT8, shape: [8]}]\n"
    "max_batch_size: 0\n"
)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_an_uploaded_pytorch_program_cannot_read_the_servers_files(
    untrusting: tuple[TestClient, RegistrySource], tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    client, source = untrusting
    secret = tmp_path / "secret"
    secret.write_bytes(b"TOPSECRET")
    answer = _post(client, "reader", file_reading_torchscript(tmp_path / "model.pt", secret), _READER_CONFIG)
    assert answer["status"] == 201 and answer["state"] == "failed", answer
    assert "PyTorch program" in answer["failure_reason"] and "--trust-model" in answer["failure_reason"], answer
    assert not (source.serving_dir / "reader").exists()  # never even laid out


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_the_operator_may_trust_an_uploaded_pytorch_program(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    secret = tmp_path / "secret"
    secret.write_bytes(b"operator")
    for client, _ in _serving(tmp_path, TrustPolicy.of(models=["reader"])):
        program = file_reading_torchscript(tmp_path / "model.pt", secret)
        assert _post(client, "reader", program, _READER_CONFIG)["state"] == "ready"
        client.put("/api/v1/models/reader/stages/production", json={"version": 1})
        wait_ready(client)
        zeros = {"name": "x", "datatype": "UINT8", "shape": [8], "data": [0] * 8}
        answer = client.post("/v2/models/reader/infer", json={"inputs": [zeros]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"] == list(b"operator")


def test_an_upload_cannot_make_a_file_load_as_python(
    untrusting: tuple[TestClient, RegistrySource], tmp_path: Path
) -> None:
    client, _ = untrusting
    answer = _post(client, "iris", iris_joblib(tmp_path / "model.onnx"), "runtime: python\n")
    assert answer["status"] == 201 and answer["state"] == "failed", answer
    assert "Python file" in answer["failure_reason"], answer
