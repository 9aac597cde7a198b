"""The management API (/api/v1) over a real registry, on SQLite and on PostgreSQL (a
schema of its own; with CI=true an unreachable PostgreSQL fails the run): uploads are
validated, stages and traffic route inference, versions in use cannot be deleted."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from starlette.testclient import TestClient

from ferry.artifacts import FETCH_SUFFIX, LocalArtifactStore
from ferry.http.app import create_app
from ferry.manager import ModelManager
from ferry.registry import Registry, connect, default_url, migrate
from ferry.registry_source import RegistrySource
from ferry.settings import Settings
from tests.builders import external_data_onnx, scale_onnx
from tests.integration.serving import wait_ready
from tests.postgres import postgres_schema

X = [[1.0, 2.0, 3.0, 4.0]]


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    data_dir = tmp_path / "data"
    urls = iter([default_url(data_dir)]) if request.param == "sqlite" else postgres_schema()
    url = next(urls)
    engine = connect(url)
    try:
        migrate(engine)
        source = RegistrySource(Registry.from_engine(engine), LocalArtifactStore(data_dir / "artifacts"), data_dir)
        app = create_app(Settings(data_dir=data_dir, auth=False), ModelManager([], source))
        with TestClient(app) as running:
            wait_ready(running)
            yield running
    finally:
        engine.dispose()  # before the PostgreSQL schema is dropped
        for _ in urls:
            pass


def _upload(client: TestClient, path: Path, model: str = "scale", stage: str | None = None) -> dict:
    data = {"stage": stage} if stage else None
    with path.open("rb") as f:
        response = client.post(f"/api/v1/models/{model}/versions", files={"file": (path.name, f)}, data=data)
    assert response.status_code == 201, response.text
    return response.json()


def _infer(client: TestClient, model: str = "scale", version: str | None = None) -> dict:
    route = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X[0]}]}
    response = client.post(route, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_upload_validates_and_production_serves(client: TestClient, tmp_path: Path) -> None:
    version = _upload(client, scale_onnx(tmp_path / "model.onnx", 2.0))
    assert version["number"] == 1
    assert version["state"] == "ready", version
    assert version["signature"]["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    # No API keys yet: the uploader is known by its address (TestClient calls itself "testclient").
    assert version["uploaded_by"] == "testclient"
    assert version["warmup_ms"] is not None and version["warmup_ms"] >= 0
    assert version["runtime"] == "onnx" and version["filename"] == "model.onnx"
    # Not served until a stage or traffic points at it.
    assert client.post("/v2/models/scale/infer", json={"inputs": []}).status_code in (404, 503)

    response = client.put("/api/v1/models/scale/stages/production", json={"version": 1})
    assert response.status_code == 200, response.text
    assert response.json()["stages"] == {"production": 1}
    answer = _infer(client)
    assert answer["model_version"] == "1"
    assert answer["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0]

    models = client.get("/api/v1/models").json()
    assert [m["name"] for m in models] == ["scale"]
    assert client.get("/api/v1/models/scale/versions").json()[0]["state"] == "ready"


def test_corrupt_upload_fails_with_a_reason_and_never_routes(client: TestClient, tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    version = _upload(client, corrupt, stage="production")
    assert version["state"] == "failed"
    assert version["failure_reason"]
    assert str(tmp_path) not in version["failure_reason"]
    model = client.get("/api/v1/models/scale").json()
    assert model["stages"] == {}
    for route in ("/api/v1/models/scale/stages/production", "/api/v1/models/scale/stages/staging"):
        refused = client.put(route, json={"version": version["number"]})
        assert refused.status_code == 400, refused.text
    refused = client.put("/api/v1/models/scale/traffic", json={"weights": {str(version["number"]): 100}})
    assert refused.status_code == 400
    assert client.post("/v2/models/scale/versions/1/infer", json={"inputs": []}).status_code == 404


def test_a_failure_reason_naming_server_paths_shows_labels(client: TestClient, tmp_path: Path) -> None:
    """onnxruntime names the resolved path of external data outside the model's folder:
    here the registry database, beside the serving folder in the data directory."""
    version = _upload(client, external_data_onnx(tmp_path / "model.onnx", "../../../registry.db"))
    reason = version["failure_reason"]
    assert version["state"] == "failed" and "escapes model directory" in reason, reason
    for place in {str(tmp_path), str(tmp_path.resolve())}:
        assert place not in reason
    # The SQLite registry's own file has its own label; on PostgreSQL it is just a path.
    assert '"<registry database>"' in reason or '"<data dir>/registry.db"' in reason, reason
    assert '"<data dir>/serving/scale/1"' in reason, reason
    assert client.get("/api/v1/models/scale/versions").json()[0]["failure_reason"] == reason


def test_validation_leaves_no_laid_out_files_behind(client: TestClient, tmp_path: Path) -> None:
    """Validation lays a version out under <data dir>/serving; only serving keeps it there."""
    serving = tmp_path / "data" / "serving"
    ready = _upload(client, scale_onnx(tmp_path / "model.onnx", 2.0))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    failed = _upload(client, broken)
    assert (ready["state"], failed["state"]) == ("ready", "failed")
    assert not (serving / "scale").exists()
    # Served: laid out again for as long as it serves.
    assert client.put("/api/v1/models/scale/stages/production", json={"version": 1}).status_code == 200
    assert (serving / "scale" / "1" / "model.onnx").is_file()
    assert _infer(client)["model_version"] == "1"
    # A version uploaded while another serves leaves the served one alone.
    assert _upload(client, scale_onnx(tmp_path / "model.onnx", 3.0))["state"] == "ready"
    assert sorted(p.name for p in (serving / "scale").iterdir()) == ["1"]
    assert _infer(client)["model_version"] == "1"


def test_prune_removes_the_files_of_failed_and_deleted_versions_only(client: TestClient, tmp_path: Path) -> None:
    ready = _upload(client, scale_onnx(tmp_path / "model.onnx", 2.0))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    failed = _upload(client, broken)
    serving = tmp_path / "data" / "serving"
    # What a crash or an older release left: every version laid out, and a deleted model's.
    left = [serving / "scale" / str(n) for n in (ready["number"], failed["number"], 99)] + [serving / "gone" / "1"]
    for folder in left:
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"x")
    source: RegistrySource = client.app.api.state.registry  # type: ignore[attr-defined]
    assert sorted(source.prune()) == sorted(left[1:])
    assert [p for p in left if p.exists()] == [left[0]]  # ready: another process may serve it
    assert not (serving / "gone").exists()


def test_prune_removes_half_fetched_files(client: TestClient, tmp_path: Path) -> None:
    """A process killed while fetching an artifact into serving/ leaves a temp file beside
    the version's file; prune removes it once it is older than the grace period."""
    _upload(client, scale_onnx(tmp_path / "model.onnx", 2.0), stage="production")
    folder = tmp_path / "data" / "serving" / "scale" / "1"
    stale, fresh = folder / f".model.onnx.dead{FETCH_SUFFIX}", folder / f".model.onnx.live{FETCH_SUFFIX}"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    source: RegistrySource = client.app.api.state.registry  # type: ignore[attr-defined]
    assert source.prune(older_than_s=600) == []
    assert sorted(p.name for p in folder.iterdir()) == sorted([fresh.name, "model.onnx"])
    source.prune()
    assert [p.name for p in folder.iterdir()] == ["model.onnx"]
    assert _infer(client)["model_version"] == "1"


