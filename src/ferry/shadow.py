"""Shadow traffic: a copy of some unversioned requests goes to a model's shadow version
after the primary answer is computed. The shadow's answers are compared with the
primary's and counted, never returned. Copies are fire-and-forget tasks, bounded by the
shadow version's queue: when it is full, the copy is skipped (and counted)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ferry.compute import compute
from ferry.errors import FerryError

if TYPE_CHECKING:
    from ferry.inference import InferRequest
    from ferry.manager import LoadedVersion

log = logging.getLogger("ferry.shadow")


@dataclass
class ShadowRecord:
    """What one model's shadow version did in this process: requests ``sent`` to it
    (``succeeded`` + ``failed`` + in flight), copies ``skipped`` because its queue was
    full, and how many of its answers ``agreed`` with the primary's."""

    version: str
    percent: int = 0
    active: bool = True
    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    agreed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "version": int(self.version),
            "percent": self.percent,
            "active": self.active,
            "sent": self.sent,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "agreed": self.agreed,
            "disagreed": self.succeeded - self.agreed,
        }


class Shadow:
    """One model's shadow: the loaded version that gets the copies, the percent of
    unversioned requests copied, and the record its answers go to."""

    def __init__(self, target: LoadedVersion, percent: int, record: ShadowRecord) -> None:
        self.target = target
        self.percent = percent
        self.record = record
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()

    def copy(self, request: InferRequest, primary: dict[str, np.ndarray]) -> None:
        """Maybe send ``request`` to the shadow (``percent`` of calls); returns at once."""
        if self.percent < 100 and random.randrange(100) >= self.percent:
            return
        try:
            self.target.batcher.check_capacity()
        except FerryError:  # queue full, or being unloaded: the primary comes first
            self.record.skipped += 1
            return
        self.record.sent += 1
        task = asyncio.get_running_loop().create_task(self._run(request, primary))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, request: InferRequest, primary: dict[str, np.ndarray]) -> None:
        record = self.record
        try:
            # The same path as the primary's answer (pipeline included), so the two compare.
            outputs = await compute(self.target, request)
        except (Exception, asyncio.CancelledError) as exc:
            record.failed += 1
            log.debug("shadow %s version %s failed: %s", self.target.name, self.target.version, exc)
            return
        record.succeeded += 1
        if agree(primary, outputs):
            record.agreed += 1


def agree(primary: dict[str, np.ndarray], shadow: dict[str, np.ndarray]) -> bool:
    """Whether the shadow answered the same outputs as the primary: equal shapes and
    values, floats within ``np.allclose``."""
    for name, expected in primary.items():
        got = shadow.get(name)
        if got is None:
            return False
        got = np.asarray(got)
        if got.shape != expected.shape:
            return False
        try:
            if expected.dtype.kind in "fc" or got.dtype.kind in "fc":
                same = bool(np.allclose(expected, got, equal_nan=True))
            else:
                same = bool(np.array_equal(expected, got))
        except (TypeError, ValueError):  # e.g. numbers against strings
            return False
        if not same:
            return False
    return True


class ShadowTable:
    """Every model's shadow in this process, and the record of the last one each model
    had (kept when the shadow is removed, to be read)."""

    def __init__(self) -> None:
        # Models whose shadow takes copies of requests, read on every request: empty
        # (falsy) unless some model has one. Replaced whole, never changed in place.
        self.active: dict[str, Shadow] = {}
        # Every model's shadow, percent 0 included (loaded, sent nothing).
        self._all: dict[str, Shadow] = {}
        self._records: dict[str, ShadowRecord] = {}

    def target(self, name: str) -> LoadedVersion | None:
        """The version loaded as the model's shadow, if it has one."""
        shadow = self._all.get(name)
        return shadow.target if shadow is not None else None

    def record(self, name: str) -> ShadowRecord | None:
        return self._records.get(name)

    def point(self, name: str, target: LoadedVersion | None, percent: int) -> None:
        """Point the model's shadow at ``target`` (None: no shadow). A new shadow version
        starts a new record; the record of a removed shadow is kept, inactive."""
        record = self._records.get(name)
        if target is None:
            if record is not None:
                record.active, record.percent = False, 0
        elif record is None or record.version != target.version:
            record = self._records[name] = ShadowRecord(target.version, percent)
        else:
            record.active, record.percent = True, percent
        current = self._all.pop(name, None)
        if target is not None and record is not None:
            same = current is not None and current.target is target and current.percent == percent
            self._all[name] = current if same and current is not None else Shadow(target, percent, record)
        # percent 0: loaded, sent nothing, kept off the hot path.
        self.active = {key: shadow for key, shadow in self._all.items() if shadow.percent > 0}
