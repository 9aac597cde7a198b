"""Process trees read from /proc: find every descendant, sum their memory, stop them all.

MLServer and LitServe start worker processes, so a server is a tree, not one pid."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks), or None when the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live process under ``root``, root included, as pid -> start time."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry))
                starts[int(entry)] = stat[1]
    if root not in starts:
        return {}
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in tree:
            tree[pid] = starts[pid]
            todo.extend(parents.get(pid, []))
    return tree


def _memory_kib(pid: int, path: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory_mib(root: int) -> tuple[float, float, int]:
    """(RSS summed over the tree, PSS summed over the tree, number of processes).

    RSS counts pages shared between the processes once per process; PSS splits them."""
    pids = descendants(root)
    rss = sum(_memory_kib(pid, "status", "VmRSS:") for pid in pids)
    pss = sum(_memory_kib(pid, "smaps_rollup", "Pss:") for pid in pids)
    return rss / 1024, pss / 1024, len(pids)


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    # A zombie child of ours still has a /proc entry; reap it rather than count it.
    if stat is None or stat[1] != start:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def stop_tree(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever of its tree is left.

    The server was started in its own session, so its group id is its pid; descendants
    that left the group are signalled one by one (only pids we saw under our root, and
    only while their start time still matches, so a reused pid is never touched)."""
    tree = descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc.poll() is None:  # not reaped yet, so its pid cannot belong to anyone else
            tree.update(descendants(proc.pid))
        if not any(_alive(pid, start) for pid, start in tree.items()):
            break
        time.sleep(0.05)
    if any(_alive(pid, start) for pid, start in tree.items()):
        # A live member keeps the group id from being reused, so this reaches only our tree.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for pid, start in tree.items():
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    # A killed process may take a moment to finish exiting.
    deadline = time.monotonic() + 5
    while (leftovers := [pid for pid, s in tree.items() if _alive(pid, s)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    if leftovers:
        raise RuntimeError(f"processes {leftovers} survived SIGKILL")
