"""Running the third-party gRPC clients (tests/e2e/clients/) in their own virtualenv,
and a Ferry stub for the checks this process makes itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from ferry.grpc.protos import grpc_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SCRIPTS = Path(__file__).resolve().parent / "clients"
TIMEOUT_S = 120


def run_client(script: str, *args: str) -> dict[str, Any]:
    """Run ``tests/e2e/clients/SCRIPT ARGS`` with the clients' Python; its JSON report."""
    if not CLIENTS_PYTHON.exists():
        reason = f"{CLIENTS_PYTHON} is missing: `make client-deps` installs tritonclient and the KServe SDK"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (CI=true: these clients are mandatory)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    done = subprocess.run(
        [str(CLIENTS_PYTHON), str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=env,
        cwd=SCRIPTS,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def stub(address: str, credentials: grpc.ChannelCredentials | None = None) -> pb_grpc.GRPCInferenceServiceStub:
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    return pb_grpc.GRPCInferenceServiceStub(channel)
