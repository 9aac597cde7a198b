"""Untrusted work — loading and warming up an uploaded artifact — in a child process with
a memory limit, a CPU-time limit and a timeout, so that a hostile or broken file fails
its version and never the server (a 1 MB zip bomb or a 200-byte ONNX graph can ask for
gigabytes).

Children are forked from a forkserver: a small single-threaded process started once,
which imports numpy and onnxruntime before it forks. A plain fork of the server would
copy its threads' locks mid-use (uvicorn, gRPC, onnxruntime pools); a spawned child
would import everything again for every upload (seconds)."""

from __future__ import annotations

import importlib.util
import multiprocessing
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from ferry.warmup import load_failure

T = TypeVar("T")

# What most validations import, loaded once in the forkserver (torch is not: it would
# make the forkserver heavy for servers that never see a PyTorch upload).
_PRELOAD = ["ferry.registry_source", "numpy", "onnxruntime", "sklearn.base", "skops.io"]


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu_seconds: int
    timeout_s: float

    def describe(self) -> str:
        return f"{self.memory_bytes // 2**20} MiB of memory, {self.cpu_seconds} s of CPU, {self.timeout_s:g} s in all"


class SandboxFailure(Exception):
    """The work failed or broke a limit; the message is for the uploader."""


def run(work: Callable[..., T], args: tuple[Any, ...], limits: Limits) -> T:
    """``work(*args)`` in a limited child process (blocking: call it from a thread).
    ``work`` must be importable by name; its result and exceptions travel by pickle."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([name for name in _PRELOAD if importlib.util.find_spec(name.split(".")[0])])
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, limits, work, args), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(limits.timeout_s):
            raise SandboxFailure(f"validation took over {limits.timeout_s:g} s and was stopped")
        try:
            kind, value = receiver.recv()
        except (EOFError, OSError):
            child.join(5)
            raise SandboxFailure(_death(child.exitcode, limits)) from None
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
    if kind == "ok":
        return value
    raise SandboxFailure(value)


def _child(sender: Connection, limits: Limits, work: Callable[..., Any], args: tuple[Any, ...]) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    # The soft limit sends SIGXCPU (the answer names it), the hard one a second later SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    try:
        outcome = ("ok", work(*args))
    except MemoryError:
        outcome = ("error", f"it needs more than the {limits.memory_bytes // 2**20} MiB validation may use")
    except BaseException as exc:
        reason = load_failure(exc) if isinstance(exc, Exception) else type(exc).__name__
        if _out_of_memory(reason):
            reason += f" (validation may use {limits.memory_bytes // 2**20} MiB)"
        outcome = ("error", reason)
    try:
        sender.send(outcome)
    except Exception as exc:  # an unpicklable result: the work's bug, said plainly
        sender.send(("error", f"validation could not report its result: {exc}"))
    sender.close()


def _out_of_memory(reason: str) -> bool:
    text = reason.lower()
    return any(sign in text for sign in ("bad_alloc", "failed to allocate", "unable to allocate", "out of memory"))


def _death(exitcode: int | None, limits: Limits) -> str:
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        if number in (signal.SIGXCPU, signal.SIGKILL):
            return f"validation was stopped: it used more than its limits ({limits.describe()})"
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        return f"validation crashed ({name}); the model file may be corrupt or need more than {limits.describe()}"
    return f"validation ended without an answer (exit status {exitcode}); the file may be corrupt"