def test_upload_refuses_unknown_file_types(client: TestClient, tmp_path: Path) -> None:
    script = tmp_path / "model.py"
    script.write_text("import os\n")
    with script.open("rb") as f:
        response = client.post("/api/v1/models/scale/versions", files={"file": ("model.py", f)})
    assert response.status_code == 400
    assert "error" in response.json()


def test_traffic_split_pinning_delete_and_archive(client: TestClient, tmp_path: Path) -> None:
    one = _upload(client, scale_onnx(tmp_path / "a.onnx", 1.0), stage="production")
    two = _upload(client, scale_onnx(tmp_path / "b.onnx", 3.0), stage="staging")
    assert (one["number"], two["number"]) == (1, 2)
    assert _infer(client)["model_version"] == "1"
    # A stage's version is loaded: it can be pinned.
    pinned = _infer(client, version="2")
    assert pinned["model_version"] == "2" and pinned["outputs"][0]["data"] == [3.0, 6.0, 9.0, 12.0]

    response = client.put("/api/v1/models/scale/traffic", json={"weights": {"1": 50, "2": 50}})
    assert response.status_code == 200, response.text
    assert response.json()["traffic"]["weights"] == {"1": 50, "2": 50}
    counts = Counter(_infer(client)["model_version"] for _ in range(200))
    assert set(counts) == {"1", "2"}
    assert 50 <= counts["1"] <= 150, counts

    # In use (a stage and a weight): refused.
    for number in (1, 2):
        refused = client.delete(f"/api/v1/models/scale/versions/{number}")
        assert refused.status_code == 409, refused.text
        assert "error" in refused.json()
        assert client.post(f"/api/v1/models/scale/versions/{number}/archive").status_code == 409

    # All traffic to 1 and staging moved to 1: version 2 is unused, unloaded, deletable.
    assert client.put("/api/v1/models/scale/traffic", json={"weights": {"1": 100}}).status_code == 200
    assert client.put("/api/v1/models/scale/stages/staging", json={"version": 1}).status_code == 200
    assert all(_infer(client)["model_version"] == "1" for _ in range(20))
    assert client.post("/v2/models/scale/versions/2/infer", json={"inputs": []}).status_code == 404
    archived = client.post("/api/v1/models/scale/versions/2/archive")
    assert archived.status_code == 200 and archived.json()["state"] == "archived"
    deleted = client.delete("/api/v1/models/scale/versions/2")
    assert deleted.status_code == 200, deleted.text
    assert [v["number"] for v in client.get("/api/v1/models/scale/versions").json()] == [1]


