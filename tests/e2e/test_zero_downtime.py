"""Deploying without dropping a request: a client loop runs the whole time while a new
version is pushed, promoted, put at a 50% canary and rolled back. Every request must
succeed, and every answer must come from a version that was allowed at that moment
(either side of a change while the change was being made)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

from tests.builders import scale_onnx
from tests.e2e.server import Server, start_command

# Each version multiplies by its own factor, so an answer says which version computed it.
FACTORS = {"1": 1.0, "2": 2.0}
X = [1.0, 2.0, 3.0, 4.0]


@dataclass
class Answer:
    sent: float
    received: float
    status: int
    version: str
    correct: bool


@dataclass
class Phase:
    """From ``start`` (the control call was sent) the versions in ``allowed`` may answer."""

    start: float
    end: float
    allowed: frozenset[str]


def _client_loop(url: str, stop: threading.Event, answers: list[Answer]) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}
    with requests.Session() as session:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                response = session.post(f"{url}/v2/models/scale/infer", json=body, timeout=30)
            except requests.RequestException:
                answers.append(Answer(sent, time.monotonic(), 0, "", False))
                continue
            received = time.monotonic()
            if response.status_code != 200:
                answers.append(Answer(sent, received, response.status_code, "", False))
                continue
            doc = response.json()
            version = doc["model_version"]
            y = np.array(doc["outputs"][0]["data"])
            correct = version in FACTORS and np.allclose(y, np.array(X) * FACTORS[version])
            answers.append(Answer(sent, received, 200, version, correct))


def _control(server: Server, method: str, path: str, **kwargs: object) -> requests.Response:
    response = requests.request(method, f"{server.url}/api/v1/models/scale{path}", timeout=120, **kwargs)  # type: ignore[arg-type]
    assert response.status_code in (200, 201), response.text
    return response


def test_push_promote_canary_rollback_without_a_failed_request(tmp_path: Path) -> None:
    server = start_command(["server", "--data-dir", str(tmp_path / "data")], tmp_path / "server.log")
    try:
        with scale_onnx(tmp_path / "v1.onnx", FACTORS["1"]).open("rb") as f:
            _control(server, "POST", "/versions", files={"file": ("model.onnx", f)}, data={"stage": "production"})
        answers: list[Answer] = []
        stop = threading.Event()
        clients = [threading.Thread(target=_client_loop, args=(server.url, stop, answers)) for _ in range(4)]
        for client in clients:
            client.start()
        phases: list[Phase] = []

        def change(allowed_after: set[str], method: str, path: str, **kwargs: object) -> None:
            time.sleep(1.0)  # steady traffic between changes
            start = time.monotonic()
            _control(server, method, path, **kwargs)
            phases.append(Phase(start, time.monotonic(), frozenset(allowed_after)))

        try:
            time.sleep(1.0)
            steady_until = time.monotonic()
            with scale_onnx(tmp_path / "v2.onnx", FACTORS["2"]).open("rb") as f:
                change({"1"}, "POST", "/versions", files={"file": ("model.onnx", f)})
            change({"2"}, "PUT", "/stages/production", json={"version": 2})
            change({"1", "2"}, "PUT", "/traffic", json={"weights": {"1": 50, "2": 50}})
            change({"1"}, "POST", "/rollback")
            time.sleep(1.0)
        finally:
            stop.set()
            for client in clients:
                client.join(60)
    finally:
        server.terminate()

    assert len(answers) > 100, "the client loop barely ran"
    failed = [a for a in answers if a.status != 200 or not a.correct]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed or were wrong: {failed[:5]}"

    def allowed_at(answer: Answer) -> set[str]:
        # Before any change only version 1 serves; a request that overlaps a change may
        # meet either side of it.
        allowed = {"1"}
        for phase in phases:
            if answer.received < phase.start:
                break
            allowed = (allowed | phase.allowed) if answer.sent <= phase.end else set(phase.allowed)
        return allowed

    wrong = [a for a in answers if a.version not in allowed_at(a)]
    assert not wrong, f"answers from versions not allowed at the time: {wrong[:5]}"
    canary = [a.version for a in answers if phases[2].end < a.sent and a.received < phases[3].start]
    assert {"1", "2"} <= set(canary), "both versions should answer during the 50% canary"

    steady = [a.received - a.sent for a in answers if a.received < steady_until]
    promoting = [a.received - a.sent for a in answers if a.sent <= phases[1].end and a.received >= phases[1].start]
    p99 = lambda values: float(np.percentile(values, 99)) * 1000  # noqa: E731
    print(
        f"\n[e2e] {len(answers)} requests, 0 failed; p99 steady {p99(steady):.1f} ms, "
        f"p99 during the promotion {p99(promoting):.1f} ms ({len(promoting)} requests)"
    )
