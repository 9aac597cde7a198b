"""The `ferry` client commands (push, models, versions, promote, traffic, rollback), run
as the installed console script against a real `ferry server` process."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.builders import scale_onnx
from tests.e2e.server import Server, ferry_command, free_port, start_command


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cli-server")
    srv = start_command(["server", "--data-dir", str(root / "data")], root / "server.log")
    try:
        yield srv
    finally:
        srv.terminate()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-models")
    corrupt = root / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model")
    return {"v1": scale_onnx(root / "v1.onnx", 2.0), "v2": scale_onnx(root / "v2.onnx", 3.0), "corrupt": corrupt}


def ferry(*argv: str, url: str | None = None) -> Result:
    env = {k: v for k, v in os.environ.items() if k not in ("FERRY_URL", "FERRY_API_KEY")}
    if url is not None:
        env["FERRY_URL"] = url
    done = subprocess.run([*ferry_command(), *argv], capture_output=True, text=True, env=env, timeout=120)
    return Result(done.returncode, done.stdout, done.stderr)


def ok(server: Server, *argv: str) -> Result:
    result = ferry(*argv, url=server.url)
    assert result.code == 0, result
    assert result.err == "", result
    return result


def model(server: Server, name: str) -> dict:
    response = requests.get(f"{server.url}/api/v1/models/{name}", timeout=30)
    assert response.status_code == 200, response.text
    document: dict = response.json()
    return document


def two_versions(server: Server, files: dict[str, Path], name: str) -> None:
    """Version 1 on production, version 2 ready."""
    ok(server, "push", str(files["v1"]), "--name", name, "--stage", "production")
    ok(server, "push", str(files["v2"]), "--name", name)


def test_push_a_ready_version_and_a_corrupt_one(server: Server, files: dict[str, Path]) -> None:
    first = ok(server, "push", str(files["v1"]), "--name", "pushed", "--stage", "staging")
    lines = first.out.splitlines()
    assert lines[0].startswith(f"pushed version 1: ready (runtime onnx, {files['v1'].stat().st_size} B, warm-up ")
    assert lines[1:] == ["pushed: staging -> version 1"]
    assert model(server, "pushed")["stages"] == {"staging": 1}

    failed = ferry("push", str(files["corrupt"]), "--name", "pushed", url=server.url)
    assert failed.code == 1, failed
    assert failed.out.startswith("pushed version 2: failed\nreason: ")
    assert "corrupt.onnx" in failed.out  # the server's reason names the file it could not load


def test_models_and_versions_tables(server: Server, files: dict[str, Path]) -> None:
    two_versions(server, files, "listed")
    ferry("push", str(files["corrupt"]), "--name", "listed", url=server.url)

    lines = ok(server, "models").out.splitlines()
    assert lines[0].split() == ["NAME", "PRODUCTION", "STAGING", "TRAFFIC", "DESCRIPTION"]
    assert ["listed", "1", "-", "(production)", "-"] in [line.split() for line in lines[1:]]

    lines = ok(server, "versions", "listed").out.splitlines()
    assert lines[0].split()[:4] == ["VERSION", "STATE", "RUNTIME", "SIZE"]
    rows = [line.split() for line in lines[1:]]
    assert [row[:3] for row in rows] == [["1", "ready", "onnx"], ["2", "ready", "onnx"], ["3", "failed", "onnx"]]
    assert "production" in rows[0] and "production" not in rows[1]
    assert "INVALID_PROTOBUF" in lines[3] or "cannot load" in lines[3]


def test_json_output_is_the_servers_json(server: Server, files: dict[str, Path]) -> None:
    pushed = json.loads(ok(server, "push", str(files["v1"]), "--name", "scripted", "--json").out)
    assert pushed["model"] == "scripted" and pushed["number"] == 1 and pushed["state"] == "ready"
    models = json.loads(ok(server, "models", "--json").out)
    assert "scripted" in [m["name"] for m in models]
    versions = json.loads(ok(server, "versions", "scripted", "--json").out)
    assert [v["number"] for v in versions] == [1]
    promoted = json.loads(ok(server, "promote", "scripted", "1", "--json").out)
    assert promoted["stages"] == {"production": 1}


def test_promote(server: Server, files: dict[str, Path]) -> None:
    two_versions(server, files, "promoted")
    result = ok(server, "promote", "promoted", "2")
    assert result.out.splitlines()[0] == "promoted: production -> version 2"
    result = ok(server, "promote", "promoted", "1", "--stage", "staging")
    assert "promoted: staging -> version 1" in result.out.splitlines()
    assert model(server, "promoted")["stages"] == {"production": 2, "staging": 1}

    missing = ferry("promote", "promoted", "9", url=server.url)
    assert missing.code == 1
    assert missing.err.startswith("ferry: ") and "9" in missing.err and "(HTTP 404)" in missing.err


def test_traffic_weights(server: Server, files: dict[str, Path]) -> None:
    two_versions(server, files, "split")
    result = ok(server, "traffic", "split", "1=90", "2=10")
    assert "split: traffic 1=90% 2=10%" in result.out.splitlines()
    assert model(server, "split")["traffic"]["weights"] == {"1": 90, "2": 10}

    # The server's refusal (version 3 does not exist) comes back as `ferry: <message>`.
    refused = ferry("traffic", "split", "1=50", "3=50", url=server.url)
    assert refused.code == 1 and refused.err.startswith("ferry: ") and refused.out == ""
    assert model(server, "split")["traffic"]["weights"] == {"1": 90, "2": 10}


def test_traffic_clear_ends_the_split(server: Server, files: dict[str, Path]) -> None:
    two_versions(server, files, "cleared")
    ok(server, "traffic", "cleared", "2=100")
    ok(server, "traffic", "cleared", "--clear")
    traffic = model(server, "cleared")["traffic"]
    assert (traffic["weights"], traffic["shadow_version"]) == ({}, None)
    # Flags that make no sense together are usage errors (exit 2), sent nowhere.
    assert ferry("traffic", "cleared", "--clear", "1=100", url=server.url).code == 2
    assert ferry("traffic", "cleared", url=server.url).code == 2


def test_traffic_with_a_shadow(server: Server, files: dict[str, Path]) -> None:
    two_versions(server, files, "shadowed")
    result = ferry("traffic", "shadowed", "1=100", "--shadow", "2=20", url=server.url)
    if result.code != 0 and ("(HTTP 400)" in result.err or "(HTTP 404)" in result.err):
        pytest.skip(f"this server refuses the shadow field: {result.err.strip()}")
    if result.code != 0 and "accepted the weights but not the shadow" in result.err:
        # A server from before shadow traffic ignores the unknown field and answers 200.
        pytest.skip(f"this server ignores the shadow field: {result.err.strip()}")
    assert result.code == 0, result
    assert "shadowed: traffic 1=100%, shadow 2=20%" in result.out.splitlines()
    traffic = model(server, "shadowed")["traffic"]
    assert (traffic["weights"], traffic["shadow_version"], traffic["shadow_percent"]) == ({"1": 100}, 2, 20)


def test_rollback(server: Server, files: dict[str, Path]) -> None:
    two_versions(server, files, "rolled")
    ok(server, "promote", "rolled", "2")
    result = ferry("rollback", "rolled", url=server.url)
    if result.code != 0 and ("(HTTP 400)" in result.err or "(HTTP 404)" in result.err):
        pytest.skip(f"this server has no rollback yet: {result.err.strip()}")
    assert result.code == 0, result
    assert result.out.splitlines()[0] == "rolled: production -> version 1"
    assert model(server, "rolled")["stages"]["production"] == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["traffic", "any", "1=90"],
        ["traffic", "any", "1=ninety"],
        ["promote", "any", "latest"],
        ["push", "model.onnx"],
        ["models", "--url", "127.0.0.1:8000"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_with_2(argv: list[str]) -> None:
    # Refused before any request: the URL leads nowhere.
    result = ferry(*argv, url=f"http://127.0.0.1:{free_port()}")
    assert result.code == 2, result
    assert "error:" in result.err and result.out == ""


def test_an_unreachable_server_exits_with_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = ferry("models", url=url)
    assert result.code == 1, result
    assert result.err.startswith(f"ferry: could not reach {url}")
    assert result.out == ""


# -- push --config ------------------------------------------------------------------------


def versions_of(server: Server, name: str) -> list[dict]:
    response = requests.get(f"{server.url}/api/v1/models/{name}/versions", timeout=30)
    assert response.status_code == 200, response.text
    versions: list[dict] = response.json()
    return versions


def test_push_with_a_config_sends_its_labels_file_as_a_list(
    server: Server, files: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_batch_size: 4\npostprocess:\n  - {output: y, labels: labels.txt, top_k: 2}\n")
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\n")
    expected = {"max_batch_size": 4, "postprocess": [{"output": "y", "labels": ["a", "b", "c", "d"], "top_k": 2}]}
    argv = ["push", str(files["v1"]), "--name", "configured", "--config", str(config), "--stage", "production"]
    pushed = json.loads(ok(server, *argv, "--json").out)
    assert pushed["state"] == "ready" and pushed["config"] == expected

    # The server runs the version with it: batches of 4, class names from the list.
    triton = requests.get(f"{server.url}/v2/models/configured/config", timeout=30).json()
    assert triton["max_batch_size"] == 4
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}
    answer = requests.post(f"{server.url}/v2/models/configured/infer", json=body, timeout=30).json()
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert outputs["classes"] == ["d", "c"] and outputs["scores"] == [8.0, 6.0]

    # Pushed without --config, the next version keeps it.
    ok(server, "push", str(files["v2"]), "--name", "configured", "--stage", "production")
    assert [v["config"] for v in versions_of(server, "configured")] == [expected, expected]
    answer = requests.post(f"{server.url}/v2/models/configured/infer", json=body, timeout=30).json()
    assert answer["model_version"] == "2"
    assert {o["name"]: o["data"] for o in answer["outputs"]}["classes"] == ["d", "c"]


def test_push_with_a_missing_config_exits_with_2(server: Server, files: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "config.yaml"
    result = ferry("push", str(files["v1"]), "--name", "unconfigured", "--config", str(missing), url=server.url)
    assert result.code == 2, result
    assert result.err.strip() == f"ferry: {missing}: no such file" and result.out == ""
    assert requests.get(f"{server.url}/api/v1/models/unconfigured", timeout=30).status_code == 404


def test_push_with_an_invalid_config_is_refused_before_the_upload(
    server: Server, files: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_batch_size: 4\npostprocess: [{labels: labels.txt}]\n")  # no labels.txt beside it
    result = ferry("push", str(files["v1"]), "--name", "misconfigured", "--config", str(config), url=server.url)
    assert result.code == 1, result
    assert result.err.startswith("ferry: ") and "labels file 'labels.txt'" in result.err, result
    assert result.out == ""
    assert requests.get(f"{server.url}/api/v1/models/misconfigured", timeout=30).status_code == 404