def test_ending_a_split_gives_unversioned_requests_back_to_production(client: TestClient, tmp_path: Path) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 1.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "b.onnx", 3.0), stage="staging")
    _upload(client, scale_onnx(tmp_path / "c.onnx", 5.0))
    # A split pinned to version 2 alone, with version 3 as the shadow.
    body = {"weights": {"2": 100}, "shadow": {"version": 3, "percent": 50}}
    assert client.put("/api/v1/models/scale/traffic", json=body).status_code == 200
    assert {_infer(client)["model_version"] for _ in range(10)} == {"2"}
    ended = client.delete("/api/v1/models/scale/traffic")
    assert ended.status_code == 200, ended.text
    assert ended.json()["traffic"] == {"weights": {}, "shadow_version": None, "shadow_percent": 0}
    assert {_infer(client)["model_version"] for _ in range(10)} == {"1"}
    # Production moves, and unversioned requests follow it (no weights left to pin them).
    assert client.put("/api/v1/models/scale/stages/production", json={"version": 2}).status_code == 200
    assert {_infer(client)["model_version"] for _ in range(10)} == {"2"}
    assert client.delete("/api/v1/models/nothing/traffic").status_code == 404


def test_create_model_and_unknown_names(client: TestClient) -> None:
    created = client.post("/api/v1/models", json={"name": "digits", "task": "classification", "labels": {"a": "b"}})
    assert created.status_code == 201, created.text
    assert created.json()["labels"] == {"a": "b"} and created.json()["stages"] == {}
    assert client.post("/api/v1/models", json={"name": "digits"}).status_code == 409
    assert client.post("/api/v1/models", json={"name": "no/slash"}).status_code == 400
    for route in ("/api/v1/models/nope", "/api/v1/models/nope/versions"):
        missing = client.get(route)
        assert missing.status_code == 404 and "error" in missing.json()
    assert client.put("/api/v1/models/nope/stages/production", json={"version": 1}).status_code == 404
    assert client.delete("/api/v1/models/digits/versions/7").status_code == 404
    assert client.post("/v2/models/nope/infer", json={"inputs": []}).status_code == 404


