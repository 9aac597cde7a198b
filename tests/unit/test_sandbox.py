"""ferry.sandbox: work in a child process that breaks a limit fails with a reason the
uploader can read, and the calling process carries on."""

from __future__ import annotations

import os
import time

import pytest

from ferry.sandbox import Limits, SandboxFailure, run

GENEROUS = Limits(memory_bytes=2 * 2**30, cpu_seconds=60, timeout_s=60)


def add(a: int, b: int) -> int:
    return a + b


def allocate(size: int) -> int:
    return len(bytearray(size))


def spin() -> None:
    while True:
        pass


def sleep() -> None:
    time.sleep(120)


def refuse() -> None:
    raise ValueError("not a model")


def pid() -> int:
    return os.getpid()


def test_the_result_comes_back_from_another_process() -> None:
    assert run(add, (2, 3), GENEROUS) == 5
    assert run(pid, (), GENEROUS) != os.getpid()


def test_an_error_is_its_message() -> None:
    with pytest.raises(SandboxFailure, match=r"^ValueError: not a model$"):
        run(refuse, (), GENEROUS)


def test_memory_over_the_limit_fails_the_work_not_the_caller() -> None:
    with pytest.raises(SandboxFailure, match="more than the 2048 MiB validation may use"):
        run(allocate, (8 * 2**30,), GENEROUS)
    assert run(allocate, (64 * 2**20,), GENEROUS) == 64 * 2**20


def test_cpu_time_over_the_limit_stops_the_work() -> None:
    with pytest.raises(SandboxFailure, match="used more than its limits"):
        run(spin, (), Limits(memory_bytes=2 * 2**30, cpu_seconds=1, timeout_s=60))


def test_work_past_the_timeout_is_stopped() -> None:
    with pytest.raises(SandboxFailure, match=r"took over 0\.5 s"):
        run(sleep, (), Limits(memory_bytes=2 * 2**30, cpu_seconds=60, timeout_s=0.5))


def test_a_crash_is_reported() -> None:
    with pytest.raises(SandboxFailure, match="crashed \\(SIGABRT\\)"):
        run(os.abort, (), GENEROUS)
