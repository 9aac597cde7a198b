"""Rollback and shadow traffic through the management API, in-process over a real
registry on SQLite and PostgreSQL (the fixture of test_management_api: with CI=true an
unreachable PostgreSQL fails the run)."""

from __future__ import annotations

import time
from pathlib import Path

from starlette.testclient import TestClient

from tests.builders import scale_onnx
from tests.integration import test_management_api
from tests.integration.test_management_api import _infer, _post_version, _upload

# The in-process server over a fresh registry, once per backend.
client = test_management_api.client
N = 25


def _promote(client: TestClient, number: int) -> None:
    response = client.put("/api/v1/models/scale/stages/production", json={"version": number})
    assert response.status_code == 200, response.text


def _traffic(client: TestClient, weights: dict[str, int], shadow: dict[str, int] | None = None) -> dict:
    response = client.put("/api/v1/models/scale/traffic", json={"weights": weights, "shadow": shadow})
    assert response.status_code == 200, response.text
    return response.json()


def _settled_shadow(client: TestClient, sent: int, timeout_s: float = 30.0) -> dict:
    """The shadow record once ``sent`` copies have all been answered (they run after the
    primary answers, so some may still be in flight when the last response arrives)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/api/v1/models/scale/shadow")
        assert response.status_code == 200, response.text
        record = response.json()
        if record["succeeded"] + record["failed"] >= sent or time.monotonic() > deadline:
            return record
        time.sleep(0.02)


def test_rollback_goes_back_one_promotion_at_a_time(client: TestClient, tmp_path: Path) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 1.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "b.onnx", 3.0))
    refused = client.post("/api/v1/models/scale/rollback")
    assert refused.status_code == 409, refused.text
    assert "nothing to roll back to" in refused.json()["error"]

    _promote(client, 2)
    assert _infer(client)["model_version"] == "2"
    response = client.post("/api/v1/models/scale/rollback")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["stages"] == {"production": 1}
    assert document == client.get("/api/v1/models/scale").json()
    answers = [_infer(client) for _ in range(10)]
    assert {a["model_version"] for a in answers} == {"1"}
    assert answers[0]["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0]
    # Version 2 is no stage any more: unloaded.
    assert client.post("/v2/models/scale/versions/2/infer", json={"inputs": []}).status_code == 404

    refused = client.post("/api/v1/models/scale/rollback")
    assert refused.status_code == 409
    assert "no earlier production version" in refused.json()["error"]
    assert client.post("/api/v1/models/nope/rollback").status_code == 404


def test_rollback_clears_the_canary_and_the_shadow(client: TestClient, tmp_path: Path) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 1.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "b.onnx", 3.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "c.onnx", 5.0))
    _traffic(client, {"1": 50, "2": 50}, {"version": 3, "percent": 100})

    response = client.post("/api/v1/models/scale/rollback")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["stages"] == {"production": 1}
    assert document["traffic"] == {"weights": {}, "shadow_version": None, "shadow_percent": 0}
    assert document["shadow"]["active"] is False
    assert all(_infer(client)["model_version"] == "1" for _ in range(N))
    for number in (2, 3):  # neither a stage, nor weighted, nor the shadow: unloaded
        assert client.post(f"/v2/models/scale/versions/{number}/infer", json={"inputs": []}).status_code == 404
    # The cleared shadow got no more copies.
    assert client.get("/api/v1/models/scale/shadow").json()["sent"] <= document["shadow"]["sent"]


def test_shadow_gets_copies_and_its_answers_are_compared_never_returned(client: TestClient, tmp_path: Path) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 2.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "same.onnx", 2.0))
    _upload(client, scale_onnx(tmp_path / "other.onnx", 7.0))
    assert client.get("/api/v1/models/scale/shadow").status_code == 404  # never had one

    document = _traffic(client, {"1": 100}, {"version": 2, "percent": 100})
    assert document["traffic"] == {"weights": {"1": 100}, "shadow_version": 2, "shadow_percent": 100}
    assert document["shadow"]["version"] == 2 and document["shadow"]["sent"] == 0
    answers = [_infer(client) for _ in range(N)]
    assert {a["model_version"] for a in answers} == {"1"}
    assert {tuple(a["outputs"][0]["data"]) for a in answers} == {(2.0, 4.0, 6.0, 8.0)}
    record = _settled_shadow(client, N)
    assert record == {
        "version": 2,
        "percent": 100,
        "active": True,
        "sent": N,
        "succeeded": N,
        "failed": 0,
        "skipped": 0,
        "agreed": N,
        "disagreed": 0,
    }
    assert client.get("/api/v1/models/scale").json()["shadow"] == record
    # Pinned requests go to versions that answer; a shadow never does.
    assert client.post("/v2/models/scale/versions/2/infer", json={"inputs": []}).status_code == 404
    assert _infer(client, version="1")["model_version"] == "1"  # pinned: not copied
    assert _settled_shadow(client, N)["sent"] == N

    # Another shadow version starts a new record; this one disagrees.
    _traffic(client, {"1": 100}, {"version": 3, "percent": 100})
    answers = [_infer(client) for _ in range(N)]
    assert {a["model_version"] for a in answers} == {"1"}
    assert {tuple(a["outputs"][0]["data"]) for a in answers} == {(2.0, 4.0, 6.0, 8.0)}
    record = _settled_shadow(client, N)
    assert (record["version"], record["sent"], record["succeeded"]) == (3, N, N)
    assert (record["agreed"], record["disagreed"], record["failed"], record["skipped"]) == (0, N, 0, 0)

    # Removed: the last record stays readable, inactive, and gets nothing more.
    document = _traffic(client, {"1": 100}, None)
    assert document["traffic"]["shadow_version"] is None
    assert document["shadow"]["active"] is False
    for _ in range(5):
        _infer(client)
    assert _settled_shadow(client, N)["sent"] == N
    assert client.post("/v2/models/scale/versions/3/infer", json={"inputs": []}).status_code == 404


def test_shadow_at_zero_percent_sends_nothing(client: TestClient, tmp_path: Path) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 2.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "b.onnx", 2.0))
    _traffic(client, {"1": 100}, {"version": 2, "percent": 0})
    assert all(_infer(client)["model_version"] == "1" for _ in range(N))
    time.sleep(0.1)
    record = client.get("/api/v1/models/scale/shadow").json()
    assert (record["version"], record["percent"], record["active"]) == (2, 0, True)
    assert (record["sent"], record["succeeded"], record["skipped"]) == (0, 0, 0)


def test_shadow_validation(client: TestClient, tmp_path: Path) -> None:
    _upload(client, scale_onnx(tmp_path / "a.onnx", 2.0), stage="production")
    _upload(client, scale_onnx(tmp_path / "b.onnx", 2.0))
    for shadow, status in [
        ({"version": 1, "percent": 10}, 400),  # takes traffic already
        ({"version": 9, "percent": 10}, 404),
        ({"version": 2, "percent": 101}, 400),
    ]:
        response = client.put("/api/v1/models/scale/traffic", json={"weights": {"1": 100}, "shadow": shadow})
        assert response.status_code == status, (shadow, response.text)


def test_shadow_runs_the_whole_pipeline_so_identical_versions_agree(client: TestClient, tmp_path: Path) -> None:
    """The shadow's answer goes through the same compute path as the primary's (here
    the labels postprocess): identical versions agree on every request, a changed one
    (other scores, so other classes) disagrees on every request."""
    config = "postprocess:\n  - output: y\n    labels: [a, b, c, d]\n    top_k: 2\n"
    for path in (scale_onnx(tmp_path / "a.onnx", 2.0), scale_onnx(tmp_path / "b.onnx", 2.0)):
        response = _post_version(client, path, config, stage="production" if path.stem == "a" else None)
        assert response.status_code == 201 and response.json()["state"] == "ready", response.text
    reversed_scores = tmp_path / "c.onnx"
    scale_onnx(reversed_scores, -1.0)  # the same four scores, reversed: other top classes
    response = _post_version(client, reversed_scores, config)
    assert response.status_code == 201 and response.json()["state"] == "ready", response.text

    _traffic(client, {"1": 100}, {"version": 2, "percent": 100})
    answers = [_infer(client) for _ in range(N)]
    assert {tuple(o["data"]) for a in answers for o in a["outputs"] if o["name"] == "classes"} == {("d", "c")}
    record = _settled_shadow(client, N)
    assert (record["sent"], record["succeeded"], record["agreed"], record["disagreed"]) == (N, N, N, 0)

    _traffic(client, {"1": 100}, {"version": 3, "percent": 100})
    for _ in range(N):
        _infer(client)
    record = _settled_shadow(client, N)
    assert (record["version"], record["succeeded"], record["agreed"], record["disagreed"]) == (3, N, 0, N)