def test_docs_describe_the_management_api(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/api/v1/models/{name}/versions"]["post"]
    assert upload["tags"] == ["management"] and upload["summary"]
    assert "/api/v1/models/{name}/traffic" in schema["paths"]


def test_uploads_over_the_limit_get_413(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    engine = connect(default_url(data_dir))
    migrate(engine)
    source = RegistrySource(Registry.from_engine(engine), LocalArtifactStore(data_dir / "artifacts"), data_dir)
    app = create_app(Settings(data_dir=data_dir, max_upload_bytes=4096, auth=False), ModelManager([], source))
    big = b"\0" * 8192
    with TestClient(app) as client:
        wait_ready(client)
        response = client.post("/api/v1/models/scale/versions", files={"file": ("model.onnx", big)})
        assert response.status_code == 413 and "limit" in response.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b"--x\r\nContent-Disposition: form-data; name=file; filename=model.onnx\r\n\r\n"
            yield from (big[i : i + 1024] for i in range(0, len(big), 1024))
            yield b"\r\n--x--\r\n"

        headers = {"content-type": "multipart/form-data; boundary=x"}
        response = client.post("/api/v1/models/scale/versions", content=chunks(), headers=headers)
        assert response.status_code == 413, response.text
    assert Registry.from_engine(engine).list_models() == []
    engine.dispose()


def test_control_characters_are_bad_input_not_database_errors(client: TestClient, tmp_path: Path) -> None:
    """PostgreSQL cannot store NUL: it must be a 400 on both backends, never a 500."""
    for body in (
        {"name": "m", "description": "a\x00b"},
        {"name": "m", "task": "\x1b[31m"},
        {"name": "m", "labels": {"team": "x\x00"}},
    ):
        assert client.post("/api/v1/models", json=body).status_code == 400, body
    # Written by hand: httpx would escape the NUL in the file name.
    model = scale_onnx(tmp_path / "model.onnx", 2.0).read_bytes()
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="model\x00.onnx"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + model + b"\r\n--b--\r\n"
    )
    answer = client.post(
        "/api/v1/models/m/versions", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 400, answer.text
    assert client.put("/api/v1/models/m/stages/production", json={"version": 2**64}).status_code in (400, 404)
    assert client.post(f"/api/v1/models/m/versions/{2**64}/archive").status_code in (400, 404)


def _raw_upload(client: TestClient, model: str, filename: bytes, content: bytes) -> httpx.Response:
    """Written by hand: httpx would percent-escape control characters in the file name,
    as browsers do; curl sends them as they are."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + content + b"\r\n--b--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    return client.post(f"/api/v1/models/{model}/versions", content=body, headers=headers)


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        (b"model\t.onnx", "U+0009"),
        ("\u202exnno.onnx".encode(), "U+202E (right-to-left override)"),
        ("model\u200b.onnx".encode(), "U+200B (zero width space)"),
        (b"../model.onnx", "a name, not a path"),
    ],
)
def test_upload_file_names_with_hidden_characters_or_paths_are_400(
    client: TestClient, tmp_path: Path, filename: bytes, message: str
) -> None:
    answer = _raw_upload(client, "m", filename, scale_onnx(tmp_path / "model.onnx", 2.0).read_bytes())
    assert answer.status_code == 400, answer.text
    assert message in answer.json()["error"]
    assert client.get("/api/v1/models").json() == []  # refused before anything was stored


def test_a_lookalike_model_name_ending_in_a_newline_is_400(client: TestClient) -> None:
    assert client.post("/api/v1/models", json={"name": "simple"}).status_code == 201
    answer = client.post("/api/v1/models", json={"name": "simple\n"})
    assert answer.status_code == 400 and "invalid model name" in answer.json()["error"]
    answer = client.post("/api/v1/models/simple%0A/versions", files={"file": ("model.onnx", b"x")})
    assert answer.status_code == 400 and "invalid model name" in answer.json()["error"]
    assert [m["name"] for m in client.get("/api/v1/models").json()] == ["simple"]


def test_version_numbers_are_json_integers_not_booleans(client: TestClient, tmp_path: Path) -> None:
    """In pydantic's lax mode true was version 1, and "1" or 1.0 were 1 too."""
    _upload(client, scale_onnx(tmp_path / "a.onnx", 2.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "b.onnx", 3.0))
    for body in ({"version": True}, {"version": "1"}, {"version": 1.0}):
        answer = client.put("/api/v1/models/scale/stages/staging", json=body)
        assert answer.status_code == 400 and "body.version" in answer.json()["error"], (body, answer.text)
    for body in (
        {"weights": {"1": 99, "2": True}},
        {"weights": {"1": 100}, "shadow": {"version": True, "percent": 10}},
        {"weights": {"1": 100}, "shadow": {"version": 2, "percent": True}},
    ):
        answer = client.put("/api/v1/models/scale/traffic", json=body)
        assert answer.status_code == 400, (body, answer.text)
    model = client.get("/api/v1/models/scale").json()
    assert model["stages"] == {"production": 1}
    assert model["traffic"] == {"weights": {}, "shadow_version": None, "shadow_percent": 0}


@pytest.mark.parametrize("version", [str(2**63), str(2**64), "9" * 5000])
def test_a_version_past_64_bits_is_400_in_the_management_api(client: TestClient, version: str) -> None:
    assert client.post("/api/v1/models", json={"name": "m"}).status_code == 201
    for answer in (
        client.post(f"/api/v1/models/m/versions/{version}/archive"),
        client.delete(f"/api/v1/models/m/versions/{version}"),
    ):
        assert answer.status_code == 400, answer.text
        assert "path.number" in answer.json()["error"]
    body = b'{"version": ' + version.encode() + b"}"
    answer = client.put(
        "/api/v1/models/m/stages/production", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text


# -- a version's config.yaml with its upload ---------------------------------------------

# On scale_onnx (y = 2x on [1, 2, 3, 4]): y read as the scores of four classes, so the
# answer for X names d then c; batches of at most 4 rows; a form with named fields.
CLASSIFIER_CONFIG = """
max_batch_size: 4
postprocess:
  - output: y
    labels: [a, b, c, d]
    top_k: 2
playground:
  inputs:
    x: {widget: form, features: [w, x, y, z]}
"""


def _post_version(
    client: TestClient, path: Path, config: str | bytes | None, model: str = "scale", stage: str | None = None
) -> httpx.Response:
    files: dict[str, tuple[str, bytes]] = {"file": (path.name, path.read_bytes())}
    if config is not None:
        files["config"] = ("config.yaml", config.encode() if isinstance(config, str) else config)
    return client.post(f"/api/v1/models/{model}/versions", files=files, data={"stage": stage} if stage else None)


def _served_config(client: TestClient, model: str = "scale") -> dict:
    response = client.get(f"/v2/models/{model}/config")
    assert response.status_code == 200, response.text
    document: dict = response.json()
    return document


def _configs(client: TestClient, model: str = "scale") -> list[tuple[int, str, dict | None]]:
    response = client.get(f"/api/v1/models/{model}/versions")
    assert response.status_code == 200, response.text
    return [(v["number"], v["state"], v["config"]) for v in response.json()]


def test_upload_with_a_config_serves_it_and_the_next_upload_keeps_it(client: TestClient, tmp_path: Path) -> None:
    sent = yaml.safe_load(CLASSIFIER_CONFIG)
    response = _post_version(client, scale_onnx(tmp_path / "a.onnx", 2.0), CLASSIFIER_CONFIG, stage="production")
    assert response.status_code == 201, response.text
    one = response.json()
    assert one["state"] == "ready", one
    assert one["config"] == sent

    # The loaded version runs with it: its batch limit, the classes/scores of the
    # postprocess step, and the playground's form fields.
    assert _served_config(client)["max_batch_size"] == 4
    answer = _infer(client)
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["y"]["data"] == [2.0, 4.0, 6.0, 8.0]
    assert outputs["classes"]["data"] == ["d", "c"] and outputs["classes"]["shape"] == [1, 2]
    assert outputs["scores"]["data"] == [8.0, 6.0]
    (form,) = client.get("/api/v1/catalog/scale").json()["inputs"]
    assert form["kind"] == "form" and form["features"] == ["w", "x", "y", "z"]

    # No config with the next upload: it takes version 1's, and is served with it.
    two = _upload(client, scale_onnx(tmp_path / "b.onnx", 3.0), stage="production")
    assert two["number"] == 2 and two["state"] == "ready"
    assert two["config"] == sent
    assert _served_config(client)["max_batch_size"] == 4
    outputs = {o["name"]: o for o in _infer(client)["outputs"]}
    assert outputs["classes"]["data"] == ["d", "c"] and outputs["scores"]["data"] == [12.0, 9.0]
    assert _configs(client) == [(1, "ready", sent), (2, "ready", sent)]


def test_a_failed_versions_config_is_not_taken_over(client: TestClient, tmp_path: Path) -> None:
    # The first version of a model without a config has none: the defaults.
    first = _upload(client, scale_onnx(tmp_path / "a.onnx", 1.0))
    assert first["state"] == "ready" and first["config"] is None
    # JSON is YAML: `ferry push --config` sends it so.
    small = {"max_batch_size": 2, "description": "two at a time"}
    response = _post_version(client, scale_onnx(tmp_path / "b.onnx", 2.0), json.dumps(small))
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "ready" and response.json()["config"] == small

    # A file that does not load, with a config: failed, and its config is kept on it.
    corrupt = tmp_path / "broken.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    response = _post_version(client, corrupt, "max_batch_size: 8\n")
    assert response.status_code == 201, response.text
    assert response.json()["state"] == "failed" and response.json()["config"] == {"max_batch_size": 8}

    # The next upload without a config takes version 2's: the latest *ready* one's.
    fourth = _upload(client, scale_onnx(tmp_path / "d.onnx", 4.0), stage="production")
    assert fourth["number"] == 4 and fourth["state"] == "ready"
    assert fourth["config"] == small
    assert _served_config(client)["max_batch_size"] == 2
    assert _infer(client)["outputs"][0]["data"] == [4.0, 8.0, 12.0, 16.0]
    assert [state for _, state, _ in _configs(client)] == ["ready", "ready", "failed", "ready"]


@pytest.mark.parametrize(
    "config",
    ["postprocess: [{labels: [a, b, c]}]\n", "postprocess: [{output: z, labels: [a, b, c, d]}]\n"],
    ids=["3-labels-for-4-classes", "unknown-output"],
)
def test_a_config_that_does_not_fit_the_model_fails_validation(client: TestClient, tmp_path: Path, config: str) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 1.0), stage="production")
    response = _post_version(client, scale_onnx(tmp_path / "b.onnx", 2.0), config, stage="production")
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["state"] == "failed", version
    assert "postprocess" in version["failure_reason"]
    # Production stays on version 1, which answers.
    assert client.get("/api/v1/models/scale").json()["stages"] == {"production": 1}
    assert _infer(client)["model_version"] == "1"


MIB = 1024 * 1024


REFUSED: list[tuple[str | bytes, int, str]] = [
    ("max_batch_size: [4\n", 400, "config.yaml is not valid YAML"),
    ("{max_batch_size: 4", 400, "config.yaml is not valid YAML"),
    ("- max_batch_size: 4\n", 400, "config.yaml must be a mapping"),
    ("42\n", 400, "config.yaml must be a mapping"),
    ('"max_batch_size: 4"\n', 400, "config.yaml must be a mapping"),
    ("max_batch_sise: 4\n", 400, "unknown key 'max_batch_sise'"),
    ("preprocess: [{image: {colour: RGB}}]\n", 400, "unknown key 'preprocess.0.image.colour'"),
    ("max_batch_size: -1\n", 400, "config.yaml: max_batch_size"),
    ("postprocess: [{labels: labels.txt}]\n", 400, "labels must be a list"),
    (b"description: caf\xe9\n", 400, "config.yaml must be UTF-8"),
    ("#" * (MIB + 1), 413, "config.yaml is over 1048576 bytes"),
    # The "billion laughs": 354 bytes that expand to 40 million nodes when walked.
    (
        "a0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 7)}]\n" for i in range(1, 10)),
        400,
        "aliases (*name) are not allowed",
    ),
    ("description: " + "[" * 200_000 + "]" * 200_000 + "\n", 400, "config.yaml is nested too deeply"),
]


