"""`ferry bench`, the installed command, against a real `ferry serve`: one short run per
protocol (the table, CSV and JSON, exit 0), an unknown model and a bad URL (exit 2), a
server answering errors (exit 1), and keys on both transports."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.builders import add_sub_onnx, identity_onnx
from tests.e2e.server import Server, ferry_command, running, start

KEY = re.compile(r"fy_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
# Short runs: each test is a few seconds, start-up included.
QUICK = ("--duration", "1s", "--warmup", "0.2s")
HEADER = ["concurrency", "req/s", "rows/s", "p50", "ms", "p90", "ms", "p99", "ms", "errors"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def rows(self) -> dict[int, list[str]]:
        """The table's rows by concurrency, after checking its header."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.split() == HEADER)
        rows = {}
        for line in lines[start + 1 :]:
            cells = line.split()
            if len(cells) != 7 or not cells[0].isdigit():
                break
            rows[int(cells[0])] = cells
        return rows


def bench(*argv: str) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "FERRY_API_KEY"}
    done = subprocess.run([*ferry_command(), "bench", *argv], capture_output=True, text=True, env=env, timeout=60)
    return Result(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("bench-models")
    return [
        add_sub_onnx(root / "add_sub.onnx"),  # two FP32 [-1, 16] inputs
        identity_onnx(root / "text.onnx", "BYTES"),  # BYTES [-1, -1]
        identity_onnx(root / "half.onnx", "FP16"),
    ]


@pytest.fixture(scope="module")
def server(models: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(models, tmp_path_factory.mktemp("bench-logs") / "server.log") as srv:
        yield srv


def level(doc: dict[str, Any], concurrency: int) -> dict[str, Any]:
    (entry,) = [entry for entry in doc["levels"] if entry["concurrency"] == concurrency]
    return entry


def test_rest_json_prints_a_row_per_level_and_writes_csv_and_json(server: Server, tmp_path: Path) -> None:
    csv_path, json_path = tmp_path / "levels.csv", tmp_path / "run.json"
    result = bench(server.url, "add_sub", "--concurrency", "1,2", *QUICK, "--csv", str(csv_path),
                   "--json", str(json_path))  # fmt: skip
    assert result.code == 0, result
    assert result.err == ""  # stderr is no terminal: no progress line
    assert "model add_sub" in result.out and "rest-json" in result.out
    assert "INPUT0 FP32 [1, 16], INPUT1 FP32 [1, 16]" in result.out
    rows = result.rows()
    assert list(rows) == [1, 2]
    for cells in rows.values():
        assert float(cells[1].replace(",", "")) > 0  # req/s
        assert cells[1] == cells[2]  # one row per request
        assert float(cells[3]) <= float(cells[4]) <= float(cells[5])  # p50 <= p90 <= p99
        assert cells[6] == "0"
    table = list(csv.DictReader(csv_path.open()))
    assert [row["concurrency"] for row in table] == ["1", "2"]
    assert all(int(row["requests"]) > 0 and row["errors"] == "0" for row in table)
    doc = json.loads(json_path.read_text())
    assert (doc["model"], doc["protocol"], doc["url"]) == ("add_sub", "rest-json", server.url)
    assert level(doc, 2)["requests"] == int(table[1]["requests"])
    assert level(doc, 2)["errors_by_status"] == {}


def test_rest_binary_sends_bytes_tensors_in_batches(server: Server, tmp_path: Path) -> None:
    json_path = tmp_path / "run.json"
    result = bench(server.url, "text", "--protocol", "rest-binary", "--batch", "4", "--concurrency", "2", *QUICK,
                   "--json", str(json_path))  # fmt: skip
    assert result.code == 0, result
    assert "INPUT0 BYTES [4, 1]" in result.out
    entry = level(json.loads(json_path.read_text()), 2)
    assert entry["requests"] > 0 and entry["errors"] == 0
    assert entry["rows_per_s"] == pytest.approx(4 * entry["requests_per_s"], rel=1e-3)


def test_grpc_runs_model_infer_on_the_grpc_port(server: Server, tmp_path: Path) -> None:
    json_path = tmp_path / "run.json"
    result = bench(server.grpc_address, "half", "--protocol", "grpc", "--concurrency", "2", *QUICK,
                   "--json", str(json_path))  # fmt: skip
    assert result.code == 0, result
    assert "over grpc" in result.out and "INPUT0 FP16 [1, 1]" in result.out
    entry = level(json.loads(json_path.read_text()), 2)
    assert entry["requests"] > 0 and entry["errors"] == 0


@pytest.mark.parametrize("protocol", ["rest-json", "grpc"])
def test_an_unknown_model_is_a_usage_error(server: Server, protocol: str) -> None:
    url = server.grpc_address if protocol == "grpc" else server.url
    result = bench(url, "no-such-model", "--protocol", protocol, *QUICK)
    assert result.code == 2, result
    assert result.out == ""
    assert result.err.startswith("ferry: cannot read the metadata of model 'no-such-model'")
    assert "no-such-model" in result.err.split(":", 2)[2]  # the server's own message follows


def test_a_bad_url_or_a_server_that_is_not_there_is_a_usage_error(server: Server) -> None:
    result = bench(server.address, "add_sub")  # REST needs a scheme
    assert result.code == 2 and "not an http:// or https:// URL" in result.err, result
    result = bench("http://127.0.0.1:1", "add_sub")
    assert result.code == 2 and "could not reach http://127.0.0.1:1" in result.err, result


@pytest.mark.parametrize("protocol", ["rest-json", "grpc"])
def test_a_server_answering_errors_exits_1_and_says_what_it_answered(
    server: Server, tmp_path: Path, protocol: str
) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 3],
                                             "data": [1, 2, 3]}]}))  # fmt: skip
    json_path = tmp_path / "run.json"
    url = server.grpc_address if protocol == "grpc" else server.url
    result = bench(url, "add_sub", "--protocol", protocol, "--input-data", str(wrong), "--concurrency", "2", *QUICK,
                   "--json", str(json_path))  # fmt: skip
    assert result.code == 1, result
    status = "INVALID_ARGUMENT" if protocol == "grpc" else "HTTP 400"
    (cells,) = result.rows().values()
    errors = int(cells[6].replace(",", ""))
    assert errors > 0 and cells[3:6] == ["-", "-", "-"]
    assert re.search(rf"concurrency 2: {errors:,} x {status}: .*INPUT", result.out), result.out
    entry = level(json.loads(json_path.read_text()), 2)
    assert entry["errors_by_status"] == {status: errors}
    assert entry["requests"] == 0


def test_the_api_key_is_sent_over_rest_and_grpc(models: list[Path], tmp_path: Path) -> None:
    keyed = start(models, tmp_path / "keyed.log", "--data-dir", str(tmp_path / "data"), auth=True)
    try:
        found = set(KEY.findall(keyed.log()))
        assert len(found) == 1, keyed.log()
        admin = found.pop()
        refused = bench(keyed.url, "add_sub", *QUICK)
        assert refused.code == 2 and "HTTP 401" in refused.err, refused
        for url, protocol in ((keyed.url, "rest-binary"), (keyed.grpc_address, "grpc")):
            result = bench(url, "add_sub", "--protocol", protocol, "--api-key", admin, "--concurrency", "1", *QUICK)
            assert result.code == 0, result
            assert admin not in result.out + result.err
    finally:
        keyed.terminate()
