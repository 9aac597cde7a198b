"""The four servers under test: how each is laid out on disk, started, checked for
readiness and stopped. One runs at a time, and its whole process tree is gone before the
next starts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.procs import stop_tree

ROOT = Path(__file__).resolve().parent.parent
FERRY_VENV = ROOT / ".venv"
# `make bench` builds the peers' venv here; BENCH_PEER_VENV points elsewhere for a quick try.
PEER_VENV = Path(os.environ.get("BENCH_PEER_VENV", ROOT / "bench" / ".venv"))
MODELS = ("mlp", "cnn")

# =====================================================================================
# Tuning. Ferry's command line and per-model config.yaml are set here and nowhere else.
# =====================================================================================

# onnxruntime intra-op threads per model, used alike by every server and the ceiling.
# One thread suits the tiny MLP (more only adds hand-off cost); the CNN is compute-bound.
ORT_THREADS: dict[str, int] = {"mlp": 1, "cnn": 2}

# Extra `ferry serve` flags. --no-auth: none of the peers checks an API key, so Ferry
# does not either here; what a key check costs is measured by bench/overhead.py (--feature auth).
FERRY_FLAGS: list[str] = ["--no-auth"]

# Each model's config.yaml in Ferry's model repository (keys: see README "config.yaml").
FERRY_MODEL_CONFIG: dict[str, dict[str, object]] = {
    "mlp": {"max_batch_size": 32, "threads": ORT_THREADS["mlp"], "device": "cpu"},
    # The same two threads as the peers and the ceiling, as two single-threaded instances:
    # each runs its own batch, with none of intra-op parallelism's hand-offs.
    "cnn": {"max_batch_size": 32, "instances": ORT_THREADS["cnn"], "threads": 1, "device": "cpu"},
}


def ferry_command(paths: list[Path], port: int) -> list[str]:
    """The Ferry command line, for the benchmark and for the start-up measurement alike."""
    ferry = str(FERRY_VENV / "bin" / "ferry")
    return [ferry, "serve", *map(str, paths), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            *FERRY_FLAGS]  # fmt: skip


# The peers' own knobs live beside them: bench/peers/mlserver/*/model-settings.json
# (max_batch_size, max_batch_time) and bench/peers/litserve_app.py (MAX_BATCH_SIZE, BATCH_TIMEOUT_S).
# =====================================================================================


@dataclass(frozen=True)
class Layout:
    """Where the generated files for one benchmark run live."""

    work: Path

    @property
    def model_repo(self) -> Path:
        return self.work / "models"

    @property
    def mlserver_repo(self) -> Path:
        return self.work / "mlserver"

    def cwd(self, server: str) -> Path:
        path = self.work / "cwd" / server
        path.mkdir(parents=True, exist_ok=True)
        return path


def write_repositories(layout: Layout, build: dict[str, Callable[[Path], object]]) -> None:
    """Ferry's model repository (also read by the FastAPI and LitServe peers), and MLServer's."""
    for name in MODELS:
        model = layout.model_repo / name / "1" / "model.onnx"
        build[name](model)  # always afresh: a few seconds, and never a stale model
        config = layout.model_repo / name / "config.yaml"
        config.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in FERRY_MODEL_CONFIG[name].items()))
        target = layout.mlserver_repo / name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "bench" / "peers" / "mlserver" / name / "model-settings.json", target)
        shutil.copy(model, target / "model.onnx")
    shutil.copy(ROOT / "bench" / "peers" / "mlserver" / "settings.json", layout.mlserver_repo)


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    ready_path: str
    binary: bool  # speaks the V2 binary tensor extension
    command: Callable[[Layout, list[int]], list[str]]
    ports: int = 1
    peer: bool = True

    def environment(self, layout: Layout, ports: list[int]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MLSERVER_"))}
        env["BENCH_MODEL_REPO"] = str(layout.model_repo)
        env["BENCH_ORT_THREADS"] = json.dumps(ORT_THREADS)
        if self.peer:
            env["PYTHONPATH"] = str(ROOT)
        if self.key == "mlserver":
            env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"] = str(ports[0]), str(ports[1])
        return env


def _peer(*args: str) -> list[str]:
    return [str(PEER_VENV / "bin" / "python"), *args]


SERVERS: tuple[ServerSpec, ...] = (
    ServerSpec("ferry", "Ferry", "/v2/health/ready", True,
               lambda layout, ports: ferry_command([layout.model_repo], ports[0]), peer=False),
    ServerSpec("fastapi", "FastAPI+ORT", "/v2/health/ready", False,
               lambda layout, ports: _peer("-m", "uvicorn", "bench.peers.fastapi_app:app", "--host", "127.0.0.1",
                                           "--port", str(ports[0]), "--log-level", "warning", "--no-access-log")),
    ServerSpec("mlserver", "MLServer", "/v2/health/ready", False,
               lambda layout, ports: _peer("-m", "mlserver.cli.main", "start", str(layout.mlserver_repo)), ports=2),
    ServerSpec("litserve", "LitServe", "/health", False,
               lambda layout, ports: _peer("-m", "bench.peers.litserve_app", str(ports[0]))),
)  # fmt: skip


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def http_status(url: str, timeout_s: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float, poll_s: float = 0.05) -> None:
    """Return once ``url`` answers 200; raise if the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before it was ready")
        if http_status(url, timeout_s=1.0) == 200:
            return
        time.sleep(poll_s)
    raise TimeoutError(f"not ready after {timeout_s:.0f} s")


def start(command: list[str], cwd: Path, env: dict[str, str] | None, log: IO[bytes] | int) -> subprocess.Popen[bytes]:
    """A server in a session of its own, so that its whole process group can be signalled."""
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@dataclass(frozen=True)
class Running:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    base_url: str
    ready_s: float


@contextmanager
def serving(spec: ServerSpec, layout: Layout, log: Path, ready_timeout_s: float = 180.0) -> Iterator[Running]:
    """Start the server, wait until it is ready, and always stop its whole process tree."""
    ports = free_ports(spec.ports)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as log_file:
        started = time.monotonic()
        proc = start(spec.command(layout, ports), layout.cwd(spec.key), spec.environment(layout, ports), log_file)
        try:
            base_url = f"http://127.0.0.1:{ports[0]}"
            wait_ready(proc, base_url + spec.ready_path, ready_timeout_s)
            yield Running(spec, proc, base_url, time.monotonic() - started)
        finally:
            stop_tree(proc)