def test_refused_configs_add_no_version(client: TestClient, tmp_path: Path) -> None:
    model = scale_onnx(tmp_path / "model.onnx", 2.0)
    # On a model that does not exist yet: it is not created either.
    for config, status, message in REFUSED:
        refused = _post_version(client, model, config, model="fresh", stage="production")
        assert refused.status_code == status, (config[:80], refused.text)
        error = refused.json()["error"]
        assert error.startswith("config.yaml") and message in error, (config[:80], error)
    assert client.get("/api/v1/models/fresh").status_code == 404
    assert client.get("/api/v1/models").json() == []

    # On a model with a version: the versions and stages stay as they were.
    _upload(client, model, stage="production")
    for config, status, message in REFUSED:
        refused = _post_version(client, model, config, stage="staging")
        assert refused.status_code == status, (config[:80], refused.text)
        assert message in refused.json()["error"]
    assert _configs(client) == [(1, "ready", None)]
    assert client.get("/api/v1/models/scale").json()["stages"] == {"production": 1}
    assert [m["name"] for m in client.get("/api/v1/models").json()] == ["scale"]


def test_a_config_of_exactly_1_mib_is_taken(client: TestClient, tmp_path: Path) -> None:
    padded = "max_batch_size: 3\n#" + "x" * (MIB - 20) + "\n"
    assert len(padded.encode()) == MIB
    version = _post_version(client, scale_onnx(tmp_path / "model.onnx", 2.0), padded, stage="production").json()
    assert version["state"] == "ready" and version["config"] == {"max_batch_size": 3}
    assert _served_config(client)["max_batch_size"] == 3


