"""Start and stop a real ``ferry serve`` process for end-to-end tests.

The server runs as a child process on 127.0.0.1 and a free port, with its output in a
log file (not a pipe, so a chatty server can never block on a full pipe buffer)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
# Generous: the repository fixture loads scikit-learn, which takes seconds on a small machine.
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# No proxy from the environment may stand between the tests and a loopback server.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ferry_command() -> list[str]:
    """The installed ``ferry`` console script of this virtualenv, so the tests run the
    same entry point a user runs."""
    script = Path(sys.executable).parent / "ferry"
    if script.exists():
        return [str(script)]
    found = shutil.which("ferry")
    return [found] if found else [sys.executable, "-m", "ferry"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    started_at: float
    ready_after_s: float = 0.0
    grpc_port: int = 0

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC endpoint, the form tritonclient.grpc's ``url`` takes."""
        return f"{HOST}:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, the form tritonclient's ``url`` takes."""
        return f"{HOST}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, wait for the exit, and SIGKILL if it does not come; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"ferry did not exit within {timeout_s}s of SIGTERM\n{self.log()}") from None


def start(
    paths: list[Path], log_path: Path, *args: str, timeout_s: float = READY_TIMEOUT_S, auth: bool = False
) -> Server:
    """Run ``ferry serve PATH... ARGS`` and return once /v2/health/ready answers 200.
    The process is killed again if it never gets ready."""
    return start_command(["serve", *map(str, paths)], log_path, *args, timeout_s=timeout_s, auth=auth)


def start_command(
    argv: list[str], log_path: Path, *args: str, timeout_s: float = READY_TIMEOUT_S, auth: bool = False
) -> Server:
    """Run ``ferry ARGV --host --port ARGS`` (``serve PATH...`` or ``server --data-dir D``)
    and return once /v2/health/ready answers 200. Without ``auth``, the server runs with
    ``--no-auth``: the tests of keys (tests/e2e/test_security.py) ask for them."""
    port = free_port()
    command = [*ferry_command(), *argv, "--host", HOST, "--port", str(port), *args]
    grpc_port = 0
    if "--grpc-port" not in args:
        # Never the default 8001: tests run servers side by side.
        grpc_port = free_port()
        command += ["--grpc-port", str(grpc_port)]
    if not auth:
        command.append("--no-auth")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log_file = log_path.open("wb")
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    log_file.close()  # the child holds its own descriptor
    server = Server(process, port, log_path, started, grpc_port=grpc_port)
    try:
        wait_ready(server, timeout_s)
    except BaseException:
        server.process.kill()
        server.process.wait(5)
        raise
    server.ready_after_s = time.monotonic() - started
    return server


def wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"ferry exited with {server.process.returncode} before it was ready\n{server.log()}")
        if http_status(f"{server.url}/v2/health/ready") == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"ferry was not ready within {timeout_s}s\n{server.log()}")


def http_status(url: str) -> int | None:
    """The status of a GET, or None while nothing accepts connections."""
    try:
        with _DIRECT.open(url, timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


@contextmanager
def running(paths: list[Path], log_path: Path, *args: str) -> Iterator[Server]:
    """A ready server for the ``with`` block, always stopped afterwards (for fixtures)."""
    server = start(paths, log_path, *args)
    try:
        yield server
    finally:
        server.terminate()
