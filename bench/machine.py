"""What the numbers were measured on: hardware, versions, date."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

FERRY_PACKAGES = ("ferry-serve", "onnxruntime", "numpy", "fastapi", "uvicorn", "orjson", "pydantic")
PEER_PACKAGES = ("mlserver", "litserve", "fastapi", "uvicorn", "onnxruntime", "numpy", "pydantic")


def _cpuinfo(key: str) -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return 0.0


def _versions(packages: tuple[str, ...]) -> str:
    found = []
    for name in packages:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _peer_versions(python: Path) -> str:
    code = f"from bench.machine import _versions; print(_versions({PEER_PACKAGES!r}))"
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            [str(python), "-c", code], capture_output=True, text=True, timeout=60, cwd=root, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    return done.stdout.strip()


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).splitlines()[0] if (done.stdout or done.stderr) else "unknown"


def _git_commit(root: Path) -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, cwd=root, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, cwd=root, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' with uncommitted changes' if dirty else ''}"


def describe(peer_python: Path) -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPU": f"{_cpuinfo('model name')}, {os.cpu_count()} cores",
        "memory": f"{_memory_gib():.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "Ferry commit": _git_commit(root),
        "Ferry venv": _versions(FERRY_PACKAGES),
        "peers venv (bench/.venv)": _peer_versions(peer_python),
        "load generator": _wrk_version(),
        "load average at start": Path("/proc/loadavg").read_text().split(" ")[0],
    }