@pytest.mark.parametrize(
    "config",
    ["description: !!binary aGVsbG8=\n", "playground: {inputs: {x: {widget: canvas, range: [0, .nan]}}}\n"],
    ids=["binary", "nan"],
)
def test_configs_json_cannot_hold_are_refused(client: TestClient, tmp_path: Path, config: str) -> None:
    try:
        refused = _post_version(client, scale_onnx(tmp_path / "model.onnx", 2.0), config)
    except Exception as exc:  # the TestClient re-raises the server's error
        pytest.fail(f"the upload raised {type(exc).__name__}: {exc}")
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"].startswith("config.yaml")
    assert client.get("/api/v1/models/scale").status_code == 404


def test_a_model_with_no_version_leaves_the_server_ready_and_answers_404(client: TestClient) -> None:
    """An empty registry model cannot serve, and waiting will not change that: 404 (not
    503), and it does not take the node out of its load balancer."""
    assert client.post("/api/v1/models", json={"name": "empty"}).status_code == 201
    assert client.get("/v2/health/ready").status_code == 200
    for response in (
        client.post("/v2/models/empty/infer", json={"inputs": []}),
        client.post("/v1/models/empty:predict", json={"instances": [[1, 2, 3, 4]]}),
    ):
        assert response.status_code == 404, response.text
        assert "has no version that answers requests" in response.json()["error"]
