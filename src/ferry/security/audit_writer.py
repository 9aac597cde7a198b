"""AuditWriter: puts audit events in the database from one background thread of its own,
so a request never waits on the database for its audit row, and no flood of attempts
can fill the table.

- ``submit`` (on the event loop, per request) only appends to a bounded in-memory queue;
  when the queue is full the event is counted as dropped, and the count is written as one
  row (``result`` ``dropped``) as soon as the writer catches up.
- Attempts that changed nothing (refused with 401/403/429, or failed with a 4xx) are
  aggregated per key, action, method and status over ``window_s``: the first one of a
  window is written at once, the repeats become one row with their ``count`` when the
  window closes. Counts are exact: ``close`` (at shutdown) writes every open window.
- Rows older than ``retention_days`` and all but the newest ``max_rows`` are deleted
  every ``prune_every_s``, from the same thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from ferry.security.audit import VARIOUS, AuditEvent, utcnow

log = logging.getLogger("ferry.audit")

BATCH = 500  # rows per transaction
RETRIES = 3  # a batch the database refused this many times is logged as lost
PRUNE_EVERY_S = 3600.0

Group = tuple[str | None, str, str, int]  # key id, action, method, status


class AuditSink(Protocol):
    """Where rows go: the KeyStore."""

    def record_many(self, events: list[AuditEvent]) -> None: ...

    def prune_audit(self, older_than: datetime | None, keep_rows: int | None) -> int: ...


@dataclass
class _Window:
    """The repeats of one group since its first attempt, which was written at once."""

    closes_at: float
    repeats: AuditEvent | None = None

    def add(self, event: AuditEvent) -> None:
        seen = self.repeats
        if seen is None:
            self.repeats = event
            return
        self.repeats = replace(
            seen,
            at=event.at,
            count=seen.count + event.count,
            target=_same(seen.target, event.target),
            path=_same(seen.path, event.path),
            client=_same(seen.client, event.client),
            model=seen.model if seen.model == event.model else None,
        )


def _same(a: str, b: str) -> str:
    return a if a == b else VARIOUS


class AuditWriter:
    def __init__(
        self,
        sink: Callable[[], AuditSink | None],
        window_s: float = 60.0,
        queue_size: int = 10_000,
        retention_days: float = 90.0,
        max_rows: int = 1_000_000,
        prune_every_s: float = PRUNE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A callable: the store is opened after the app is made (Authenticator.start).
        self._sink = sink
        self._window_s = window_s
        self._queue_size = queue_size
        self._retention_days = retention_days
        self._max_rows = max_rows
        self._prune_every_s = prune_every_s
        self._clock = clock
        # Guards everything below; held by submit only for a few dict and deque operations.
        self._lock = threading.Condition()
        self._pending: deque[AuditEvent] = deque()
        self._windows: dict[Group, _Window] = {}
        self._dropped = 0
        self._flush_asked = 0  # flush tickets: asked, and done by the writer
        self._flush_done = 0
        self._close_windows = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the request side: never blocks, never touches the database -----------------------

    def submit(self, event: AuditEvent) -> None:
        with self._lock:
            if event.changed_nothing and self._window_s > 0:
                group = (event.key_id, event.action, event.method, event.status)
                window = self._windows.get(group)
                now = self._clock()
                if window is not None and now < window.closes_at:
                    window.add(event)
                    return
                if window is not None and window.repeats is not None:  # closed, not yet written
                    self._enqueue(window.repeats)
                self._windows[group] = _Window(now + self._window_s)
            self._enqueue(event)

    def _enqueue(self, event: AuditEvent) -> None:
        if len(self._pending) >= self._queue_size:
            self._dropped += event.count
            return
        self._pending.append(event)
        self._lock.notify()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ferry-audit-writer", daemon=True)
            self._thread.start()

    def flush(self, timeout_s: float = 10.0, close_windows: bool = False) -> bool:
        """Wait until every event submitted before this call is in the database (and,
        with ``close_windows``, every open window's repeats too). False on timeout, or
        when the writer is not running."""
        if self._thread is None or not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._flush_asked += 1
            ticket = self._flush_asked
            self._close_windows = self._close_windows or close_windows
            self._lock.notify_all()
            while self._flush_done < ticket:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._lock.wait(left)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Write everything, open windows included, and stop (at shutdown)."""
        thread = self._thread
        if thread is None:
            return
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        thread.join(timeout_s)
        if thread.is_alive():
            with self._lock:
                lost = sum(e.count for e in self._pending) + self._dropped
            log.error("the audit writer did not finish in %.0f s; about %d audit events are lost", timeout_s, lost)
        self._thread = None

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        next_prune = self._clock()  # once at start, then every prune_every_s
        stopping = False
        while not stopping:
            with self._lock:
                while not self._work_waiting() and self._clock() < next_prune:
                    self._lock.wait(
                        max(0.0, min(self._next_window_close() - self._clock(), next_prune - self._clock()))
                    )
                stopping = self._stopping
                ticket = self._flush_asked
                close_all = stopping or self._close_windows
                self._close_windows = False
                rows = list(self._pending)
                self._pending.clear()
                rows += self._closed_windows(close_all)
                dropped, self._dropped = self._dropped, 0
            if dropped:
                log.warning("the audit queue was full: %d audit events were counted, not written", dropped)
                rows.append(_dropped_row(dropped))
            self._write(rows)
            if self._clock() >= next_prune:
                self._prune()
                next_prune = self._clock() + self._prune_every_s
            with self._lock:
                self._flush_done = ticket
                self._lock.notify_all()

    def _work_waiting(self) -> bool:
        return bool(
            self._pending
            or self._dropped
            or self._stopping
            or self._flush_asked > self._flush_done
            or self._next_window_close() <= self._clock()
        )

    def _next_window_close(self) -> float:
        """When the first open window with repeats closes; windows without repeats need
        nothing written and are dropped lazily."""
        closes = [w.closes_at for w in self._windows.values() if w.repeats is not None]
        return min(closes, default=float("inf"))

    def _closed_windows(self, close_all: bool) -> list[AuditEvent]:
        now = self._clock()
        rows = []
        for group, window in list(self._windows.items()):
            if close_all or window.closes_at <= now:
                del self._windows[group]
                if window.repeats is not None:
                    rows.append(window.repeats)
        return rows

    def _write(self, rows: list[AuditEvent]) -> None:
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            for attempt in range(1, RETRIES + 1):
                try:
                    sink = self._sink()
                    if sink is None:
                        raise RuntimeError("the audit store is not open yet")
                    sink.record_many(batch)
                    break
                except Exception as exc:
                    if attempt == RETRIES:
                        lost = sum(e.count for e in batch)
                        log.error("could not write %d audit events (%d attempts): %s", lost, attempt, exc)
                    else:
                        time.sleep(0.2 * attempt)

    def _prune(self) -> None:
        sink = self._sink()
        if sink is None or (not self._retention_days and not self._max_rows):
            return
        older_than = utcnow() - timedelta(days=self._retention_days) if self._retention_days else None
        try:
            deleted = sink.prune_audit(older_than, self._max_rows or None)
        except Exception as exc:
            log.warning("could not prune the audit trail: %s", exc)
            return
        if deleted:
            log.info("pruned %d audit events (retention)", deleted)


def _dropped_row(count: int) -> AuditEvent:
    return AuditEvent(
        at=utcnow(),
        key_id=None,
        key_name="",
        action="audit_dropped",
        target="",
        method="",
        path="",
        status=0,
        result="dropped",
        client="",
        count=count,
    )
